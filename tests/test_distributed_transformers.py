"""The Hugging Face callback inside a real 2-process torchrun job (DDP through accelerate, gloo on the CPU)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from backprop_lab.engine import rundir

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from tests.test_transformers import N, Tokens, own_grad_norms, tiny_bert  # noqa: E402

SCRIPT = textwrap.dedent("""
    import sys, warnings, torch, transformers
    sys.path.insert(0, sys.argv[3])
    warnings.filterwarnings("ignore")
    from tests.test_transformers import N, Tokens, tiny_bert
    from backprop_lab.integrations.transformers import BackpropLabCallback
    run_dir, out = sys.argv[1], sys.argv[2]

    class Seen(transformers.TrainerCallback):
        # each rank: the weights at the start of every step and the batch of its forward pass
        def __init__(self):
            self.seen, self.batches = [], []
        def on_train_begin(self, args, state, control, model=None, **kw):
            model.register_forward_pre_hook(self.batch, with_kwargs=True)
        def batch(self, module, args, kwargs):
            if torch.is_grad_enabled() and len(self.batches) < len(self.seen):
                self.batches.append({k: kwargs[k].clone() for k in ("input_ids", "attention_mask", "labels")})
        def on_step_begin(self, args, state, control, model=None, **kw):
            self.seen.append({k: v.clone() for k, v in model.state_dict().items()})

    seen = Seen()
    args = transformers.TrainingArguments(output_dir=out + ".hf", max_steps=2, per_device_train_batch_size=N // 2,
        learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        disable_tqdm=True, seed=0, max_grad_norm=1e-3, ddp_backend="gloo")
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Tokens(),
                                   callbacks=[seen, BackpropLabCallback(run_dir, ranks="all", flush_seconds=0)])
    trainer.train()
    torch.save({"weights": seen.seen, "batches": seen.batches}, f"{out}.{trainer.args.process_index}")
""")


def test_hf_callback_in_torchrun_records_each_ranks_own_gradient(tmp_path):
    from tests.conftest import ROOT
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "run"), str(tmp_path / "seen.pt"), str(ROOT)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert rundir.streams(tmp_path / "run") == ["rank0", "rank1"]
    seen = [torch.load(f"{tmp_path / 'seen.pt'}.{r}", weights_only=True) for r in (0, 1)]
    for k, state in enumerate(seen[0]["weights"]):
        own = []
        for r in (0, 1):   # float64, each rank's own batch on its own (no DDP)
            net = tiny_bert().double()
            net.load_state_dict({n: v.double() for n, v in state.items()})
            own.append(np.array([w for w, _ in own_grad_norms(net, net(**seen[r]["batches"][k]).loss)]))
        assert sorted(torch.cat([seen[r]["batches"][k]["input_ids"] for r in (0, 1)]).tolist()) == sorted(
            Tokens().ids.tolist())   # the two ranks' batches make one step over all N samples
        for r in (0, 1):
            h, spec = rundir.load(tmp_path / "run", f"rank{r}")
            assert spec["world_size"] == 2 and "own gradient" in spec["grads"]
            # this rank's own gradient, times 1 or the world size (transformers 5 scales the loss
            # by the number of processes); one factor for all layers
            ratio = h.series("weight_grad_norm")[k] / own[r]
            assert ratio == pytest.approx(np.full_like(ratio, ratio[0]), rel=1e-4)
            assert ratio[0] == pytest.approx(1.0, rel=1e-4) or ratio[0] == pytest.approx(2.0, rel=1e-4)
