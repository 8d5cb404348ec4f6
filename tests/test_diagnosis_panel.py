"""The diagnosis panel: one card per finding, kept current while a run goes, clicks and remedies."""
from backprop_lab.engine import remedies
from backprop_lab.engine.diagnosis import Finding


def finding(steps, message="gradient 1e-8", severity="error"):
    return Finding("vanishing", severity, ["1 linear", "19 linear"], steps, {}, message, ["relu_he", "batchnorm"])


def panel(qtbot):
    from backprop_lab.widgets.diagnosis_panel import DiagnosisPanel
    p = DiagnosisPanel(remedies.REMEDIES)
    qtbot.addWidget(p)
    p.resize(400, 600)
    p.show()
    return p


def test_a_card_follows_its_finding_while_the_run_goes(qtbot):
    p = panel(qtbot)
    p.set_findings([finding([0, 19])], 20)
    card = p.cards[0]
    assert "steps 0–19" in card.title.text()
    p.set_findings([finding([180, 199], "gradient 1e-9")], 200)
    assert p.cards[0] is card                                   # not rebuilt: no flicker
    assert "steps 180–199" in card.title.text() and card.message.text() == "gradient 1e-9"
    with qtbot.waitSignal(p.finding_activated) as sig:          # a click zooms to the newest steps
        card.clicked.emit()
    assert sig.args[0].steps == [180, 199]


def test_a_new_severity_rebuilds_the_card_and_remedies_are_offered(qtbot):
    p = panel(qtbot)
    p.set_findings([finding([0, 19], severity="warning")], 20)
    first = p.cards[0]
    p.set_findings([finding([0, 39])], 40)
    from backprop_lab.widgets.diagnosis_panel import SEVERITY_COLOURS
    assert SEVERITY_COLOURS["warning"] in first.title.text()
    assert p.cards[0] is not first and SEVERITY_COLOURS["error"] in p.cards[0].title.text()
    labels = [b.text() for b, _ in p.cards[0].buttons]
    assert labels == ["Apply: " + remedies.REMEDIES[r]["label"] for r in ("relu_he", "batchnorm")]
    with qtbot.waitSignal(p.remedy_requested) as sig:
        p.cards[0].buttons[1][0].click()
    assert sig.args == ["batchnorm"]
