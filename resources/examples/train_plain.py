"""A plain PyTorch loop, watched: python train_plain.py runs/plain [steps]

Then, while it runs or after: backprop-lab watch runs/plain, backprop-lab diagnose runs/plain.
"""
import sys

import torch
import torch.nn.functional as F

from backprop_lab import Watch
from my_net import Net, make_data

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/plain"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
torch.manual_seed(0)
model = Net(classes=4, act="sigmoid", depth=6)           # deep sigmoid layers: watch the gradient vanish
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = make_data()
x_test, y_test = make_data(256, seed=1)

with Watch(model, run_dir, optimizer=optimizer) as watch:   # every=10: record one step in ten
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,))
        watch.begin()                                       # before the forward pass
        out = model(x[idx])
        loss = F.cross_entropy(out, y[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)   # recorded norms are from before this
        optimizer.step()
        test_loss = None
        if step % 50 == 0:
            model.eval()
            with torch.no_grad():                           # not measured
                test_loss = F.cross_entropy(model(x_test), y_test)
            model.train()
        watch.step(loss, out, y[idx], test_loss=test_loss)
print(f"recorded {steps} steps in {run_dir}")
