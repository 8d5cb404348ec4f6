"""The redraw pacer keeps drawing to a share of the GUI thread, within its bounds."""
from backprop_lab.app.pacing import RedrawPacer, worker_threads


def test_cheap_redraws_keep_the_fastest_rate():
    p = RedrawPacer(min_ms=100, max_ms=500, duty=0.3)
    for _ in range(10):
        assert p.next_interval(0.005) == 100


def test_costly_redraws_stretch_the_interval_to_the_duty_share():
    p = RedrawPacer(min_ms=100, max_ms=500, duty=0.3)
    for _ in range(30):
        ms = p.next_interval(0.09)          # 90 ms of GUI CPU per cycle
    assert abs(ms - 300) <= 2               # 90 ms / 0.3 = 300 ms: drawing takes 30 % of a core
    for _ in range(30):
        ms = p.next_interval(2.0)           # absurdly slow: capped, the views still move
    assert ms == 500


def test_one_slow_frame_does_not_stall_the_views():
    p = RedrawPacer(min_ms=100, max_ms=500, duty=0.3)
    assert p.next_interval(0.12) == 250     # halfway from 100 toward 400
    assert p.next_interval(0.0) == 125      # and back toward 100 at once


def test_workers_share_the_cores_but_one_left_to_the_window(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("BACKPROP_LAB_GUI_CORES", raising=False)
    assert worker_threads(1, 2) == 1 and worker_threads(2, 2) == 1     # never two teams on 2 cores
    assert worker_threads(1, 16) == 15 and worker_threads(2, 16) == 7
    assert worker_threads(3, 1) == 1
    monkeypatch.setenv("BACKPROP_LAB_GUI_CORES", "0")                   # no core kept for the window
    assert worker_threads(1, 2) == 2 and worker_threads(3, 16) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_threads(1, 16) is None                                # the user's own choice is kept
