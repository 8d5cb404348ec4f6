"""Backprop Lab inside training frameworks: callbacks that record a run directory.

    from backprop_lab.integrations.lightning import BackpropLabCallback      # pip install backprop-lab[lightning]
    from backprop_lab.integrations.transformers import BackpropLabCallback   # pip install backprop-lab[transformers]

Each module imports only when its framework is installed.
"""
