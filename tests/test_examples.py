"""The README's examples run as written: a plain loop, Lightning and torchrun, each watched."""
import os
import subprocess
import sys

import numpy as np
import pytest

from backprop_lab.engine import record, rundir
from tests.conftest import ROOT

EXAMPLES = ROOT / "resources" / "examples"


def run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=EXAMPLES, capture_output=True, text=True, timeout=600, env=env, **kw)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_plain_loop_example(tmp_path):
    run([sys.executable, "train_plain.py", str(tmp_path / "plain"), "12"])
    h, spec = record.load(tmp_path / "plain")
    assert len(h) == 12 and np.isfinite(h.series("weight_grad_norm")).all()
    assert h.layer_names[0] == "conv1 (Conv2d)" and any("functional" in n for n in h.act_names)
    assert np.isfinite(h.series("test_loss")[0]) and np.isnan(h.series("test_loss")[1])


def test_lightning_example(tmp_path):
    pytest.importorskip("lightning")
    run([sys.executable, "train_lightning.py", str(tmp_path / "pl"), "6"])
    h, _ = record.load(tmp_path / "pl")
    assert len(h) == 6 and h.layer_names[0] == "net.conv1 (Conv2d)" and np.isfinite(h.series("accuracy")).all()


def test_torchrun_example_with_every_rank(tmp_path):
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train_torchrun.py",
         str(tmp_path / "ddp"), "4", "all"])
    assert rundir.streams(tmp_path / "ddp") == ["rank0", "rank1"]
    h0, _ = rundir.load(tmp_path / "ddp", "rank0")
    h1, _ = rundir.load(tmp_path / "ddp", "rank1")
    # each rank records its own shard's loss and gradient (from before the all-reduce)
    assert np.isfinite(h0.series("weight_grad_norm")).all() and np.isfinite(h1.series("weight_grad_norm")).all()
    assert not np.allclose(h0.series("weight_grad_norm"), h1.series("weight_grad_norm"), rtol=1e-3)
    assert not np.allclose(h0.series("loss"), h1.series("loss"))
