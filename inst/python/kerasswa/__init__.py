"""Stochastic Weight Averaging (SWA) for Keras 3, on every backend.

`kerasswa.SWA` wraps any Keras 3 optimizer and keeps the running mean of the
weights along its trajectory, with the contract of TensorFlow Addons'
`tfa.optimizers.SWA` and its defects fixed. Around it, as in PyTorch's
`torch.optim.swa_utils`: `update_bn` (batch-norm statistics for the averaged
weights), `SWALearningRateSchedule` (the learning rate of the SWA recipe) and
`SWACallback` (finish a `fit` with the averaged model). Beyond it, as the
SWAG reference implementation: `SWAG` (a Gaussian over the weights fitted
along the same trajectory) and `swag_predict` (Bayesian model averaging).
"""

from kerasswa.batchnorm import update_bn
from kerasswa.callbacks import SWACallback
from kerasswa.checkpoint import SWAModelCheckpoint
from kerasswa.schedules import SWALearningRateSchedule
from kerasswa.swa import SWA
from kerasswa.swag import SWAG, swag_predict

__version__ = "0.1.0"

__all__ = [
    "SWA",
    "SWACallback",
    "SWAG",
    "SWALearningRateSchedule",
    "SWAModelCheckpoint",
    "swag_predict",
    "update_bn",
    "__version__",
]
