"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models", EDM2): choose the length of the average after
training.

`PostHocEMA` keeps, beside the weights, one power-function EMA
(`kerasswa.PowerEMA`) per relative width in `sigma_rels`, and
`save_profiles` (or the `PostHocEMACheckpoint` callback) writes them to a
folder now and then. A power EMA of another width, at the time of any save,
is then rebuilt from the saved ones by `posthoc_ema`: after `t` snapshots the
power EMA of exponent `g` weighs snapshot `tau` by the integral of the
profile `p(s) = (g + 1) s**g / t**(g + 1)` over `[tau - 1, tau]`, so a
combination `sum_i x_i p_i` of the saved profiles that approximates the
target profile `p` in L2 gives the same combination of the saved averages.
The inner product of two profiles ending at `t_a <= t_b` is

    <p_a, p_b> = (g_a + 1)(g_b + 1) / ((g_a + g_b + 1) t_b) * (t_a / t_b) ** g_b

`posthoc_ema` solves `A x = <p_i, p>` over the saved profiles that end no
later than the target (least squares in float64), scales `x` to sum 1 (each
profile is a weighted mean), and reports the relative L2 error of the
rebuilt profile, `||sum_i x_i p_i - p|| / ||p||`, which `posthoc_ema_error`
also gives for a planned schedule before training. Because the snapshot
weights are the profiles' integrals over unit intervals, that error also
bounds the rebuilt snapshot weights (by Cauchy-Schwarz on each interval):
`sqrt(sum_tau (w_tau - w*_tau) ** 2) <= error * ||p||`, with
`||p|| = (g + 1) / sqrt((2 g + 1) t)`.

**Time.** Profiles live in snapshot units: `t` is the number of snapshots
averaged (`snapshot_count`). Snapshot `n` (from 1) is taken at the update
with index `start_averaging + (n - 1) * average_period` (updates counted from
0), so after `u` updates `t = ceil((u - start_averaging) / average_period)`
(0 before `start_averaging`). With `start_averaging = 0` and
`average_period = 1` (the defaults of `PostHocEMA`) snapshots and updates are
the same; otherwise `sigma_rel` is relative to the averaged stretch of the
run.

**Files.** Each save writes one NumPy `.npz` file,
`posthoc-ema-<snapshot count, 10 digits>.npz` (so saves at the same
snapshot count replace each other), written to a temporary name first and
then renamed, so that a process reading the folder never sees half a file.
It holds, for profile `p` and saved variable `v`, the array
`profile<p>_var<v>` (the variable's dtype; bfloat16 and other types NumPy
lacks as float32), and `metadata`, a JSON string (a 0-d unicode array) with:
`format` (`"kerasswa.posthoc_ema"`), `format_version` (1), `kerasswa_version`,
`snapshot_count`, `update_count`, `start_averaging`, `average_period`,
`sigma_rels` and `gammas` (one per profile), `trainable_variables` (how many
the optimizer was built with) and `variables`: one entry per saved
variable, `{"index": its position among the optimizer's (the model's)
trainable variables, "path", "shape", "dtype"}`.

