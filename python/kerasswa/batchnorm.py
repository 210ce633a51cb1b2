"""`update_bn`: batch-norm statistics recomputed for the weights a model holds now."""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Iterable, Iterator, List, Optional

import keras
import numpy as np
from keras import ops

from kerasswa import _kernels, _validation


def update_bn(
    model: keras.Model,
    data: Any,
    batch_size: int = 32,
    steps: Optional[int] = None,
    verbose: int = 0,
) -> keras.Model:
    """Recomputes the moving statistics of every batch-norm layer of `model`.

    Averaged weights come with no matching batch-norm statistics: the moving
    mean and variance left by training belong to the last iterate, not to the
    average. `update_bn` runs one pass over `data` in training mode and sets
    each `BatchNormalization` layer's moving mean and variance to the exact
    average, over the pass, of the batch statistics it computes (each batch
    weighted by its number of samples), whatever the layers' `momentum`. It is
    the Keras counterpart of PyTorch's `torch.optim.swa_utils.update_bn`.

    Layers nested in sub-models or other layers are included. Frozen layers
    (`trainable=False`) run in inference mode in Keras and are left alone.
    Trainable weights, the layers' `momentum` and their `trainable` flags are
    unchanged. It is all or nothing: if a batch fails, or the data holds NaN
    or Inf, the statistics are left as they were and the error is raised.
    Layers that behave differently in training (dropout) run as in
    training, as PyTorch's `update_bn` does.

    Args:
        model: A built Keras model (any model whose call takes `training=`).
        data: The inputs to pass: an array (or dict/list of arrays for a
            multi-input model), a tuple `(x, y)` or `(x, y, sample_weight)` of
            those, a `tf.data.Dataset`, a `keras.utils.PyDataset`, or any
            iterable of batches (a Python generator, a PyTorch `DataLoader`).
            Only the inputs `x` are used.
        batch_size: Integer >= 1. Batch size for array data; ignored for
            data that comes in batches.
        steps: Integer >= 1 or `None`. Number of batches to use; `None` runs
            until the data is exhausted (required for infinite generators).
        verbose: 0 (silent) or 1 (a progress bar).

    Returns:
        The model, with its batch-norm statistics updated in place.

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa import update_bn
    >>> model = keras.Sequential([keras.Input((3,)),
    ...                          keras.layers.BatchNormalization(momentum=0.99)])
    >>> x = np.arange(12, dtype="float32").reshape(4, 3)
    >>> _ = update_bn(model, x, batch_size=2)
    >>> bn = model.layers[0]
    >>> print(keras.ops.convert_to_numpy(bn.moving_mean))  # mean of x
    [4.5 5.5 6.5]
    >>> # The mean of the two batch variances (rows 0-1, rows 2-3), not var(x).
    >>> print(keras.ops.convert_to_numpy(bn.moving_variance))
    [2.25 2.25 2.25]
    """
    return _update_bn(model, data, batch_size, steps, verbose, argument="data")


