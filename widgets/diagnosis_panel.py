"""Diagnosis panel: the findings about the run, each with its evidence and remedies.

A thin view: it is handed a list of findings (engine.diagnosis.Finding) and
the remedy table, draws one card per finding, and emits intents: a click on a
card asks to show its layers and steps, a remedy button asks to apply it (or
to apply it and compare with the current run).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy,
                               QVBoxLayout, QWidget)

SEVERITY_COLOURS = {"error": "#e0524c", "warning": "#e3a33b", "info": "#5aa0d8"}
TITLES = {"vanishing": "Vanishing gradients", "exploding": "Exploding gradients",
          "non_finite": "Loss became NaN / infinite", "saturation": "Saturated units",
          "dead_units": "Dead ReLU units", "bad_init": "Bad initialisation",
          "plateau": "Loss plateau", "overfitting": "Overfitting"}


class FindingCard(QFrame):
    clicked = Signal()

    def __init__(self, finding, remedies: dict, parent=None):
        super().__init__(parent)
        self.finding = finding
        self.setObjectName("findingCard")
        colour = SEVERITY_COLOURS.get(finding.severity, "#888")
        self.setStyleSheet(f"#findingCard {{ border-left: 4px solid {colour}; border-radius: 3px;"
                           f" background: palette(alternate-base); }}")
        self.setCursor(Qt.PointingHandCursor)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 6, 6)
        self.title = QLabel()
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.message)
        self.show_finding(finding)
        self.buttons = []
        for rid in finding.remedies:
            info = remedies.get(rid, {"label": rid, "explanation": ""})
            row = QHBoxLayout()
            b = QPushButton(f"Apply: {info['label']}")
            b.setMinimumWidth(60)
            b.setToolTip(info.get("explanation", ""))
            b.setProperty("remedy", rid)
            c = QPushButton("compare")
            c.setToolTip("Apply it to a copy and run both side by side (same data and seed)")
            c.setProperty("remedy", rid)
            row.addWidget(b, 1)
            row.addWidget(c)
            lay.addLayout(row)
            self.buttons.append((b, c))
        for text in getattr(finding, "advice", []):   # a user's own module: the code to change
            tip = QLabel(f"Try: {text}")
            tip.setWordWrap(True)
            tip.setTextInteractionFlags(Qt.TextSelectableByMouse)
            lay.addWidget(tip)

    def show_finding(self, finding) -> None:
        """Show a newer measurement of the same finding (same kind, layers, severity, remedies)."""
        self.finding = finding
        colour = SEVERITY_COLOURS.get(finding.severity, "#888")
        title = (f"<b style='color:{colour}'>{TITLES.get(finding.kind, finding.kind)}</b>"
                 f" &nbsp;<span style='color:gray'>{_where(finding)}</span>")
        if self.title.text() != title:
            self.title.setText(title)
        if self.message.text() != finding.message:
            self.message.setText(finding.message)

    def mouseReleaseEvent(self, event):
        if event.button() == Qt.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


def _where(f) -> str:
    layers = f.layers
    text = layers[0] if len(layers) == 1 else (f"{layers[0]} … {layers[-1]}" if layers else "")
    if f.steps:
        text += f"  steps {f.steps[0]}–{f.steps[1]}"
    return text


class DiagnosisPanel(QWidget):
    finding_activated = Signal(object)        # the Finding: select its layers, zoom to its steps
    remedy_requested = Signal(str)            # remedy id
    remedy_compare_requested = Signal(str)    # remedy id: apply to a copy and compare

    def __init__(self, remedies: dict, parent=None):
        super().__init__(parent)
        self.remedies = remedies
        self._signature = None
        self.cards: list[FindingCard] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel("No run yet.")
        self.summary.setWordWrap(True)
        self.summary.setContentsMargins(6, 4, 6, 4)
        outer.addWidget(self.summary)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self._inner = QWidget()
        self._list = QVBoxLayout(self._inner)
        self._list.setContentsMargins(4, 0, 4, 4)
        self._list.addStretch(1)
        scroll.setWidget(self._inner)
        outer.addWidget(scroll, 1)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)

    def set_findings(self, findings: list, steps_seen: int) -> None:
        """Show findings; cards are rebuilt only when what was found changes."""
        signature = tuple((f.kind, f.severity, tuple(f.layers), tuple(f.remedies)) for f in findings)
        if signature != self._signature:
            self._signature = signature
            for card in self.cards:
                card.setParent(None)
                card.deleteLater()
            self.cards = []
            for f in findings:
                card = FindingCard(f, self.remedies)
                card.clicked.connect(lambda card=card: self.finding_activated.emit(card.finding))
                for b, c in card.buttons:
                    b.clicked.connect(lambda _=False, r=b.property("remedy"): self.remedy_requested.emit(r))
                    c.clicked.connect(lambda _=False, r=c.property("remedy"): self.remedy_compare_requested.emit(r))
                self._list.insertWidget(self._list.count() - 1, card)
                self.cards.append(card)
        else:
            for card, f in zip(self.cards, findings):
                card.show_finding(f)   # the steps and numbers move on while the run goes
        if steps_seen == 0:
            self.summary.setText("No run yet. Press Run (F5) and the findings appear here as it trains.")
        elif not findings:
            self.summary.setText(f"<b style='color:#4caf50'>Healthy</b> after {steps_seen} steps: "
                                 "no vanishing, exploding, saturated or dead layers found.")
        else:
            self.summary.setText(f"{len(findings)} finding{'s' * (len(findings) != 1)} after {steps_seen} "
                                 "steps. Click one to see it in the heatmap.")
