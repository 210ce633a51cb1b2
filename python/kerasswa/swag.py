"""SWAG: a Gaussian over the weights, fitted along the SWA trajectory, and
Bayesian model averaging with it (Maddox et al., 2019)."""

from __future__ import annotations

import contextlib
import inspect
import math
from typing import Any, Iterator, Optional, Sequence, Union

import keras
import numpy as np
from keras import ops

from kerasswa import _kernels, _validation
from kerasswa.batchnorm import _update_bn, check_data
from kerasswa.swa import SWA, OptimizerLike, _as_var_list, _find_swa, _restored

SeedLike = Union[None, int, keras.random.SeedGenerator]


@keras.saving.register_keras_serializable(package="kerasswa", name="SWAG")
class SWAG(SWA):
    """SWA-Gaussian: SWA that also fits a Gaussian to the weights it averages.

    SWAG (Maddox, Izmailov, Garipov, Vetrov and Wilson, 2019, "A Simple
    Baseline for Bayesian Uncertainty in Deep Learning") takes the snapshots
    of SWA and keeps, for each trainable variable, beside the mean `m` of the
    snapshots: the mean `s` of their squares, and the deviations
    `D_i = w_i - m_i` of the last `max_rank` snapshots from the mean after
    each (a ring: the oldest is overwritten). That defines a Gaussian over
    the weights with mean `m` and covariance
    `(diag(s - m**2) + D^T D / (K - 1)) / 2`, `K` the deviations held
    (`rank`); `sample_vars` draws from it with the `scale` 0.5 of the paper,
    and `swag_predict` averages a model's predictions over such samples,
    which gives better calibrated probabilities than one model.

    Everything `SWA` does and promises holds (the averaging rule and its
    arguments, manual snapshots, `assign_average_vars`, saving and resuming),
    except that the average must be the plain mean (`averaging="mean"`).
    The state costs `2 + max_rank` copies of the trainable weights beside
    the inner optimizer's; like the averages it is made of optimizer
    variables, saved with the model and, under a JAX `ModelParallel`
    distribution, sharded like the weights (the deviations' rank axis whole).

    Args:
        optimizer: The optimizer that computes the updates, as for `SWA`.
        start_averaging: Integer >= 0 or `None`, as for `SWA`.
        average_period: Integer >= 1, as for `SWA`.
        max_rank: Integer >= 0. Number of deviations kept (the rank of the
            low-rank part of the covariance). Defaults to 20, the paper's.
            0 keeps none: SWAG-diagonal.
        name: String or `None`. Name of the optimizer and prefix of its
            variables. `None` (the default) gives a name of its own:
            `"swag"`, then `"swag_1"`, ...
        var_clamp: Float >= 0. Floor of the diagonal variance `s - m**2`,
            which rounding can make slightly negative. Defaults to 1e-30,
            the reference implementation's.
        **kwargs: The other arguments of `SWA` (`sequential_update`,
            `clipnorm`, `learning_rate`, ...).

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa import SWAG, swag_predict
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> opt = SWAG(keras.optimizers.SGD(0.05), start_averaging=8,
    ...            average_period=2, max_rank=5)
    >>> model.compile(optimizer=opt, loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> _ = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    >>> opt.snapshot_count, opt.rank  # updates 8, 10, ..., 22 of 24
    (8, 5)
    >>> swag_predict(model, x[:3], num_samples=10, seed=1).shape
    (3, 1)
    """

    def __init__(
        self,
        optimizer: OptimizerLike,
        start_averaging: Optional[int] = 0,
        average_period: int = 10,
        max_rank: int = 20,
        name: Optional[str] = None,
        var_clamp: float = 1e-30,
        **kwargs: Any,
    ) -> None:
        max_rank = _validation.check_count("max_rank", max_rank, minimum=0)
        var_clamp = _validation.check_optional_number("var_clamp", var_clamp, allow_zero=True)
        if var_clamp is None:
            raise TypeError("`var_clamp` must be a finite number >= 0. Received: var_clamp=None")
        super().__init__(
            optimizer,
            start_averaging=start_averaging,
            average_period=average_period,
            name=name,
            **kwargs,
        )
        self.max_rank = max_rank
        self.var_clamp = var_clamp

    def _check_arguments(self, averaging, **arguments: Any) -> None:
        if averaging != "mean":
            raise ValueError(
                "SWAG fits its Gaussian to the plain mean and second moment "
                'of the snapshots: `averaging` must be "mean". Use SWA for a '
                f"moving average. Received: averaging={averaging!r}"
            )

    def _build_moments(self, var_list) -> None:
        self._second_moments = []
        self._deviations = []
        takes_layout = "layout" in inspect.signature(self.add_variable).parameters
        for variable, average in zip(var_list, self._averages):
            if average is None:
                self._second_moments.append(None)
                self._deviations.append(None)
                continue
            self._second_moments.append(
                self.add_variable_from_reference(variable, name="swag_second_moment")
            )
            # Keras < 3.10 takes no layout here (nor gives the averages their
            # weight's: all of them are then replicated).
            layout = _with_whole_leading_axis(getattr(variable, "_layout", None))
            self._deviations.append(
                self.add_variable(
                    shape=(self.max_rank,) + tuple(variable.shape),
                    dtype=variable.dtype,
                    name=_reference_name(variable, "swag_deviations"),
                    **({"layout": layout} if takes_layout else {}),
                )
                if self.max_rank
                else None
            )

    @property
    def rank(self) -> int:
        """Number of deviations held: `min(snapshot_count, max_rank)`."""
        return min(self.snapshot_count, self.max_rank)

    @property
    def second_moment_variables(self) -> list:
        """The running means of the squared weights, aligned with
        `average_variables` (`None` where there is no average)."""
        return list(self._second_moments) if self.built else []

    @property
    def deviation_variables(self) -> list:
        """The deviations `w_i - mean_i` of the last `max_rank` snapshots,
        one variable of shape `(max_rank,) + w.shape` per average (rows in
        ring order: snapshot `i` is row `i % max_rank`), aligned with
        `average_variables`; `None` where there is no average, and for every
        variable when `max_rank=0`."""
        return list(self._deviations) if self.built else []

    # -- the snapshot: SWA's hooks ----------------------------------------

    def _moment_state(self):
        second = [v for v in self._second_moments if v is not None]
        deviations = [v for v in self._deviations if v is not None]
        return second, deviations

    def _snapshot_state(self) -> list:
        second, deviations = self._moment_state()
        return super()._snapshot_state() + second + deviations

    def _moment_values(self, weights, new_averages, factors, count) -> list:
        second, deviations = self._moment_state()
        values = [_kernels.read(w) for w in weights]
        new_second = [
            _kernels.blended(_kernels.read(moment), ops.square(value), factor)
            for moment, value, factor in zip(second, values, factors)
        ]
        if not deviations:
            return new_second
        slot = ops.mod(count, self.max_rank)
        new_deviations = [
            _kernels.with_row(_kernels.read(ring), slot, value - average)
            for ring, value, average in zip(deviations, values, new_averages)
        ]
        return new_second + new_deviations

    def _update_moments_in_place(self, weights, factors, count) -> None:
        second, deviations = self._moment_state()
        values = [_kernels.read(w) for w in weights]
        _kernels.blend_squares_(second, values, factors)
        if not deviations:
            return
        slot = ops.mod(ops.convert_to_tensor(count), self.max_rank)
        _, averages = self._averaged_weights()
        for ring, value, average in zip(deviations, values, averages):
            # The averages were updated in place: this is the new mean.
            _kernels.write_difference_row_(ring, slot, value, average)

    # -- sampling ------------------------------------------------------------

    def sample_vars(
        self,
        var_list: Sequence[keras.Variable],
        scale: float = 0.5,
        seed: SeedLike = None,
        covariance: bool = True,
    ) -> None:
        """Assigns one joint sample of the SWAG Gaussian to the variables.

        Each trainable variable of `var_list` becomes
        `m + sqrt(scale) * (sqrt(max(s - m**2, var_clamp)) * z1 + D^T z2 / sqrt(K - 1))`
        with `z1` standard normal of the variable's shape and `z2` standard
        normal of size `K = rank`, one `z2` shared by all variables (the
        sample is joint, as the reference implementation's `sample_fullrank`
        draws it). Non-trainable variables are left alone. The training
        weights are overwritten: use `use_sample_vars` (or `swag_predict`)
        to get them back.

        Args:
            var_list: The model's variables (`model.variables` or
                `model.trainable_variables`).
            scale: Float >= 0. Scale of the covariance; the paper uses 0.5.
                0 gives the mean.
            seed: `None` (a fresh sample each call), an integer (the same
                integer gives the same sample on a backend), or a
                `keras.random.SeedGenerator` to draw from.
            covariance: Boolean. `False` drops the low-rank term:
                SWAG-diagonal.

        Raises:
            ValueError: before the first snapshot, or with
                `covariance=True` and fewer than 2 deviations held.

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWAG
        >>> w = keras.Variable(np.zeros(3, "float32"))
        >>> opt = SWAG(keras.optimizers.SGD(0.1), average_period=1)
        >>> for step in range(4):
        ...     opt.apply([keras.ops.full((3,), (-1.0) ** step)], [w])
        >>> opt.sample_vars([w], seed=7)
        >>> first = keras.ops.convert_to_numpy(w).copy()
        >>> opt.sample_vars([w], seed=7)
        >>> bool((keras.ops.convert_to_numpy(w) == first).all())
        True
        """
        pairs = self._sampled_pairs(var_list, "sample_vars")
        scale = _validation.check_optional_number("scale", scale, allow_zero=True)
        if scale is None:
            raise TypeError("`scale` must be a finite number >= 0. Received: scale=None")
        covariance = _validation.check_bool("covariance", covariance)
        generator = _seed_generator(seed)
        count = self.snapshot_count
        if count == 0:
            raise ValueError(
                "`sample_vars` has nothing to sample from: no snapshot has "
                "been taken yet. Train past `start_averaging` (or call "
                "`take_snapshot()`) first."
            )
        rank = self.rank
        if covariance and rank < 2:
            raise ValueError(
                f"`covariance=True` needs at least 2 deviations, and {rank} "
                f"{'is' if rank == 1 else 'are'} held ({count} snapshots, "
                f"max_rank={self.max_rank}). Take more snapshots, or pass "
                "`covariance=False` (SWAG-diagonal)."
            )
        root_scale = math.sqrt(scale)
        shared = (
            keras.random.normal((rank,), seed=generator) if covariance else None
        )
        for variable, index in pairs:
            mean = self._averages[index].value
            dtype = mean.dtype
            variance = ops.maximum(
                ops.subtract(self._second_moments[index].value, ops.square(mean)),
                ops.convert_to_tensor(self.var_clamp, dtype),
            )
            noise = ops.multiply(
                ops.sqrt(variance),
                keras.random.normal(tuple(mean.shape), dtype=dtype, seed=generator),
            )
            if covariance:
                held = self._deviations[index].value[:rank]
                low_rank = ops.tensordot(ops.cast(shared, dtype), held, axes=1)
                noise = ops.add(noise, ops.divide(low_rank, math.sqrt(rank - 1)))
            variable.assign(ops.add(mean, ops.multiply(noise, root_scale)))

    @contextlib.contextmanager
    def use_sample_vars(
        self,
        var_list: Sequence[keras.Variable],
        scale: float = 0.5,
        seed: SeedLike = None,
        covariance: bool = True,
    ) -> Iterator[None]:
        """Context manager: one sample of the SWAG Gaussian in the variables
        inside (see `sample_vars`), their values as before afterwards, even
        if the block raises.

        Example:

        >>> import numpy as np, keras
        >>> from kerasswa import SWAG
        >>> w = keras.Variable(np.zeros(3, "float32"))
        >>> opt = SWAG(keras.optimizers.SGD(0.1), average_period=1)
        >>> for step in range(4):
        ...     opt.apply([keras.ops.full((3,), (-1.0) ** step)], [w])
        >>> with opt.use_sample_vars([w], seed=1):
        ...     sampled = keras.ops.convert_to_numpy(w).copy()
        >>> print(keras.ops.convert_to_numpy(w))  # the training weights
        [0. 0. 0.]
        """
        var_list = _as_var_list(var_list)
        with _restored(var_list):
            self.sample_vars(var_list, scale=scale, seed=seed, covariance=covariance)
            yield

    def _sampled_pairs(self, var_list, caller):
        return [
            (variable, index)
            for variable, index in self._trainable_indices(var_list, caller)
            if self._averages[index] is not None
        ]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"max_rank": self.max_rank, "var_clamp": self.var_clamp})
        return config


