"""The one seam where a snapshot meets a backend.

A snapshot moves every average (and SWAG's moments) towards the weights in
place: `target += factor * (source - target)`. In `keras.ops` that is three
element-wise passes and, on PyTorch, a full copy for the assignment (Keras's
torch `assign` is a `copy_`). Here each backend gets the fewest passes it
allows, as Keras's own torch optimizers do with `torch._foreach_*`:

- PyTorch: one fused multi-tensor `torch._foreach_lerp_`, in place (SWAG's
  mean of squares: `_foreach_mul_` and `_foreach_addcmul_`; its deviation
  rows written in place by `torch.sub(..., out=row)`).
- TensorFlow: the reference rule in a function that XLA compiles
  (`jit_compile=True`), even where the step itself runs TensorFlow's own
  kernels: XLA fuses it into one in-place pass over each variable, which
  TensorFlow's kernels cannot (each writes a new tensor; the fewest they
  allow, a difference then `ResourceApplyGradientDescent`, took 2.2 times
  as long on 16.8M parameters, and SWAG's mean of squares 2.7 times).
- JAX: the `keras.ops` reference, which XLA fuses into one pass.
- TensorFlow under `tf.distribute`: the `keras.ops` reference, as mirrored
  variables take their updates through the strategy.

`FUSED = False` turns every backend to the `keras.ops` reference, which the
tests compare the fused kernels against.

The rounding: XLA on the CPU contracts `avg + f * (w - avg)` into a fused
multiply-add, which rounds once, so TensorFlow's compiled functions may
differ from the reference run by TensorFlow's own kernels by one unit in the
last place (on JAX, and in a TensorFlow step that XLA compiles whole, both
are compiled alike and agree bit for bit); `torch.lerp` computes
`w - (w - avg) * (1 - f)` when `f >= 0.5`, which may differ from the
reference by one unit in the last place; SWAG's mean of squares on PyTorch
and TensorFlow, `m * (1 - f) + f * w * w`, by a few.
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
    Empty lists (a model whose every variable is overwritten with its
    gradient has no average) do nothing: PyTorch's fused kernels refuse them.
    """
    if not targets:
        return
    if FUSED and keras.config.backend() == "torch":
        import torch

        with torch.no_grad():
            torch._foreach_lerp_(
                [t.value for t in targets],
                [_torch_tensor(s) for s in sources],
                list(factors),
            )
        return
    if _tf_compiled():
        _tf_functions().blend_([t.value.handle for t in targets], _tf_tensors(sources), list(factors))
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
    own PyTorch optimizers read their learning rate. Empty lists do nothing.
    """
    if not targets:
        return
    if FUSED and keras.config.backend() == "torch":
        import torch

        scales = [float(factor) for factor in factors]
        values = [_torch_tensor(source) for source in sources]
        with torch.no_grad():
            tensors = [target.value for target in targets]
            torch._foreach_mul_(tensors, [1.0 - scale for scale in scales])
            torch._foreach_addcmul_(tensors, values, values, scales)
        return
    if _tf_compiled():
        _tf_functions().blend_squares_([t.value.handle for t in targets], _tf_tensors(sources), list(factors))
        return
    blend_(targets, [ops.square(read(source)) for source in sources], factors)


def blended(target, source, factor):
    """The reference `target + factor * (source - target)`, as a new tensor
    of the backend. Written with operators, which every backend's tensors
    take whatever their shape (`keras.ops` needs a known rank, which
    TensorFlow's compiled snapshot functions, traced for any shape, lack);
    they are the same kernels that `keras.ops` runs."""
    return target + (source - target) * factor


def write_difference_row_(variable: keras.Variable, index, minuend, subtrahend) -> None:
    """`variable[index] = minuend - subtrahend`, in place where the backend
    allows (on PyTorch written straight into the row: no temporary).

    `index` is a scalar integer tensor (the ring slot of a SWAG deviation).
    """
    if FUSED and keras.config.backend() == "torch":
        import torch

        with torch.no_grad():
            torch.sub(_torch_tensor(minuend), _torch_tensor(subtrahend), out=variable.value[int(index)])
        return
    if _tf_compiled():
        _tf_functions().write_difference_row_(variable.value.handle, index, *_tf_tensors([minuend, subtrahend]))
        return
    variable.assign(with_row(variable.value, index, ops.subtract(read(minuend), read(subtrahend))))


def with_row(array, index, row):
    """`array` with row `index` replaced by `row`, as a new tensor (`index`
    may be a tensor)."""
    start = [index] + [0] * (len(array.shape) - 1)
    return ops.slice_update(array, start, ops.expand_dims(row, 0))


def _torch_tensor(value):
    if isinstance(value, keras.Variable):
        return value.value
    return ops.convert_to_tensor(value)


def _tf_compiled() -> bool:
    """Whether to run TensorFlow's snapshot through XLA: on TensorFlow, with
    the kernels on, outside `tf.distribute` (whose mirrored variables take
    their updates through the strategy)."""
    if not FUSED or keras.config.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.distribute.has_strategy()


def _tf_tensors(values) -> list:
    """Tensors of the values (a variable read: never the variable itself)."""
    import tensorflow as tf

    return [tf.convert_to_tensor(read(value)) for value in values]


_TF_FUNCTIONS = None


def _tf_functions():
    """The snapshot's rules as TensorFlow functions that XLA compiles, made
    once: the arithmetic of the `keras.ops` reference, updating the variables
    in place. Called inside a step's graph, each is one XLA cluster; inside a
    step that XLA compiles already, it joins that program. They take the
    variables' handles, not the variables: a function traced with a
    variable would keep referring to it after it is gone."""
    global _TF_FUNCTIONS
    if _TF_FUNCTIONS is None:
        import types

        import tensorflow as tf

        def compiled(function):
            # Traced for shapes of any size: one trace serves every model.
            return tf.function(function, jit_compile=True, autograph=False, reduce_retracing=True)

        def read(handle, dtype):
            return tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype)

        def blend(handle, source, factor):
            value = blended(read(handle, factor.dtype), source, factor)
            tf.raw_ops.AssignVariableOp(resource=handle, value=value)

        @compiled
        def blend_(handles, sources, factors):
            for handle, source, factor in zip(handles, sources, factors):
                blend(handle, source, factor)

        @compiled
        def blend_squares_(handles, sources, factors):
            # `m * (1 - f) + (f * w) * w`, as PyTorch's kernel computes it:
            # `tf.square(w)` alone is loop-invariant in a step's snapshot
            # loop, and XLA hoists it out of the loop into every step, a
            # weight-sized pass on steps without a snapshot (SWAG never due:
            # 5% of a 3M-parameter step).
            for handle, source, factor in zip(handles, sources, factors):
                value = read(handle, factor.dtype) * (1 - factor) + (factor * source) * source
                tf.raw_ops.AssignVariableOp(resource=handle, value=value)

        @compiled
        def write_difference_row_(handle, index, minuend, subtrahend):
            tf.raw_ops.ResourceScatterUpdate(
                resource=handle,
                indices=tf.reshape(index, [1]),
                updates=tf.expand_dims(tf.subtract(minuend, subtrahend), 0),
            )

        _TF_FUNCTIONS = types.SimpleNamespace(
            blend_=blend_, blend_squares_=blend_squares_, write_difference_row_=write_difference_row_
        )
    return _TF_FUNCTIONS
