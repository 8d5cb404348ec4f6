"""Watch in users' own loops: every number against independent float64 autograd."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab import Watch
from backprop_lab.engine import record, rundir


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def data(n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g) * 2, torch.randint(0, 3, (n,), generator=g)


def reference(model, batches):
    """float64: summed loss gradient of each weight and bias, dL/dz of the first batch, its z."""
    m = copy.deepcopy(model).double()
    grads = [torch.zeros_like(p) for p in m.parameters()]
    first = None
    for x, y in batches:
        z1 = m[0](x.double())
        out = m[2](m[1](z1))
        loss = F.cross_entropy(out, y)
        g = torch.autograd.grad(loss, [*m.parameters(), z1, out])
        for acc, gi in zip(grads, g):
            acc += gi
        if first is None:
            first = (g[-2], g[-1], z1.detach())
    return grads, first


def test_norms_are_from_before_the_users_clip_and_match_float64_autograd(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = data()
    refs = []
    with Watch(model, tmp_path / "run", flush_seconds=0, optimizer=opt) as w:
        for _ in range(4):
            refs.append(reference(model, [(x, y)]) + ([p.detach().clone() for p in model.parameters()],))
            w.begin()
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1e-3)   # the user's clip: a big change
            opt.step()
            w.step(loss, out, y)
        after = [p.detach().clone() for p in model.parameters()]
    h, spec = record.load(tmp_path / "run")
    assert len(h) == 4 and list(h.steps) == [0, 1, 2, 3]
    for k, (grads, (dz1, dout, z1), before) in enumerate(refs):
        assert h.series("weight_grad_norm")[k] == pytest.approx([float(grads[0].norm()), float(grads[2].norm())], rel=1e-5)
        assert h.series("bias_grad_norm")[k] == pytest.approx([float(grads[1].norm()), float(grads[3].norm())], rel=1e-5)
        assert h.series("delta_norm")[k] == pytest.approx([float(dz1.norm()), float(dout.norm())], rel=1e-5)
        assert h.series("preact_mean")[k, 0] == pytest.approx(float(z1.mean()), rel=1e-4, abs=1e-6)
        assert h.series("preact_std")[k, 0] == pytest.approx(float(z1.std(correction=0)), rel=1e-5)
        nxt = refs[k + 1][2] if k + 1 < len(refs) else after
        ratio = float((nxt[0] - before[0]).norm() / before[0].norm())
        assert h.series("update_ratio")[k, 0] == pytest.approx(ratio, rel=1e-4)
    assert h.series("lr")[0] == 0.5
    assert "before clipping" in spec["watched"]["grads"]


def test_the_older_form_makes_the_optimizer_step(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    w0 = model[0].weight.detach().clone()
    with Watch(model, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        g = model[0].weight.grad.clone()
        snap = w.step(opt, loss, out, y)
    assert torch.allclose(model[0].weight.detach(), w0 - 0.1 * g)
    assert snap.weight_grad_norm[0] == pytest.approx(float(g.norm()), rel=1e-6)


def test_gradient_accumulation_norms_of_the_sum_deltas_of_the_first_micro_batch(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [data(16, seed=s) for s in (1, 2, 3)]
    grads, (dz1, dout, z1) = reference(model, batches)
    with Watch(model, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        for x, y in batches:
            w.begin()   # again per micro-batch: harmless
            loss = F.cross_entropy(model(x), y)
            loss.backward()
        opt.step()
        w.step(loss)
    h, spec = record.load(tmp_path / "run")
    assert h.series("weight_grad_norm")[0] == pytest.approx([float(grads[0].norm()), float(grads[2].norm())], rel=1e-5)
    assert h.series("delta_norm")[0] == pytest.approx([float(dz1.norm()), float(dout.norm())], rel=1e-5)
    assert h.series("preact_mean")[0, 0] == pytest.approx(float(z1.mean()), rel=1e-4, abs=1e-6)
    assert "first forward pass" in spec["watched"]["deltas"]
    assert rundir.RunReader(tmp_path / "run").header["backward_passes"] == 3


def test_amp_grad_scaler_statistics_are_of_unscaled_gradients(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    x, y = data()
    grads, (dz1, dout, _) = reference(model, [(x, y)])
    with Watch(model, tmp_path / "run", flush_seconds=0, scaler=scaler) as w:
        w.begin()
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        scaler.step(opt)
        scaler.update()
        snap = w.step(loss, out, y)
    assert snap.weight_grad_norm == pytest.approx([float(grads[0].norm()), float(grads[2].norm())], rel=1e-5)
    assert snap.delta_norm == pytest.approx([float(dz1.norm()), float(dout.norm())], rel=1e-5)


def test_no_grad_evaluation_between_steps_is_not_measured(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    x_eval = torch.randn(50, 4) * 10
    zs = []
    with Watch(model, tmp_path / "run", flush_seconds=0) as w:
        for _ in range(3):
            w.begin()
            zs.append(model[0](x).detach().double())
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():                 # after backward, before step: not measured
                model.eval(); model(x_eval); model.train()
            opt.step()
            w.step(loss, out, y)
            with torch.no_grad():                 # between steps: not measured
                model(x_eval)
    h, _ = record.load(tmp_path / "run")
    assert h.series("preact_std")[:, 0] == pytest.approx([float(z.std(correction=0)) for z in zs], rel=1e-5)


def test_step_without_begin_is_an_error_naming_the_fix(tmp_path):
    model = net()
    x, y = data()
    with Watch(model, tmp_path / "run") as w:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with pytest.raises(RuntimeError, match=r"call watch\.begin\(\) right before the forward pass"):
            w.step(loss)


class TupleNet(nn.Module):
    """A language-model-like module: (scores [N, T, V], hidden) from token ids."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 10)

    def forward(self, ids):
        h = torch.tanh(self.emb(ids))
        return self.fc(h), h


