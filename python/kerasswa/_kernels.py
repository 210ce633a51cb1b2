"""The one seam where a snapshot meets a backend.

A snapshot moves every average (and SWAG's moments) towards the weights in
place: `target += factor * (source - target)`. In `keras.ops` that is three
element-wise passes and, on PyTorch, a full copy for the assignment (Keras's
torch `assign` is a `copy_`). Here each backend gets the fewest passes it
allows, as Keras's own torch optimizers do with `torch._foreach_*`:

- PyTorch: one fused multi-tensor `torch._foreach_lerp_`, in place (SWAG's
  mean of squares: `_foreach_mul_` and `_foreach_addcmul_`; its deviation
  rows written in place by `torch.sub(..., out=row)`).
- TensorFlow: the difference, then `ResourceApplyGradientDescent`, which
  updates the variable in place in one pass (2 kernels instead of 4).
- JAX, and TensorFlow under `tf.distribute`: the `keras.ops` reference,
  which XLA fuses into one pass.

`FUSED = False` turns every backend to the `keras.ops` reference, which the
tests compare the fused kernels against.

The rounding: `avg - f * (avg - w)` (TensorFlow's kernel) is bit for bit the
reference `avg + f * (w - avg)`; `torch.lerp` computes
`w - (w - avg) * (1 - f)` when `f >= 0.5`, which may differ from the
reference by one unit in the last place; SWAG's mean of squares on PyTorch,
`m * (1 - f) + f * w * w`, by a few.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

#: Whether to use the backend kernels (`True`) or the `keras.ops` reference.
FUSED = True


def read(variable):
    """The value of a Keras variable or of a raw `tf.Variable`, whose
    `value` is a method rather than a tensor."""
    if isinstance(variable, keras.Variable):
        return variable.value
    return variable


def blend_(targets: Sequence[keras.Variable], sources: Sequence, factors: Sequence) -> None:
    """`target += factor * (source - target)` for each triple, in place.

    `targets` are optimizer variables; `sources` tensors or variables of the
    same shapes and dtypes; `factors` scalar tensors of the targets' dtypes.
    """
    backend = keras.config.backend()
    if FUSED and backend == "torch":
        import torch

        with torch.no_grad():
            torch._foreach_lerp_(
                [t.value for t in targets],
                [_torch_tensor(s) for s in sources],
                list(factors),
            )
        return
    if FUSED and backend == "tensorflow" and not _tf_distributed():
        import tensorflow as tf

        for target, source, factor in zip(targets, sources, factors):
            delta = ops.subtract(target.value, ops.convert_to_tensor(read(source)))
            tf.raw_ops.ResourceApplyGradientDescent(
                var=target.value.handle, alpha=factor, delta=delta
            )
        return
    for target, source, factor in zip(targets, sources, factors):
        target.assign(blended(target.value, read(source), factor))


def blend_squares_(targets: Sequence[keras.Variable], sources: Sequence, factors: Sequence) -> None:
    """`target += factor * (source ** 2 - target)` for each triple, in place
    (SWAG's mean of squares).

    On PyTorch, `target * (1 - factor) + factor * source * source` in two
    fused multi-tensor passes, without the weight-sized temporary that the
    square would be (allocating 64 MiB costs more than the passes: its pages
    are new). The factors are read to the host, once per snapshot, as Keras's
    own PyTorch optimizers read their learning rate.
    """
    if FUSED and keras.config.backend() == "torch":
        import torch

        scales = [float(factor) for factor in factors]
        values = [_torch_tensor(source) for source in sources]
        with torch.no_grad():
            tensors = [target.value for target in targets]
            torch._foreach_mul_(tensors, [1.0 - scale for scale in scales])
            torch._foreach_addcmul_(tensors, values, values, scales)
        return
    blend_(targets, [ops.square(read(source)) for source in sources], factors)


def blended(target, source, factor):
    """The reference `target + factor * (source - target)`, as a new tensor."""
    return ops.add(target, ops.multiply(ops.subtract(source, target), factor))


def write_row_(variable: keras.Variable, index, row) -> None:
    """`variable[index] = row`, in place where the backend allows.

    `index` is a scalar integer tensor (the ring slot of a SWAG deviation).
    """
    backend = keras.config.backend()
    if FUSED and backend == "torch":
        import torch

        with torch.no_grad():
            variable.value.index_copy_(
                0, index.reshape(1).long(), _torch_tensor(row).unsqueeze(0)
            )
        return
    if FUSED and backend == "tensorflow" and not _tf_distributed():
        import tensorflow as tf

        variable.value.scatter_update(
            tf.IndexedSlices(tf.expand_dims(row, 0), tf.reshape(index, [1]))
        )
        return
    variable.assign(with_row(variable.value, index, row))


def write_difference_row_(variable: keras.Variable, index, minuend, subtrahend) -> None:
    """`variable[index] = minuend - subtrahend`, in place where the backend
    allows (on PyTorch written straight into the row: no temporary)."""
    if FUSED and keras.config.backend() == "torch":
        import torch

        with torch.no_grad():
            torch.sub(_torch_tensor(minuend), _torch_tensor(subtrahend), out=variable.value[int(index)])
        return
    write_row_(variable, index, ops.subtract(read(minuend), read(subtrahend)))


def with_row(array, index, row):
    """`array` with row `index` replaced by `row`, as a new tensor (`index`
    may be a tensor)."""
    start = [index] + [0] * (len(array.shape) - 1)
    return ops.slice_update(array, start, ops.expand_dims(row, 0))


def _torch_tensor(value):
    if isinstance(value, keras.Variable):
        return value.value
    return ops.convert_to_tensor(value)


def _tf_distributed() -> bool:
    import tensorflow as tf

    return tf.distribute.has_strategy()
