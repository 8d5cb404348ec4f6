"""Watch in a real 2-process torchrun job (DDP, gloo on the CPU), checked against the test's own gradients.

Three steps: a plain one, one with gradient accumulation whose first micro-batch runs under
``no_sync`` (the local gradient stays local until the last pass), and one whose two micro-batches
are both all-reduced (no rank's own sum exists then: its ranks="all" gradient norms are NaN)."""
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab.engine import record, rundir

SCRIPT = textwrap.dedent("""
    import contextlib, gc, sys, torch, torch.distributed as dist, torch.nn.functional as F
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP
    from backprop_lab import Watch
    run_dir, ranks, weights_out, view = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "view"
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    ddp = DDP(model, gradient_as_bucket_view=view)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g) * 2, torch.randint(0, 3, (32,), generator=g)
    xr, yr = x[rank::2], y[rank::2]               # each rank its half of the batch
    watch = Watch(ddp, run_dir, flush_seconds=0, ranks="all" if ranks == "all" else 0)
    seen = []
    for step in range(3):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        parts = [(xr, yr)] if step == 0 else [(xr[:8], yr[:8]), (xr[8:], yr[8:])]
        watch.begin()
        opt.zero_grad()
        for i, (xb, yb) in enumerate(parts):
            quiet = step == 1 and i < len(parts) - 1   # step 1: no all-reduce but the last pass's
            with ddp.no_sync() if quiet else contextlib.nullcontext():
                out = ddp(xb)
                loss = F.cross_entropy(out, yb) / len(parts)
                loss.backward()                   # DDP averages the two ranks' gradients
            if i == 0:
                first = (loss * len(parts), out, yb)
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), 1e-3)
        opt.step()
        watch.step(*first)
    watch.close()
    if rank == 0:
        torch.save({"weights": seen, "x": x, "y": y}, weights_out)
    # torch 2.13's gloo aborts ~1 exit in 5 on a loaded machine ("terminate called without an
    # active exception", with or without Watch) when the DDP wrapper outlives its process group
    del ddp, opt
    gc.collect()
    dist.destroy_process_group()
""")


def net_at(state):
    m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    m.load_state_dict({k: v.double() for k, v in state.items()})
    return m


def launch(tmp_path, ranks, view=False):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "run"), ranks, str(tmp_path / "seen.pt"),
                          "view" if view else "copy"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(tmp_path / "seen.pt", weights_only=True)


def reference(state, x, y, step):
    """float64, each rank on its own (no DDP): its own gradient of the step (summed over its micro-batches),
    the all-reduced one (the mean of the two), and its first micro-batch's delta and loss."""
    own, deltas, losses = [], [], []
    for r in (0, 1):
        m = net_at(state)
        xr, yr = x[r::2].double(), y[r::2]
        parts = [(xr, yr)] if step == 0 else [(xr[:8], yr[:8]), (xr[8:], yr[8:])]
        for i, (xb, yb) in enumerate(parts):
            z1 = m[0](xb)
            loss = F.cross_entropy(m[2](m[1](z1)), yb)
            if i == 0:   # the delta of the loss that backward got (the micro-batch's share)
                deltas.append(float(torch.autograd.grad(loss / len(parts), z1, retain_graph=True)[0].norm()))
                losses.append(float(loss.detach()))
            (loss / len(parts)).backward()
        own.append([m[0].weight.grad, m[0].bias.grad, m[2].weight.grad, m[2].bias.grad])
    norms = [[float(w.norm()) for w in grads[::2]] for grads in own]
    mean = [float(((a + b) / 2).norm()) for a, b in zip(own[0][::2], own[1][::2])]
    return norms, mean, deltas, losses


@pytest.mark.parametrize("ranks,view", [("0", False), ("all", False), ("all", True)])
def test_torchrun_ddp_records_all_reduced_gradients_or_each_ranks_own(tmp_path, ranks, view):
    seen = launch(tmp_path, ranks, view)
    names = rundir.streams(tmp_path / "run")
    assert names == (["main"] if ranks == "0" else ["rank0", "rank1"])
    for r, stream in enumerate(names):
        h, spec = rundir.load(tmp_path / "run", stream)
        assert list(h.steps) == [0, 1, 2] and spec["world_size"] == 2 and spec["rank"] == r
        assert ("own gradient" in spec["grads"]) == (ranks == "all")
        for k, state in enumerate(seen["weights"]):
            own, mean, deltas, losses = reference(state, seen["x"], seen["y"], k)
            got = h.series("weight_grad_norm")[k]
            if ranks == "0":
                assert got == pytest.approx(mean, rel=1e-5)       # all-reduced, before the clip
            elif k < 2:
                assert got == pytest.approx(own[r], rel=1e-5)     # this rank's own, not the mean
                assert got != pytest.approx(mean, rel=1e-3)
            else:   # both passes all-reduced: .grad held the mean plus this rank's second part
                assert all(math.isnan(v) for v in got) and all(math.isnan(v) for v in h.series("bias_grad_norm")[k])
            assert h.series("delta_norm")[k, 0] == pytest.approx(deltas[r], rel=1e-5)
            assert h.series("loss")[k] == pytest.approx(losses[r], rel=1e-5)
    assert record.load(tmp_path / "run")[0].n == 3
