"""Stochastic Weight Averaging (SWA) for Keras 3, on every backend.

`kerasswa.SWA` wraps any Keras 3 optimizer and keeps the running mean of the
weights along its trajectory, with the contract of TensorFlow Addons'
`tfa.optimizers.SWA` and its defects fixed. Around it, as in PyTorch's
`torch.optim.swa_utils`: `update_bn` (batch-norm statistics for the averaged
weights), `SWALearningRateSchedule` (the learning rate of the SWA recipe) and
`SWACallback` (finish a `fit` with the averaged model). Beyond it, as the
SWAG reference implementation: `SWAG` (a Gaussian over the weights fitted
along the same trajectory) and `swag_predict` (Bayesian model averaging).

The same snapshots can feed other averages (`SWA(averaging=...)`): a fixed
exponential moving average, `EMA` (one whose decay warms up) and `PowerEMA`
(the power-function EMA of EDM2). `PostHocEMA` keeps several power EMAs and
saves them (`PostHocEMACheckpoint`), so that `posthoc_ema` can rebuild the
power EMA of any width after training; `posthoc_ema_error` says how well,
before training.
"""

from kerasswa.averaging import EMA, PowerEMA
from kerasswa.batchnorm import update_bn
from kerasswa.callbacks import SWACallback
from kerasswa.checkpoint import SWAModelCheckpoint
from kerasswa.posthoc import PostHocEMA, PostHocEMACheckpoint, posthoc_ema, posthoc_ema_error
from kerasswa.schedules import SWALearningRateSchedule
from kerasswa.swa import SWA
from kerasswa.swag import SWAG, swag_predict

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "PostHocEMA",
    "PostHocEMACheckpoint",
    "PowerEMA",
    "SWA",
    "SWACallback",
    "SWAG",
    "SWALearningRateSchedule",
    "SWAModelCheckpoint",
    "posthoc_ema",
    "posthoc_ema_error",
    "swag_predict",
    "update_bn",
    "__version__",
]
