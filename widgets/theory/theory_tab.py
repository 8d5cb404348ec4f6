"""The Theory tab: the four theory views side by side as tabs; any of them full screen for a projector."""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLabel, QTabWidget

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
        self._away: dict = {}   # panel shown full screen -> (its placeholder tab, its tab title)
        for panel in self.panels:
            panel.full_screen_requested.connect(lambda p=panel: self.toggle_full_screen(p))

    @property
    def panels(self) -> tuple:
        return (self.chain, self.paths, self.phase, self.spectrum)

    # ------------------------------------------------------------------ full screen
    def toggle_full_screen(self, panel) -> None:
        """Show ``panel`` alone, full screen (its tab holds a note meanwhile), or put it back in its tab."""
        if panel in self._away:
            self._back(panel)
            return
        i, title = self.indexOf(panel), self.tabText(self.indexOf(panel))
        holder = QLabel("This view is shown full screen. Press Esc there (or “Back to the tab”) to bring it back.")
        holder.setAlignment(Qt.AlignCenter)
        holder.setWordWrap(True)
        self.removeTab(i)
        self.insertTab(i, holder, title)
        self.setCurrentIndex(i)
        self._away[panel] = (holder, title)
        panel.setParent(None)
        panel.setWindowFlags(Qt.Window)
        panel.installEventFilter(self)   # closing that window brings the view back instead
        panel.full_button.setText("Back to the tab")
        panel.setGeometry(self.screen().geometry())   # the whole screen also where no window manager obliges
        panel.showFullScreen()
        panel.activateWindow()

    def _back(self, panel) -> None:
        holder, title = self._away.pop(panel)
        panel.removeEventFilter(self)
        panel.showNormal()
        panel.hide()
        i = self.indexOf(holder)
        self.removeTab(i)
        holder.deleteLater()
        self.insertTab(i, panel, title)   # reparents it: a widget of the tab again
        self.setCurrentIndex(i)
        panel.full_button.setText("Full screen")

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Close and obj in self._away:
            event.ignore()
            self._back(obj)
            return True
        return super().eventFilter(obj, event)

    def set_spec(self, spec: dict, base_dir=None) -> None:
        self.spectrum.set_spec(spec, base_dir)

    def set_spectrum_source(self, request, answered) -> None:
        """The training process's side of the spectrum at the current step: ``request(inputs) -> token``
        and the signal ``answered(token, result, problem)`` (the session's)."""
        self.spectrum.request_current = request
        answered.connect(self.spectrum.set_current_result)

    def shutdown(self) -> None:
        for panel in list(self._away):   # no window of ours outlives the main window
            self._back(panel)
        self.phase.process.cancel()
        self.spectrum.process.cancel()
