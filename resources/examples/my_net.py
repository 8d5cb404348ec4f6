"""A small custom model and a data set made on the fly (nothing downloaded).

Net: a convolutional classifier of 8 x 8 images written as people write them
(functional ReLU, max pooling, dropout), deep enough in sigmoid mode to show
vanishing gradients: ``Net(act="sigmoid", depth=6)``. It also takes flat 8 x 8
images, so the app opens it on its digits data set:
``backprop-lab --model my_net.py:Net --data digits``.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, classes: int = 10, width: int = 16, depth: int = 2, act: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.hidden = nn.ModuleList(nn.Linear(width * 16 if i == 0 else 64, 64) for i in range(depth))
        self.out = nn.Linear(64, classes)
        self.act = torch.sigmoid if act == "sigmoid" else F.relu

    def forward(self, x):
        if x.dim() == 2:   # flat 8 x 8 images (the app's "digits" data set)
            x = x.reshape(-1, 1, 8, 8)
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)          # 8 x 8 -> 4 x 4
        x = F.dropout(x.flatten(1), 0.1, self.training)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)


def make_data(n: int = 512, classes: int = 4, seed: int = 0):
    """Noisy 8 x 8 images of a bar (horizontal, vertical, two diagonals): x [n, 1, 8, 8], y [n]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    eye = torch.eye(8)
    shapes = torch.stack([torch.zeros(8, 8).index_fill_(0, torch.tensor([3, 4]), 1.0),
                          torch.zeros(8, 8).index_fill_(1, torch.tensor([3, 4]), 1.0),
                          eye, eye.flip(1)])[:classes]
    x = shapes[y] + 0.5 * torch.randn(n, 8, 8, generator=g)
    return x[:, None], y
