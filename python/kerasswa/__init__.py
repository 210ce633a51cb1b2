"""Stochastic Weight Averaging (SWA) for Keras 3, on every backend.

`kerasswa.SWA` wraps any Keras 3 optimizer and keeps the running mean of the
weights along its trajectory, with the contract of TensorFlow Addons'
`tfa.optimizers.SWA` and its defects fixed.
"""

from kerasswa.swa import SWA

__version__ = "0.1.0"

__all__ = ["SWA", "__version__"]
