"""The Lightning callback inside a real 2-process torchrun job (strategy ddp, gloo on the CPU)."""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab.engine import rundir

pytest.importorskip("lightning")

SCRIPT = textwrap.dedent("""
    import sys, warnings, torch, torch.nn.functional as F
    from torch import nn
    import lightning.pytorch as pl
    from backprop_lab.integrations.lightning import BackpropLabCallback
    warnings.filterwarnings("ignore")
    run_dir, out = sys.argv[1], sys.argv[2]

    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        def training_step(self, batch, i):
            x, y = batch
            return F.cross_entropy(self.net(x), y)
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    class Seen(pl.Callback):
        def __init__(self):
            self.seen = []
        def on_train_batch_start(self, trainer, m, batch, i):
            self.seen.append(({k: v.clone() for k, v in m.net.state_dict().items()}, batch))

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    ds = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=g) * 2, torch.randint(0, 3, (64,), generator=g))
    seen = Seen()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=1e-3, callbacks=[seen, BackpropLabCallback(run_dir, ranks="all", flush_seconds=0)])
    trainer.fit(M(), torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False))
    torch.save(seen.seen, f"{out}.{trainer.global_rank}")
""")


def test_lightning_callback_in_torchrun_records_each_ranks_own_gradient(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "run"), str(tmp_path / "seen")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert rundir.streams(tmp_path / "run") == ["rank0", "rank1"]
    seen = [torch.load(f"{tmp_path / 'seen'}.{r}", weights_only=True) for r in (0, 1)]
    hs = [rundir.load(tmp_path / "run", f"rank{r}")[0] for r in (0, 1)]
    for k in range(3):
        net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        net.load_state_dict({n: v.double() for n, v in seen[0][k][0].items()})
        losses = [F.cross_entropy(net(seen[r][k][1][0].double()), seen[r][k][1][1]) for r in (0, 1)]
        own = [torch.autograd.grad(losses[r], net[0].weight, retain_graph=True)[0] for r in (0, 1)]
        mean = float(((own[0] + own[1]) / 2).norm())   # what DDP's all-reduce gives the optimizer
        for r in (0, 1):   # ranks="all": each rank its own gradient, from before the all-reduce
            assert hs[r].series("weight_grad_norm")[k, 0] == pytest.approx(float(own[r].norm()), rel=1e-5)
            assert hs[r].series("weight_grad_norm")[k, 0] != pytest.approx(mean, rel=1e-3)
            assert hs[r].series("loss")[k] == pytest.approx(float(losses[r].detach()), rel=1e-5)
