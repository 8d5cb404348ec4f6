"""Textbook facts about initialisation that the recorded statistics must show
(Glorot and Bengio 2010; He et al. 2015; Nielsen, NNDL ch. 5; SCIENCE.md)."""
import numpy as np

from tests.conftest import train


def relu_net(scheme, depth=20, width=256, seed=0):
    layers = []
    for _ in range(depth):
        layers += [{"type": "linear", "units": width, "init": {"scheme": scheme}, "bias_init": {"scheme": "zeros"}},
                   {"type": "relu"}]
    return {"data": {"kind": "gaussian", "n": 256, "dim": 2, "classes": 3, "test_fraction": 0, "seed": seed},
            "model": {"layers": layers}, "train": {"batch_size": None, "seed": seed}}


def delta_ratio(scheme, seed):
    _, _, h = train(relu_net(scheme, seed=seed), 1)
    d = h.series("delta_norm")[0]
    return d[1] / d[18]


def test_he_init_keeps_the_delta_constant_through_20_relu_layers():
    ratios = [delta_ratio("kaiming_normal", s) for s in range(3)]
    assert 0.5 < np.median(ratios) < 2.0, ratios          # SCIENCE.md: 0.98


def test_xavier_init_shrinks_the_delta_by_one_over_sqrt2_per_relu_layer():
    ratios = [delta_ratio("xavier_normal", s) for s in range(3)]
    theory = (1 / np.sqrt(2)) ** 17                        # 0.0028
    assert theory / 3 < np.median(ratios) < theory * 3, ratios


def test_nielsen_sigmoid_net_learns_faster_in_later_hidden_layers():
    # 64 U(0,1) inputs -> 4 x 30 sigmoid, N(0,1) weights and biases -> 10 classes
    hidden = [{"type": "linear", "units": 30, "init": {"scheme": "normal", "std": 1.0},
               "bias_init": {"scheme": "normal", "std": 1.0}}, {"type": "sigmoid"}] * 4
    ratios = []
    for seed in range(5):
        spec = {"data": {"kind": "digits", "test_fraction": 0, "seed": seed}, "model": {"layers": hidden},
                "train": {"batch_size": 256, "seed": seed}}
        _, _, h = train(spec, 1)
        b = h.series("bias_grad_norm")[0]
        ratios.append(b[3] / b[0])                         # last hidden / first hidden
    assert np.median(ratios) > 1.5, ratios                 # SCIENCE.md: 2.5 to 14


def test_default_init_deep_sigmoid_net_vanishes():
    layers = [{"type": "linear", "units": 64}, {"type": "sigmoid"}] * 12
    spec = {"data": {"kind": "gaussian", "n": 256, "dim": 8, "classes": 2, "test_fraction": 0},
            "model": {"layers": layers}, "train": {"batch_size": 64}}
    _, _, h = train(spec, 1)
    b = h.series("bias_grad_norm")[0]
    assert b[0] / b[11] < 1e-6                             # SCIENCE.md: 2.5e-10
