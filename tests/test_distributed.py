"""Watch in a real 2-process torchrun job (DDP, gloo on the CPU), checked against the test's own gradients."""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab.engine import record, rundir

SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist, torch.nn.functional as F
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP
    from backprop_lab import Watch
    run_dir, ranks, weights_out = sys.argv[1], sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g) * 2, torch.randint(0, 3, (32,), generator=g)
    xr, yr = x[rank::2], y[rank::2]               # each rank its half of the batch
    watch = Watch(ddp, run_dir, flush_seconds=0, ranks="all" if ranks == "all" else 0)
    seen = []
    for step in range(3):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        watch.begin()
        out = ddp(xr)
        loss = F.cross_entropy(out, yr)
        opt.zero_grad()
        loss.backward()                           # DDP averages the two ranks' gradients
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), 1e-3)
        opt.step()
        watch.step(loss, out, yr)
    watch.close()
    if rank == 0:
        torch.save({"weights": seen, "x": x, "y": y}, weights_out)
    dist.destroy_process_group()
""")


def net_at(state):
    m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    m.load_state_dict({k: v.double() for k, v in state.items()})
    return m


def launch(tmp_path, ranks):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "run"), ranks, str(tmp_path / "seen.pt")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(tmp_path / "seen.pt", weights_only=True)


def grads(state, x, y):
    """float64: the all-reduced gradient (mean over the ranks' halves) and each rank's own delta."""
    m = net_at(state)
    halves = [(x[r::2].double(), y[r::2]) for r in (0, 1)]
    losses, deltas = [], []
    for xr, yr in halves:
        z1 = m[0](xr)
        loss = F.cross_entropy(m[2](m[1](z1)), yr)
        deltas.append(float(torch.autograd.grad(loss, z1, retain_graph=True)[0].norm()))
        losses.append(loss)
    g = torch.autograd.grad((losses[0] + losses[1]) / 2, [m[0].weight, m[2].weight])
    return [float(t.norm()) for t in g], deltas, [float(v.detach()) for v in losses]


@pytest.mark.parametrize("ranks", ["0", "all"])
def test_torchrun_ddp_records_all_reduced_gradients_and_each_ranks_own_statistics(tmp_path, ranks):
    seen = launch(tmp_path, ranks)
    names = rundir.streams(tmp_path / "run")
    assert names == (["main"] if ranks == "0" else ["rank0", "rank1"])
    for r, stream in enumerate(names):
        h, spec = rundir.load(tmp_path / "run", stream)
        assert list(h.steps) == [0, 1, 2] and spec["world_size"] == 2 and spec["rank"] == r
        for k, state in enumerate(seen["weights"]):
            g, deltas, losses = grads(state, seen["x"], seen["y"])
            assert h.series("weight_grad_norm")[k] == pytest.approx(g, rel=1e-5)   # before the clip
            assert h.series("delta_norm")[k, 0] == pytest.approx(deltas[r], rel=1e-5)
            assert h.series("loss")[k] == pytest.approx(losses[r], rel=1e-5)
    assert record.load(tmp_path / "run")[0].n == 3