def _update_bn(
    model, data, batch_size, steps, verbose, argument, data_checked=False
) -> keras.Model:
    """`update_bn`, its messages naming the caller's `argument` for `data`
    (`bn_data` for `SWACallback`, `SWAModelCheckpoint` and `swag_predict`).
    `data_checked`: the caller has run `check_data(argument, data,
    finite=True)` already (once, rather than before every pass)."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a Keras model. "
            f"Received: model={model!r} (of type {type(model).__name__})"
        )
    batch_size = _validation.check_count("batch_size", batch_size, minimum=1)
    steps = _validation.check_optional_count("steps", steps, minimum=1)
    verbose = _validation.check_verbose(verbose)
    if not data_checked:
        check_data(argument, data, finite=True)
    if not model.built:
        raise ValueError(
            "`update_bn` needs a built model: call it on data, build it, or "
            f"train it first. Received: model={model.name!r} (not built)"
        )
    layers = batch_norm_layers(model)
    if not layers:
        warnings.warn(
            f"`update_bn` did nothing: model {model.name!r} has no trainable "
            "BatchNormalization layer.",
            stacklevel=2,
        )
        return model

    momenta = [layer.momentum for layer in layers]
    # All or nothing: on any error the statistics are put back as they were.
    statistics = [v for layer in layers for v in layer.non_trainable_variables]
    saved = [ops.copy(_kernels.read(v)) for v in statistics]
    progress = keras.utils.Progbar(
        steps or _known_batch_count(data, batch_size), verbose=verbose, unit_name="batch"
    )
    seen = 0
    try:
        for step, batch in enumerate(_input_batches(data, batch_size, argument)):
            if steps is not None and step >= steps:
                break
            try:
                count = _batch_length(batch)
                # Momentum `seen / (seen + count)` makes each moving statistic
                # the running mean of the batch statistics, weighted by batch size.
                for layer in layers:
                    layer.momentum = seen / (seen + count)
                model(batch, training=True)
            except Exception as error:
                raise ValueError(
                    f"`{argument}`: batch {step} could not go through model "
                    f"{model.name!r}: {error}"
                ) from error
            seen += count
            progress.update(step + 1)
        if seen == 0:
            raise ValueError(
                f"`{argument}` gave no batches: `update_bn` needs at least one "
                f"batch of inputs. Received an empty `{argument}`."
            )
        if not all(bool(ops.all(ops.isfinite(_kernels.read(v)))) for v in statistics):
            raise ValueError(
                f"`{argument}` made batch-norm statistics NaN or infinite (do "
                "the inputs hold NaN or Inf?); they are left as they were."
            )
    except BaseException:
        for variable, value in zip(statistics, saved):
            variable.assign(value)
        raise
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return model


def batch_norm_layers(model: keras.Layer) -> List[keras.layers.BatchNormalization]:
    """The trainable `BatchNormalization` layers of `model`, nested ones
    included, each once."""
    layers = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            layers.append(layer)
    return layers


def _input_batches(data: Any, batch_size: int, argument: str = "data") -> Iterator[Any]:
    """Yields the inputs `x` of each batch of `data`."""
    if _is_array_data(data):
        inputs = _inputs_of(data)
        length = _batch_length(inputs)
        for start in range(0, length, batch_size):
            yield keras.tree.map_structure(
                lambda a: a[start : start + batch_size], inputs
            )
        return
    if isinstance(data, keras.utils.PyDataset):
        batches: Iterable = (data[i] for i in range(len(data)))
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise TypeError(_data_message(argument, data)) from None
    for batch in batches:
        yield _as_backend_tensors(_inputs_of(batch))


def check_data(argument: str, data: Any, finite: bool = False) -> None:
    """Refuses, before any work, what can never give batches of inputs: a
    number, a boolean, a string, `None`, a 0-d array, a non-iterable, or a
    list, tuple or dict that holds such an input; with `finite`, NumPy
    inputs that hold NaN or Inf (batch-norm statistics would too)."""
    inputs = _inputs_of(data)
    leaves = keras.tree.flatten(inputs) if isinstance(inputs, (tuple, list, dict)) else [inputs]
    never_batches = any(
        leaf is None
        or isinstance(leaf, (str, bytes, numbers.Number, np.generic))
        or ((isinstance(leaf, np.ndarray) or keras.ops.is_tensor(leaf)) and len(leaf.shape) == 0)
        for leaf in leaves
    )
    if never_batches or not (
        _is_array_data(data)
        or isinstance(data, keras.utils.PyDataset)
        or hasattr(data, "__iter__")
    ):
        raise TypeError(_data_message(argument, data))
    if (isinstance(data, (tuple, list, dict)) and not leaves) or (
        _is_array_data(data) and _batch_length(inputs) == 0
    ):
        raise ValueError(
            f"`{argument}` gave no batches: at least one batch of inputs is "
            f"needed. Received: {argument}={_shown(data)}, empty."
        )
    if finite and any(
        isinstance(leaf, np.ndarray)
        and np.issubdtype(leaf.dtype, np.inexact)
        and not np.isfinite(leaf).all()
        for leaf in leaves
    ):
        raise ValueError(
            f"`{argument}` holds NaN or infinite values: the batch-norm "
            f"statistics would be NaN or infinite too. Received: {argument}="
            f"{_shown(data)}"
        )


def _data_message(argument: str, data: Any) -> str:
    return (
        f"`{argument}` must be arrays (or a list or dict of arrays), a tuple "
        "`(x, y)` of those, a tf.data.Dataset, a keras.utils.PyDataset or an "
        f"iterable of batches. Received: {argument}={_shown(data)} (of type "
        f"{type(data).__name__})"
    )


def _shown(value: Any) -> str:
    """`repr(value)`, cut short for data."""
    shown = repr(value)
    return shown if len(shown) <= 100 else shown[:80] + "..."


def _known_batch_count(data: Any, batch_size: int) -> Optional[int]:
    """The number of batches in `data` when it is known without a pass."""
    if _is_array_data(data):
        return -(-_batch_length(_inputs_of(data)) // batch_size)
    try:
        return len(data)
    except TypeError:  # generators; tf.data with unknown cardinality
        return None


def _is_array_data(data: Any) -> bool:
    leaves = keras.tree.flatten(data) if isinstance(data, (tuple, list, dict)) else [data]
    return bool(leaves) and all(
        isinstance(leaf, np.ndarray) or keras.ops.is_tensor(leaf) for leaf in leaves
    )


def _inputs_of(batch: Any) -> Any:
    """`x` of an `(x, y)` or `(x, y, sample_weight)` tuple; `batch` itself
    otherwise."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        return batch[0]
    return batch


def _batch_length(inputs: Any) -> int:
    return int(keras.tree.flatten(inputs)[0].shape[0])


def _as_backend_tensors(inputs: Any) -> Any:
    # tf.data yields TensorFlow tensors, which the other backends cannot call
    # a model on; NumPy is what every backend takes.
    if keras.config.backend() == "tensorflow":
        return inputs
    return keras.tree.map_structure(
        lambda leaf: np.asarray(leaf) if type(leaf).__module__.startswith("tensorflow") else leaf,
        inputs,
    )
