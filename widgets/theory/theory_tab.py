"""The Theory tab: the four theory views side by side as tabs."""
from __future__ import annotations

from PySide6.QtWidgets import QTabWidget

from backprop_lab.widgets.theory.chain_view import ChainExplorer
from backprop_lab.widgets.theory.paths_view import PathProducts
from backprop_lab.widgets.theory.phase_view import PhaseMap
from backprop_lab.widgets.theory.spectrum_view import JacobianSpectrum


class TheoryTab(QTabWidget):
    """Chain explorer, random path products, initialisation map, Jacobian spectrum.

    ``phase.cell_requested(spec)`` asks for a stack to be loaded into the editor;
    ``set_spec`` tells the spectrum view which stack is current.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setDocumentMode(True)
        self.chain = ChainExplorer()
        self.paths = PathProducts()
        self.phase = PhaseMap()
        self.spectrum = JacobianSpectrum()
        self.addTab(self.chain, "Chain")
        self.addTab(self.paths, "Path products")
        self.addTab(self.phase, "Initialisation map")
        self.addTab(self.spectrum, "Jacobian spectrum")
        self.cell_requested = self.phase.cell_requested

    def set_spec(self, spec: dict, base_dir=None) -> None:
        self.spectrum.set_spec(spec, base_dir)

    def set_spectrum_source(self, request, answered) -> None:
        """The training process's side of the spectrum at the current step: ``request(inputs) -> token``
        and the signal ``answered(token, result, problem)`` (the session's)."""
        self.spectrum.request_current = request
        answered.connect(self.spectrum.set_current_result)

    def shutdown(self) -> None:
        self.phase.process.cancel()
        self.spectrum.process.cancel()