When the optimizer keeps averages of the model's non-trainable variables
(`SWACallback(average_non_trainable=True)`, one power EMA per profile, taken
at the same snapshots as the weights'), a save also holds them, and the
metadata the optional keys `non_trainable_variables` (how many the model
has) and `statistics`: one entry per non-trainable variable `s`,
`{"index": its position among the model's non-trainable variables, "path",
"shape", "dtype", "averaged"}`, with the array `profile<p>_stat<s>` for an
averaged (float) one and `copy<s>`, its value at the last snapshot, for an
integer or boolean one. `posthoc_ema` rebuilds them with the weights'
coefficients when every save it uses holds them. Readers of format
version 1 that know nothing of them read the weights as before.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from typing import Any, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
from keras import ops
from keras.src.utils import io_utils

from kerasswa import _kernels, _validation
from kerasswa.averaging import PowerEMA, check_sigma_rel
from kerasswa.swa import SWA, OptimizerLike, _find_swa, _keras_version, _variable_name

FORMAT = "kerasswa.posthoc_ema"
FORMAT_VERSION = 1
_FILE_NAME = "posthoc-ema-{:010d}.npz"
_FILE_PATTERN = re.compile(r"^posthoc-ema-(\d+)\.npz$")
# Least squares over more profiles than this would take minutes and
# gigabytes; no useful schedule needs it.
_MAX_PLANNED_PROFILES = 4000

# Under `steps_per_execution > 1`, which batch index `on_train_batch_end` gets.
_BATCH_END_GETS_THE_LAST_INDEX = _keras_version() >= (3, 11)

PathLike = Union[str, "os.PathLike[str]"]


@keras.saving.register_keras_serializable(package="kerasswa", name="PostHocEMA")
class PostHocEMA(SWA):
    """SWA that keeps several power-function EMAs, for post-hoc EMA.

    One power EMA (`kerasswa.PowerEMA`) per relative width in `sigma_rels`
    is updated at every snapshot, as `SWA(averaging=PowerEMA(...))` updates
    its one. Save them now and then with `save_profiles` (or the
    `PostHocEMACheckpoint` callback); after training, `posthoc_ema` rebuilds
    from the saved files the power EMA of any width at the time of any
    save, so the length of the average is chosen on validation data instead
    of guessed before training (Karras et al. 2024, EDM2, who keep
    `sigma_rels=(0.05, 0.10)`). See `kerasswa.posthoc` for the mathematics,
    the time unit and the file format.

    Everything `SWA` does holds; the average of `assign_average_vars`,
    `use_average_vars` and `average_variables` is the first profile's. With
    `SWACallback(average_non_trainable=True)` the model's batch-norm
    statistics get one power EMA per profile too, which `save_profiles`
    saves and `posthoc_ema` rebuilds with the weights' coefficients. The
    state costs one copy of the trainable weights per profile beside the
    inner optimizer's, all optimizer variables, saved with the model.

    Args:
        optimizer: The optimizer that computes the updates, as for `SWA`.
        sigma_rels: A sequence of distinct relative widths, each in
            (0, sqrt(1/12)]: the profiles kept. Defaults to `(0.05, 0.10)`,
            EDM2's.
        start_averaging: Integer >= 0 or `None`, as for `SWA`. Defaults to
            0.
        average_period: Integer >= 1, as for `SWA`. Defaults to 1: a
            snapshot at every update, as in EDM2 (a power EMA has the same
            shape with any period, sampled more coarsely).
        name: String or `None`. Name of the optimizer and prefix of its
            variables; `None` (the default) gives a name of its own
            (`"post_hoc_ema"`, then `"post_hoc_ema_1"`, ...), as for `SWA`.
        **kwargs: The other arguments of `SWA` (`sequential_update`,
            `clipnorm`, `learning_rate`, ...), except `averaging`.

    Example:

    >>> import tempfile
    >>> import numpy as np, keras
    >>> from kerasswa import PostHocEMA, PostHocEMACheckpoint, posthoc_ema
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=PostHocEMA(keras.optimizers.SGD(0.05)),
    ...               loss="mse")
    >>> x = np.random.rand(64, 4).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> folder = tempfile.TemporaryDirectory()
    >>> _ = model.fit(x, y, batch_size=8, epochs=8, verbose=0,
    ...               callbacks=[PostHocEMACheckpoint(folder.name, save_freq=4)])
    >>> [round(g, 2) for g in model.optimizer.gammas]
    [16.97, 6.94]
    >>> error = posthoc_ema(model, folder.name, sigma_rel=0.15)  # now in the model
    >>> bool(error < 0.05)
    True
    >>> folder.cleanup()
    """

    def __init__(
        self,
        optimizer: OptimizerLike,
        sigma_rels: Sequence[float] = (0.05, 0.10),
        start_averaging: Optional[int] = 0,
        average_period: int = 1,
        name: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        if "averaging" in kwargs:
            raise ValueError(
                "PostHocEMA keeps one power EMA per `sigma_rels`: it takes no "
                f"`averaging`. Received: averaging={kwargs['averaging']!r}"
            )
        sigma_rels = check_sigma_rels(sigma_rels)
        super().__init__(
            optimizer,
            start_averaging=start_averaging,
            average_period=average_period,
            name=name,
            averaging=PowerEMA(sigma_rel=sigma_rels[0]),
            **kwargs,
        )
        self.sigma_rels = sigma_rels
        self._rules = tuple(PowerEMA(sigma_rel=s) for s in sigma_rels)

    def _non_trainable_rules(self) -> list:
        """One power EMA of the non-trainable variables per profile."""
        return list(self._rules)

    @property
    def gammas(self) -> Tuple[float, ...]:
        """The exponents of the profiles, one per `sigma_rels`."""
        return tuple(rule.gamma for rule in self._rules)

    @property
    def profile_variables(self) -> List[list]:
        """One list per profile (in the order of `sigma_rels`) of its
        averages, aligned with `average_variables` (`None` where a variable
        has no average; the first list is `average_variables`). Empty before
        `build`."""
        return [list(profile) for profile in self._profiles] if self.built else []

    # -- SWA's hooks: the profiles after the first --------------------------

    def _build_moments(self, var_list) -> None:
        self._profiles = [list(self._averages)]
        for index in range(1, len(self.sigma_rels)):
            self._profiles.append(
                [
                    None
                    if average is None
                    else self.add_variable_from_reference(variable, name=f"posthoc_ema_{index}")
                    for variable, average in zip(var_list, self._averages)
                ]
            )

    def _more_profiles(self):
        """`(rule, averages)` of each profile after the first, `None`s left
        out."""
        return [
            (rule, [a for a in profile if a is not None])
            for rule, profile in zip(self._rules[1:], self._profiles[1:])
        ]

    def _snapshot_state(self) -> list:
        return super()._snapshot_state() + [a for _, profile in self._more_profiles() for a in profile]

    def _moment_values(self, weights, new_averages, factors, count) -> list:
        values = []
        for rule, profile in self._more_profiles():
            for average, weight, factor in zip(profile, weights, self._factors(count, profile, rule)):
                values.append(
                    _kernels.blended(
                        _kernels.read(average), ops.cast(_kernels.read(weight), average.dtype), factor
                    )
                )
        return values

    def _update_moments_in_place(self, weights, factors, count) -> None:
        targets, sources, all_factors = [], [], []
        for rule, profile in self._more_profiles():
            targets += profile
            sources += weights
            all_factors += self._factors(count, profile, rule)
        if targets:
            # One call: on PyTorch one fused pass over every profile.
            _kernels.blend_(targets, sources, all_factors)

    # -- saving ------------------------------------------------------------

    def save_profiles(self, folder: PathLike) -> str:
        """Writes the profiles, with the snapshot and update counts, to a new
        file in `folder` (created if needed), and returns its path.

        The file is `posthoc-ema-<snapshot count>.npz`, described in
        `kerasswa.posthoc`; a save at the same snapshot count replaces it.
        Call it outside compiled functions, e.g. from a callback (as
        `PostHocEMACheckpoint` does) or between `fit` calls.

        Args:
            folder: String or `PathLike`: the folder of the saves.

        Returns:
            The path of the file written.

        Raises:
            ValueError: before the first snapshot (there is nothing to save),
                or if `folder` cannot be a folder.

        Example:

        >>> import os, tempfile
        >>> import numpy as np, keras
        >>> from kerasswa import PostHocEMA
        >>> w = keras.Variable(np.zeros(2, "float32"))
        >>> opt = PostHocEMA(keras.optimizers.SGD(0.1))
        >>> for _ in range(5):
        ...     opt.apply([keras.ops.ones((2,))], [w])
        >>> folder = tempfile.TemporaryDirectory()
        >>> os.path.basename(opt.save_profiles(folder.name))
        'posthoc-ema-0000000005.npz'
        >>> folder.cleanup()
        """
        folder = _check_folder(folder)
        if not self.built or self.snapshot_count == 0:
            raise ValueError(
                f"`save_profiles` has nothing to save: {self.name!r} has taken "
                "no snapshot yet. Save after the first snapshot "
                f"(start_averaging={self.start_averaging})."
            )
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise ValueError(f"`folder` cannot be made a folder: {error}. Received: folder={folder!r}") from None
        count = self.snapshot_count
        saved = [
            (index, variable)
            for index, (variable, average) in enumerate(zip(self._trainable_variables, self._averages))
            if average is not None
        ]
        arrays = {}
        for p, profile in enumerate(self._profiles):
            for v, (index, _) in enumerate(saved):
                arrays[f"profile{p}_var{v}"] = _storable(ops.convert_to_numpy(profile[index]))
        from kerasswa import __version__

        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kerasswa_version": __version__,
            "snapshot_count": count,
            "update_count": self.update_count,
            "start_averaging": self.start_averaging,
            "average_period": self.average_period,
            "sigma_rels": list(self.sigma_rels),
            "gammas": list(self.gammas),
            "trainable_variables": len(self._trainable_variables),
            "variables": [
                {
                    "index": index,
                    "path": _variable_name(variable),
                    "shape": [int(d) for d in variable.shape],
                    "dtype": keras.backend.standardize_dtype(variable.dtype),
                }
                for index, variable in saved
            ],
        }
        arrays.update(self._statistics_arrays(metadata, count))
        arrays["metadata"] = np.array(json.dumps(metadata))
        path = os.path.join(folder, _FILE_NAME.format(count))
        partial = os.path.join(folder, f".{_FILE_NAME.format(count)}.{os.getpid()}.partial")
        with open(partial, "wb") as file:
            np.savez(file, **arrays)
        os.replace(partial, path)
        return path

    def _statistics_arrays(self, metadata: dict, count: int) -> dict:
        """The averages of the non-trainable variables (one per profile) and
        the copies of the integer and boolean ones, as saved arrays, with
        their description added to `metadata`; none when they are not kept,
        or do not hold the same snapshots as the weights."""
        statistics = self._non_trainable_averages
        statistics.catch_up()
        if not statistics.attached:
            return {}
        if statistics.count != count:
            warnings.warn(
                f"`save_profiles` saves no averages of the non-trainable variables: "
                f"they hold {statistics.count} snapshots and the weights {count}.",
                stacklevel=3,
            )
            return {}
        state = statistics.arrays()
        entries, arrays = [], {}
        for i, variable in enumerate(statistics.variables):
            averaged = f"average0_{i}" in state
            s = len(entries)
            entries.append(
                {
                    "index": i,
                    "path": _variable_name(variable),
                    "shape": [int(d) for d in variable.shape],
                    "dtype": keras.backend.standardize_dtype(variable.dtype),
                    "averaged": averaged,
                }
            )
            if averaged:
                for p in range(len(self._rules)):
                    arrays[f"profile{p}_stat{s}"] = _storable(state[f"average{p}_{i}"])
            else:
                arrays[f"copy{s}"] = np.asarray(state[f"copy_{i}"])
        metadata["non_trainable_variables"] = len(entries)
        metadata["statistics"] = entries
        return arrays

    def get_config(self) -> dict:
        config = super().get_config()
        del config["averaging"]
        config["sigma_rels"] = list(self.sigma_rels)
        return config


class PostHocEMACheckpoint(keras.callbacks.Callback):
    """Saves the profiles of a `PostHocEMA` optimizer during `fit`.

    Calls the optimizer's `save_profiles(folder)` every `save_freq` batches
    (training steps), or at the end of every epoch, and at the end of
    training, so that the last state is always among the saves. Saves
    before the first snapshot are skipped. A callback of its own rather than
    an option of `SWAModelCheckpoint`: that one writes whole models when a
    monitored score improves, replacing earlier files; this one writes
    profiles on a schedule, and every save is kept, since each adds a point
    for the reconstruction.

    How often to save: each save adds one file of `len(sigma_rels)` copies
    of the weights; `posthoc_ema_error` says, before training, how well a
    schedule rebuilds the widths you may want.

    Args:
        folder: String or `PathLike`: the folder of the saves (created when
            training starts).
        save_freq: `"epoch"` (the default) or an integer >= 1: save every
            this many batches.
        verbose: 0 (silent) or 1 (a line per save).

    Example:

    >>> import os, tempfile
    >>> import numpy as np, keras
    >>> from kerasswa import PostHocEMA, PostHocEMACheckpoint
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=PostHocEMA("sgd"), loss="mse")
    >>> x, y = np.random.rand(32, 4), np.random.rand(32, 1)
    >>> folder = tempfile.TemporaryDirectory()
    >>> _ = model.fit(x, y, batch_size=8, epochs=3, verbose=0,
    ...               callbacks=[PostHocEMACheckpoint(folder.name)])
    >>> sorted(os.listdir(folder.name))  # after 4, 8 and 12 snapshots
    ['posthoc-ema-0000000004.npz', 'posthoc-ema-0000000008.npz', 'posthoc-ema-0000000012.npz']
    >>> folder.cleanup()
    """

    def __init__(self, folder: PathLike, save_freq: Union[str, int] = "epoch", verbose: int = 0) -> None:
        super().__init__()
        self.folder = _check_folder(folder)
        if isinstance(save_freq, str):
            if save_freq != "epoch":
                raise ValueError(
                    '`save_freq` must be "epoch" or an integer >= 1 (a number of '
                    f"batches). Received: save_freq={save_freq!r}"
                )
            self.save_freq: Union[str, int] = "epoch"
        else:
            self.save_freq = _validation.check_count("save_freq", save_freq, minimum=1)
        self.verbose = _validation.check_verbose(verbose)
        self._optimizer: Optional[PostHocEMA] = None
        self._last_batch = -1
        self._batches_since_save = 0
        self._saved_count: Optional[int] = None

    def on_train_begin(self, logs=None):
        self._optimizer = _find_swa(self.model, PostHocEMA, "PostHocEMACheckpoint")
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as error:
            raise ValueError(
                f"`folder` cannot be made a folder: {error}. Received: folder={self.folder!r}"
            ) from None
        self._last_batch = -1
        self._batches_since_save = 0
        self._saved_count = None

    def on_epoch_begin(self, epoch, logs=None):
        self._last_batch = -1

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        last = self._last_batch_of_execution(batch)
        self._batches_since_save += last - self._last_batch
        self._last_batch = last
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save()

    def _last_batch_of_execution(self, batch: int) -> int:
        """The index of the last batch that the execution just ended ran.

        With `steps_per_execution > 1` Keras calls `on_train_batch_end` once
        per execution: from Keras 3.11 with the index of its last batch,
        before that with the index of its first."""
        if _BATCH_END_GETS_THE_LAST_INDEX:
            return batch
        per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        steps = (self.params or {}).get("steps")
        last = batch + per_execution - 1
        return last if steps is None else min(last, steps - 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save()

    def on_train_end(self, logs=None):
        self._save()

    def _save(self) -> None:
        _ = self.model  # On JAX, this brings the optimizer's variables up to date.
        count = self._optimizer.snapshot_count
        # Nothing to save yet, or the file of this count written already (the
        # end of training just after the end of an epoch).
        if count == 0 or count == self._saved_count:
            return
        self._saved_count = count
        path = self._optimizer.save_profiles(self.folder)
        if self.verbose:
            io_utils.print_msg(f"PostHocEMACheckpoint: saved {path}")


# -- reconstruction -----------------------------------------------------------


def posthoc_ema(
    model: keras.Model,
    folder: PathLike,
    sigma_rel: Optional[float] = None,
    gamma: Optional[float] = None,
    snapshot_count: Optional[int] = None,
) -> float:
    """Rebuilds a power EMA from saved profiles and assigns it to a model.

    Reads the files that `PostHocEMA.save_profiles` wrote to `folder`,
    finds the combination of the saved profiles (those that end no later
    than `snapshot_count`) that best approximates the power-function profile of
    relative width `sigma_rel` (or exponent `gamma`) ending at
    `snapshot_count` (least squares in float64 over their closed-form inner
    products, scaled to sum 1; see `kerasswa.posthoc`), and assigns the same
    combination of the saved averages to the model's trainable variables.
    Where the saves hold averages of the non-trainable variables
    (`SWACallback(average_non_trainable=True)` during training), the same
    combination of them goes to the model's batch-norm statistics (and the
    integer and boolean ones get their value of the latest save used);
    otherwise non-trainable variables are left as they are.

    The model may be another one than the one trained (a new process, say),
    as long as its trainable variables have the shapes of the saved ones,
    in the same order.

    Args:
        model: The Keras model to assign the rebuilt weights to.
        folder: String or `PathLike`: the folder of the saves.
        sigma_rel: Float in (0, sqrt(1/12)]: the relative width of the
            power EMA wanted.
        gamma: Float >= 0: its exponent, instead of `sigma_rel` (give one).
        snapshot_count: Integer >= 1 or `None`: the time of the power EMA
            wanted, in snapshots; `None` for that of the last save. Saves
            made later are not used.

    Returns:
        The relative L2 error of the rebuilt profile,
        `||sum_i x_i p_i - p|| / ||p||`: 0 when the profile was saved, a few
        percent when it lies between saved ones, more far outside them.

    Raises:
        TypeError, ValueError: for a `folder` that is not a folder of saves
            of one run, a `snapshot_count` later than the last save, or a
            model whose trainable (or, with saved statistics, non-trainable)
            variables do not match the saved ones; nothing is changed then.

    Example:

    >>> import tempfile
    >>> import numpy as np, keras
    >>> from kerasswa import PostHocEMA, posthoc_ema
    >>> w = keras.Variable(np.zeros((1, 1), "float32"))
    >>> opt = PostHocEMA(keras.optimizers.SGD(1.0))  # sigma_rels 0.05, 0.10
    >>> folder = tempfile.TemporaryDirectory()
    >>> for step in range(100):  # w = 1, 2, ..., 100
    ...     opt.apply([keras.ops.full((1, 1), -1.0)], [w])
    ...     if (step + 1) % 10 == 0:
    ...         _ = opt.save_profiles(folder.name)
    >>> model = keras.Sequential([keras.Input((1,)),
    ...                          keras.layers.Dense(1, use_bias=False)])
    >>> error = posthoc_ema(model, folder.name, sigma_rel=0.10)  # a saved profile
    >>> print(round(error, 6), model.get_weights()[0].round(2))
    0.0 [[89.3]]
    >>> error = posthoc_ema(model, folder.name, sigma_rel=0.07)  # between them
    >>> print(round(error, 3), model.get_weights()[0].round(2))
    0.009 [[92.93]]
    >>> # The power EMA of width 0.07 itself: 92.94, from the closed-form weights.
    >>> folder.cleanup()
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a Keras model. Received: "
            f"model={model!r} (of type {type(model).__name__})"
        )
    target = PowerEMA(sigma_rel=sigma_rel, gamma=gamma)
    saves = _read_saves(folder)
    last = saves[-1]["snapshot_count"]
    if snapshot_count is None:
        time = last
    else:
        time = _validation.check_count("snapshot_count", snapshot_count, minimum=1)
        if time > last:
            raise ValueError(
                f"`snapshot_count` is later than the last save in `folder` "
                f"({last} snapshots): a power EMA cannot be rebuilt beyond it. "
                f"Received: snapshot_count={time}"
            )
    variables = _matching_variables(model, saves[-1])
    used = [(save, p) for save in saves if save["snapshot_count"] <= time for p in range(len(save["gammas"]))]
    used_saves = list({id(save): save for save, _ in used}.values())
    statistics = _matching_statistics(model, used_saves)
    times = np.array([save["snapshot_count"] for save, _ in used], dtype="float64")
    gammas = np.array([save["gammas"][p] for save, p in used], dtype="float64")
    weights, error = _solve(times, gammas, time, target.gamma)
    averaged = [(s, v) for s, (v, entry) in enumerate(statistics) if entry["averaged"]]
    totals = [np.zeros(tuple(v.shape), "float64") for v in variables]
    statistic_totals = [np.zeros(tuple(v.shape), "float64") for _, v in averaged]
    for save in used_saves:
        mine = [(k, p) for k, (s, p) in enumerate(used) if s is save and weights[k] != 0.0]
        if not mine:
            continue
        with np.load(save["path"], allow_pickle=False) as arrays:
            for k, p in mine:
                for v, total in enumerate(totals):
                    total += weights[k] * arrays[f"profile{p}_var{v}"].astype("float64")
                # The statistics' profiles are the weights': the same combination.
                for (s, _), total in zip(averaged, statistic_totals):
                    total += weights[k] * arrays[f"profile{p}_stat{s}"].astype("float64")
    copies = []
    if statistics:
        # Integer and boolean state is never averaged: its value at the last
        # snapshot used, that of the latest save.
        with np.load(used_saves[-1]["path"], allow_pickle=False) as arrays:
            copies = [(v, arrays[f"copy{s}"]) for s, (v, entry) in enumerate(statistics) if not entry["averaged"]]
    for variable, total in zip(variables, totals):
        variable.assign(ops.cast(ops.convert_to_tensor(total), variable.dtype))
    for (_, variable), total in zip(averaged, statistic_totals):
        variable.assign(ops.cast(ops.convert_to_tensor(total), variable.dtype))
    for variable, value in copies:
        variable.assign(ops.convert_to_tensor(value, variable.dtype))
    return error


def posthoc_ema_error(
    sigma_rel: float,
    total_updates: int,
    save_every: int,
    sigma_rels: Sequence[float] = (0.05, 0.10),
    start_averaging: int = 0,
    average_period: int = 1,
) -> float:
    """The relative error with which `posthoc_ema` will rebuild a width,
    for a schedule planned before training.

    The schedule: a `PostHocEMA(sigma_rels=sigma_rels,
    start_averaging=start_averaging, average_period=average_period)` run of
    `total_updates` updates that saves its profiles every `save_every`
    updates and at the end (as `PostHocEMACheckpoint(save_freq=save_every)`
    does, one batch being one update). The target is the power EMA of width
    `sigma_rel` at the end. Use it to choose how often to save: the error
    falls as saves get denser, and grows for widths far from `sigma_rels`.

    Args:
        sigma_rel: Float in (0, sqrt(1/12)]: the width to rebuild.
        total_updates: Integer >= 1: the length of training, in updates.
        save_every: Integer >= 1: updates between two saves.
        sigma_rels: The widths kept, as for `PostHocEMA`.
        start_averaging: Integer >= 0, as for `PostHocEMA`.
        average_period: Integer >= 1, as for `PostHocEMA`.

    Returns:
        The relative L2 error `||sum_i x_i p_i - p|| / ||p||` of the
        rebuilt profile (see `posthoc_ema`).

    Example:

    >>> from kerasswa import posthoc_ema_error
    >>> for every in (50_000, 10_000, 5_000):  # of 500,000 updates
    ...     print(every, round(posthoc_ema_error(0.20, 500_000, every), 4))
    50000 0.0535
    10000 0.0028
    5000 0.0007
    """
    target = PowerEMA(sigma_rel=sigma_rel)
    gammas = [PowerEMA(sigma_rel=s).gamma for s in check_sigma_rels(sigma_rels)]
    total = _validation.check_count("total_updates", total_updates, minimum=1, maximum=2**62)
    every = _validation.check_count("save_every", save_every, minimum=1, maximum=2**62)
    start = _validation.check_count("start_averaging", start_averaging, minimum=0, maximum=2**62)
    period = _validation.check_count("average_period", average_period, minimum=1, maximum=2**62)
    saves = total // every + 1
    if saves * len(gammas) > _MAX_PLANNED_PROFILES:
        raise ValueError(
            f"`save_every` plans {saves} saves of {len(gammas)} profiles, more than the "
            f"{_MAX_PLANNED_PROFILES} profiles a least-squares fit here handles: save less "
            f"often. Received: total_updates={total}, save_every={every}"
        )

    def snapshots_after(updates: int) -> int:
        return 0 if updates <= start else -(-(updates - start) // period)

    counts = sorted(
        {snapshots_after(u) for u in range(every, total + 1, every)} | {snapshots_after(total)}
    )
    counts = [c for c in counts if c > 0]
    if not counts:
        raise ValueError(
            f"No snapshot is taken in {total} updates that start averaging at "
            f"update {start}: nothing would be saved. Received: "
            f"total_updates={total}, start_averaging={start}"
        )
    times = np.repeat(np.array(counts, "float64"), len(gammas))
    all_gammas = np.tile(np.array(gammas, "float64"), len(counts))
    _, error = _solve(times, all_gammas, counts[-1], target.gamma)
    return error


def profile_inner_products(t_a, g_a, t_b, g_b):
    """`<p_a, p_b>` for power profiles of exponents `g_a`, `g_b` ending at
    times `t_a`, `t_b` (NumPy arrays or numbers, broadcast; float64)."""
    t_a, g_a, t_b, g_b = (np.asarray(a, "float64") for a in (t_a, g_a, t_b, g_b))
    later_is_b = t_a <= t_b
    t_early = np.where(later_is_b, t_a, t_b)
    t_late = np.where(later_is_b, t_b, t_a)
    g_late = np.where(later_is_b, g_b, g_a)
    return (g_a + 1.0) * (g_b + 1.0) / ((g_a + g_b + 1.0) * t_late) * (t_early / t_late) ** g_late


def _solve(times, gammas, time, gamma) -> Tuple[np.ndarray, float]:
    """The weights of the saved profiles `(times, gammas)` that best
    approximate the profile `(time, gamma)`, scaled to sum 1, and the
    relative L2 error of that approximation."""
    gram = profile_inner_products(times[:, None], gammas[:, None], times[None, :], gammas[None, :])
    toward = profile_inner_products(times, gammas, time, gamma)
    norm2 = float(profile_inner_products(time, gamma, time, gamma))
    weights = np.linalg.lstsq(gram, toward, rcond=None)[0]
    weights = weights / weights.sum()
    error2 = (weights @ gram @ weights - 2.0 * weights @ toward + norm2) / norm2
    return weights, math.sqrt(max(float(error2), 0.0))


# -- the folder ---------------------------------------------------------------


def _check_folder(folder: Any) -> str:
    if isinstance(folder, os.PathLike):
        folder = os.fspath(folder)
    if not isinstance(folder, str) or not folder:
        raise TypeError(
            "`folder` must be a path (a non-empty string or os.PathLike). "
            f"Received: folder={folder!r} (of type {type(folder).__name__})"
        )
    return folder


def _read_saves(folder: Any) -> list:
    """The metadata of every save in `folder`, in the order of their
    snapshot counts, each with its `path`; checked to come from one run."""
    folder = _check_folder(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"`folder` is not a folder. Received: folder={folder!r}")
    names = sorted(name for name in os.listdir(folder) if _FILE_PATTERN.match(name))
    if not names:
        raise ValueError(
            "`folder` holds no post-hoc EMA profiles (posthoc-ema-*.npz files, "
            "written by PostHocEMA.save_profiles or PostHocEMACheckpoint). "
            f"Received: folder={folder!r}"
        )
    saves = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                metadata = json.loads(str(arrays["metadata"]))
                keys = set(arrays.files)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path!r} in `folder` is not a post-hoc EMA save: {error}") from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError(f"{path!r} in `folder` is not a post-hoc EMA save (no {FORMAT!r} metadata).")
        version = metadata.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"{path!r} has format version {version!r}; this kerasswa reads "
                f"versions up to {FORMAT_VERSION}: update kerasswa."
            )
        expected = {
            f"profile{p}_var{v}" for p in range(len(metadata["gammas"])) for v in range(len(metadata["variables"]))
        }
        for s, entry in enumerate(metadata.get("statistics", [])):
            if entry["averaged"]:
                expected |= {f"profile{p}_stat{s}" for p in range(len(metadata["gammas"]))}
            else:
                expected.add(f"copy{s}")
        if not expected <= keys:
            raise ValueError(f"{path!r} in `folder` lacks arrays: {sorted(expected - keys)[:3]}")
        metadata["path"] = path
        saves.append(metadata)
    saves.sort(key=lambda save: save["snapshot_count"])
    compared = ("variables", "start_averaging", "average_period", "trainable_variables")
    with_statistics = [save for save in saves if "statistics" in save]
    # Not the variables' paths: Keras numbers its layers per session, so one
    # run resumed in another session may name them differently. Statistics
    # may be missing from some saves (kept from some point on only).
    checks = [(saves, key) for key in compared] + [(with_statistics, "statistics")]
    for group, key in checks:
        for save in group[1:]:
            first = group[0]
            if _comparable(save, key) != _comparable(first, key):
                raise ValueError(
                    f"`folder` mixes saves of different runs: {key} differs between "
                    f"{os.path.basename(first['path'])!r} and {os.path.basename(save['path'])!r} "
                    f"({_short(_comparable(first, key))} and {_short(_comparable(save, key))}). "
                    f"Received: folder={folder!r}"
                )
    return saves


def _comparable(save: dict, key: str) -> Any:
    if key == "variables":
        return [(v["index"], v["shape"], v["dtype"]) for v in save[key]]
    if key == "statistics":
        return [(v["index"], v["shape"], v["dtype"], v["averaged"]) for v in save[key]]
    return save[key]


def _check_count(model: keras.Model, variables: list, save: dict, key: str, saved: str) -> None:
    """Refuses a model whose count of `key` variables is not the saves'."""
    if len(variables) != save[key]:
        raise ValueError(
            f"`model` does not match the saved {saved}: it has {len(variables)} "
            f"{key.replace('_variables', '').replace('_', '-')} variables, the saves {save[key]}. "
            f"Received: model={model.name!r}"
        )


def _matching_variables(model: keras.Model, save: dict) -> list:
    """The model's trainable variables that the saved averages belong to;
    refuses a model whose variables do not match."""
    trainable = list(model.trainable_variables)
    _check_count(model, trainable, save, "trainable_variables", "profiles")
    variables = []
    for entry in save["variables"]:
        variable = trainable[entry["index"]]
        if [int(d) for d in variable.shape] != entry["shape"]:
            raise ValueError(
                f"`model` does not match the saved profiles: its trainable variable "
                f"{_variable_name(variable)!r} has shape {tuple(variable.shape)}, the "
                f"saved {entry['path']!r} {tuple(entry['shape'])}. Received: model={model.name!r}"
            )
        variables.append(variable)
    return variables


def _matching_statistics(model: keras.Model, saves: list) -> list:
    """`(variable, entry)` for the model's non-trainable variables that the
    saved statistics belong to, when every save used holds them; an empty
    list (and a warning if some hold them) otherwise. Refuses a model whose
    non-trainable variables do not match."""
    holding = [save for save in saves if "statistics" in save]
    if not holding:
        return []
    if len(holding) < len(saves):
        warnings.warn(
            "posthoc_ema leaves the non-trainable variables as they are: only "
            f"{len(holding)} of the {len(saves)} saves used hold their averages "
            "(`SWACallback(average_non_trainable=True)` was not used throughout).",
            stacklevel=3,
        )
        return []
    save = holding[-1]
    variables = list(model.non_trainable_variables)
    _check_count(model, variables, save, "non_trainable_variables", "statistics")
    matched = []
    for entry in save["statistics"]:
        variable = variables[entry["index"]]
        if [int(d) for d in variable.shape] != entry["shape"] or (
            keras.backend.standardize_dtype(variable.dtype) != entry["dtype"]
        ):
            raise ValueError(
                f"`model` does not match the saved statistics: its non-trainable variable "
                f"{_variable_name(variable)!r} is {keras.backend.standardize_dtype(variable.dtype)}"
                f"{list(variable.shape)}, the saved {entry['path']!r} {entry['dtype']}{entry['shape']}. "
                f"Received: model={model.name!r}"
            )
        matched.append((variable, entry))
    return matched


def check_sigma_rels(value: Any) -> Tuple[float, ...]:
    """A non-empty sequence of distinct relative widths."""
    if isinstance(value, (str, bytes, dict, numbers.Number)) or not hasattr(value, "__iter__"):
        raise TypeError(
            "`sigma_rels` must be a sequence of relative widths in (0, sqrt(1/12)], "
            f"such as (0.05, 0.10). Received: sigma_rels={value!r}"
        )
    widths = tuple(check_sigma_rel(f"sigma_rels[{i}]", s) for i, s in enumerate(value))
    if not widths or len(set(widths)) != len(widths):
        raise ValueError(
            "`sigma_rels` must hold one or more distinct relative widths (a "
            f"repeated one would cost memory and add nothing). Received: sigma_rels={value!r}"
        )
    return widths


def _storable(array: np.ndarray) -> np.ndarray:
    """The array in a dtype that `.npz` files hold without pickling."""
    array = np.asarray(array)
    if array.dtype in (np.float16, np.float32, np.float64):
        return array
    return array.astype("float32")


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