@pytest.mark.parametrize("make_target, expect", [
    (lambda s: s.argmax(-1), 1.0),                       # [N, T] class ids against [N, T, V]
    (lambda s: torch.full(s.shape[:-1], -100), math.nan),  # everything ignored
    (lambda s: torch.randn(s.shape), math.nan),          # a regression target
    (lambda s: s.argmax(-1)[:, :2], math.nan),           # shapes that do not match
])
def test_tuple_outputs_of_any_shape_accuracy_nan_where_it_does_not_apply(tmp_path, make_target, expect):
    torch.manual_seed(0)
    model = TupleNet()
    ids = torch.randint(0, 10, (4, 5))
    with Watch(model, tmp_path / "run") as w:
        w.begin()
        out = model(ids)
        target = make_target(out[0].detach())
        loss = out[0].square().mean()
        loss.backward()
        snap = w.step(loss, out, target)
    assert snap.accuracy == pytest.approx(expect, nan_ok=True)
    assert np.isfinite(snap.weight_grad_norm).all()


def test_every_n_records_every_nth_step_and_says_so(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with Watch(model, tmp_path / "run", every=3, flush_seconds=0) as w:
        got = []
        for _ in range(8):
            w.begin()
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            got.append(w.step(loss, out, y) is not None)
    assert got == [True, False, False, True, False, False, True, False]
    h, spec = record.load(tmp_path / "run")
    assert list(h.steps) == [0, 3, 6] and spec["every"] == 3


def test_contract_2_keys_and_the_cli_read_a_run_directory(tmp_path, capsys):
    from backprop_lab.app import cli
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with Watch(model, tmp_path / "run", flush_seconds=0) as w:
        for _ in range(3):
            w.begin()
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            w.step(opt, loss, out, y)
    h, spec = record.load(tmp_path / "run")
    arrays = record.to_arrays(h, spec)
    for key in ("format", "version", "spec", "step", "loss", "accuracy", "test_loss", "test_accuracy",
                "layer_names", "weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio",
                "act_names", "preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac"):
        assert key in arrays
    assert arrays["weight_grad_norm"].shape == (3, 2) and arrays["preact_mean"].shape == (3, 1)
    assert h.stop_reason == "finished"
    assert cli.main(["diagnose", str(tmp_path / "run"), "--json"]) == 0
    assert capsys.readouterr().out.strip().startswith("[")


@pytest.mark.parametrize("shape,axis", [((70, 200), -1), ((7, 5, 30), -1), ((8, 5, 3, 4), 1)])
def test_accuracy_without_argmax_is_argmax_also_on_ties_nan_and_ignored_targets(shape, axis):
    from backprop_lab.engine.watch import accuracy
    torch.manual_seed(0)
    classes = shape[axis]
    tshape = shape[:-1] if axis == -1 else shape[:1] + shape[2:]
    for scores in (torch.randn(shape), torch.zeros(shape), torch.randint(0, 3, shape).float()):
        target = torch.randint(0, classes, tshape)
        target.view(-1)[::7] = -100
        s = scores.clone()
        s.view(-1)[5] = float("nan")
        for x in (scores, s):
            pred = x.argmax(axis)
            keep = target != -100
            want = float(((pred == target) & keep).sum()) / float(keep.sum())
            assert float(accuracy(x, target)) == pytest.approx(want)


def test_histograms_of_z_every_hist_every_th_recorded_step_equal_numpy_histograms(tmp_path):
    from backprop_lab.engine.snapshot import HIST_BINS, HIST_RANGE
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    zs = {}
    with Watch(model, tmp_path / "run", flush_seconds=0, every=2, hist_every=2) as w:
        for k in range(9):   # recorded: 0, 2, 4, 6, 8; with a histogram: 0, 4, 8
            with torch.no_grad():
                z1 = model[0](x * 3)
                zs[k] = [z1, model[2](torch.tanh(z1))]
            w.begin()
            out = model(x * 3)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            snap = w.step(loss, out, y)
            assert (snap is not None and snap.preact_hist is not None) == (k % 4 == 0)
        assert w.spec["watched"]["hist_every"] == 2
    reader = rundir.RunReader(tmp_path / "run")
    got = reader.read_hists()
    assert list(got["step"]) == [0, 4, 8] and reader.header["hist_range"] == list(HIST_RANGE)
    for i, k in enumerate((0, 4, 8)):
        for j, z in enumerate(zs[k]):   # the end bins hold the tails
            want, _ = np.histogram(np.clip(z.double().numpy(), *HIST_RANGE), HIST_BINS, HIST_RANGE)
            np.testing.assert_array_equal(got["preact_hist"][i, j], want)
    h, _ = record.load(tmp_path / "run")
    np.testing.assert_array_equal(h.latest_hist, got["preact_hist"][-1])


def test_probe_and_tracer_public_pause_and_grad_norms_of_given_norms(tmp_path):
    """What Watch uses of the probe: pause() stops measuring by flag (a second forward is not
    measured; the tracer's function mode is left at the next stop), grad_norms(norms) adds
    per-parameter norms into per-layer ones."""
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))

    torch.manual_seed(0)
    model = Functional()
    x, y = data()
    with Watch(model, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        loss = F.cross_entropy(model(x), y)
        w.probe.pause()
        assert not w.probe.active and not w.model.tracer.recording
        with torch.no_grad():
            model(x * 100)        # not measured: paused
        loss.backward()
        snap = w.step(loss)
        assert not w.model.tracer._entered   # step() left the function mode on this thread
        z = model.fc1(x).detach()
        assert snap.preact_mean[0] == pytest.approx(float(z.mean()), rel=1e-5, abs=1e-7)
        params = w.probe.parameters
        assert [id(p) for p in params] == [id(p) for p in (model.fc1.weight, model.fc2.weight,
                                                            model.fc1.bias, model.fc2.bias)]
        norms = [torch.tensor(3.0), torch.tensor(1.0), torch.tensor(4.0), None]
        wg, bg = w.probe.grad_norms(norms)
        assert wg.tolist() == [3.0, 1.0] and bg[0] == 4.0 and math.isnan(bg[1])


def test_time_every_measures_a_fused_lstms_time_gradient_on_every_kth_recorded_step_and_says_so(tmp_path):
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(20, 6), nn.LSTM(6, 7, 2), nn.Linear(7, 20)

        def forward(self, ids):
            return self.out(self.rnn(self.emb(ids))[0])

    torch.manual_seed(0)
    models = [LM(), None]
    models[1] = copy.deepcopy(models[0])
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 20, (9, 4), generator=g), torch.randint(0, 20, (9, 4), generator=g))
               for _ in range(6)]
    got = []
    for model, k in zip(models, (1, 3)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with Watch(model, tmp_path / f"run{k}", flush_seconds=0, time_every=k) as w:
            for x, y in batches:
                w.begin()
                out = model(x)
                loss = F.cross_entropy(out.reshape(-1, 20), y.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss, out, y)
            spec = w.spec
        got.append(record.load(tmp_path / f"run{k}")[0].series("time_grad_norm"))
        assert spec["watched"]["time_every"] == k and ("one recorded step in 3" in spec["watched"]["time_grad"]) == (k == 3)
    every, sparse = got
    assert every.shape == sparse.shape == (6, 9) and np.isfinite(every).all()
    measured = [0, 3]
    assert np.isfinite(sparse[measured]).all() and np.isnan(np.delete(sparse, measured, axis=0)).all()
    np.testing.assert_allclose(sparse[measured], every[measured], rtol=1e-4)
