"""A small conv net with BatchNorm for bench_probe_overhead.py (a user's module: spec model.python).

The input comes flat (the gaussian data set's 3 x 16 x 16 = 768 features) and is viewed as images."""
from torch import nn


class ConvBN(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.features(x.view(-1, 3, 16, 16))
        return self.head(x.mean(dim=(2, 3)))
