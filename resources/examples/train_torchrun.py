"""Data-parallel on the CPU: torchrun --nproc_per_node=2 train_torchrun.py runs/ddp [steps] [all]

Rank 0 records the all-reduced gradients (stream "main"); with "all" every rank
records its own loss, gradients (of its shard, from before DDP's all-reduce),
deltas and activations (streams rank0, rank1), and backprop-lab watch runs/ddp
offers a rank picker.
"""
import gc
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from backprop_lab import Watch
from my_net import Net, make_data

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/ddp"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
ranks = "all" if len(sys.argv) > 3 and sys.argv[3] == "all" else 0
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)                                  # the same initial weights on every rank
model = DDP(Net(classes=4, act="sigmoid", depth=6))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = make_data()
x, y = x[rank::world], y[rank::world]                 # each rank its shard
g = torch.Generator().manual_seed(rank)
with Watch(model, run_dir, ranks=ranks, optimizer=optimizer) as watch:
    for step in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        watch.begin()
        out = model(x[idx])
        loss = F.cross_entropy(out, y[idx])
        optimizer.zero_grad()
        loss.backward()                               # DDP all-reduces the gradients here
        optimizer.step()
        watch.step(loss, out, y[idx])
if rank == 0:
    print(f"recorded {steps} steps in {run_dir}")
# free DDP before its process group: with torch 2.13's gloo a wrapper that outlives the group
# makes about one exit in five abort on a busy machine ("terminate called without an active exception")
del model, optimizer
gc.collect()
dist.destroy_process_group()
