"""A fused nn.LSTM for bench_probe_overhead.py (a user's module: spec model.python).

The memory task's input is [batch, time, features]; the class comes from the last hidden state.
The bare loop runs PyTorch's fused LSTM kernel; the probed Trainer traces the module and, while
it watches a step, runs the first layer by engine/lstm_steps.py, whose backward hands out every
dL/dh_t (engine/tracer.py, ``Unrolled``; the fused kernel with time-gradient taps where that is
the cheaper way)."""
from torch import nn


class FusedLSTM(nn.Module):
    def __init__(self, units: int = 64, classes: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(1, units, batch_first=True)
        self.head = nn.Linear(units, classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])