def swag_predict(
    model: keras.Model,
    x: Any,
    num_samples: int = 30,
    scale: float = 0.5,
    covariance: bool = True,
    bn_data: Any = None,
    batch_size: Optional[int] = None,
    seed: SeedLike = None,
    verbose: int = 0,
    bn_batch_size: int = 32,
) -> Any:
    """Bayesian model averaging with SWAG: the mean prediction over samples.

    For each of `num_samples` samples of the SWAG Gaussian of the model's
    `SWAG` optimizer (see `SWAG.sample_vars`), the sample is assigned to the
    model's weights, batch-norm statistics are recomputed for it with
    `update_bn` when `bn_data` is given (the paper does), and
    `model.predict(x)` is taken; the result is the mean of those predictions
    (for a classifier ending in a softmax, the averaged probabilities).
    Afterwards the model's weights and statistics are exactly as before,
    even if an error interrupts it.

    Args:
        model: A Keras model compiled with a `kerasswa.SWAG` optimizer that
            has taken at least one snapshot.
        x: The inputs, anything `model.predict` takes.
        num_samples: Integer >= 1. Number of samples to average over.
        scale: Float >= 0. Scale of the covariance (0.5 in the paper).
        covariance: Boolean. `False` samples SWAG-diagonal.
        bn_data: `None`, or the inputs to recompute batch-norm statistics
            on for each sample (usually the training inputs).
        batch_size: Integer >= 1 or `None`: `model.predict`'s batch size.
        seed: `None`, an integer (the same integer gives the same result on
            a backend), or a `keras.random.SeedGenerator`.
        verbose: 0 (silent) or 1 (a progress bar over the samples).
        bn_batch_size: Integer >= 1: `update_bn`'s batch size for array
            `bn_data`.

    Returns:
        The mean of the predictions, as NumPy arrays of the structure
        `model.predict` returns.

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa import SWAG, swag_predict
    >>> model = keras.Sequential([keras.Input((2,)),
    ...                          keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(optimizer=SWAG("sgd", average_period=1, max_rank=4),
    ...               loss="sparse_categorical_crossentropy")
    >>> x = np.random.rand(32, 2).astype("float32")
    >>> _ = model.fit(x, np.arange(32) % 3, batch_size=4, verbose=0)
    >>> probabilities = swag_predict(model, x[:5], num_samples=8, seed=0)
    >>> np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    True
    """
    optimizer = _find_swa(model, SWAG, "swag_predict")
    num_samples = _validation.check_count("num_samples", num_samples, minimum=1)
    batch_size = _validation.check_optional_count("batch_size", batch_size, minimum=1)
    bn_batch_size = _validation.check_count("bn_batch_size", bn_batch_size, minimum=1)
    verbose = _validation.check_verbose(verbose)
    check_data("x", x)
    if bn_data is not None:
        check_data("bn_data", bn_data, finite=True)
    generator = _seed_generator(seed)
    progress = keras.utils.Progbar(num_samples, verbose=verbose, unit_name="sample")
    total = None
    with _restored(model.variables):
        for sample in range(num_samples):
            optimizer.sample_vars(
                model.trainable_variables, scale=scale, seed=generator, covariance=covariance
            )
            if bn_data is not None:
                _update_bn(
                    model, bn_data, bn_batch_size, None, 0, argument="bn_data", data_checked=True
                )
            try:
                predicted = model.predict(x, batch_size=batch_size, verbose=0)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"`x` could not go through model {model.name!r}: {error}"
                ) from error
            prediction = keras.tree.map_structure(
                lambda p: np.asarray(p, dtype="float64"), predicted
            )
            total = (
                prediction
                if total is None
                else keras.tree.map_structure(np.add, total, prediction)
            )
            progress.update(sample + 1)
    return keras.tree.map_structure(lambda t: (t / num_samples).astype("float32"), total)


def _seed_generator(seed: SeedLike) -> keras.random.SeedGenerator:
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if seed is None:
        return keras.random.SeedGenerator()
    return keras.random.SeedGenerator(_validation.check_count("seed", seed, minimum=0))


def _reference_name(variable, suffix: str) -> str:
    """An optimizer variable's name after its weight, as Keras's
    `add_variable_from_reference` makes it."""
    reference = getattr(variable, "path", None) or str(variable.name)
    return f"{reference.replace('/', '_').replace(':', '_')}_{suffix}"


def _with_whole_leading_axis(layout):
    """The layout of a weight with one more, unsharded, leading axis."""
    if layout is None:
        return None
    from keras.distribution import TensorLayout

    if isinstance(layout, TensorLayout):
        return TensorLayout((None,) + tuple(layout.axes), layout.device_mesh)
    if keras.config.backend() == "jax":
        import jax

        # Keras < 3.15 keeps a weight's layout as JAX's own sharding.
        if isinstance(layout, jax.sharding.NamedSharding):
            return jax.sharding.NamedSharding(
                layout.mesh, jax.sharding.PartitionSpec(None, *layout.spec)
            )
    return None
