"""Theory views' numbers (Contract 4): no Qt here.

    chain      the seeds' chain of one-neuron layers, exact derivatives (numpy)
    paths      products of L random local derivatives (numpy)
    meanfield  length map, chi1 and the critical line (numpy, Gauss-Hermite)
    phase      the initialisation map measured on real random nets (torch)
    spectrum   singular values of the input-output Jacobian (torch)

``phase`` and ``spectrum`` import torch: the GUI process reaches them only
through the ``backprop-lab theory`` command run in a child process.
"""
