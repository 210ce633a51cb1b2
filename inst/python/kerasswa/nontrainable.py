"""Averages of a model's non-trainable variables, kept by an SWA optimizer.

Averaged weights come without batch-norm statistics that match them. Instead
of recomputing the statistics (`kerasswa.update_bn`, a pass over data),
`SWACallback(average_non_trainable=True)` averages them at the snapshots of
the weights, by the same rule, as PyTorch's `AveragedModel(use_buffers=True)`
and Lightning's `WeightAveraging` do: the `n`-th snapshot of the statistics
blends with the factor of the `n`-th snapshot of the weights
(`kerasswa.averaging.averaging_factors`), so the statistics get the weights'
mean, EMA or power EMA. Every non-trainable float variable is averaged so
(moving means and variances, frozen weights, which stay as they are);
integer and boolean ones (counters, random-seed states) are copied at each
snapshot, never averaged, so they end at their value of the last snapshot.

The averages live in a `NonTrainableAverages` that each `SWA` optimizer
holds (`optimizer._non_trainable_averages`), so that they are saved with the
optimizer: `model.save()` / `keras.models.load_model()`,
`model.save_weights()` / `model.load_weights()` and
`keras.callbacks.BackupAndRestore` carry them, and a resumed `fit` continues
them exactly. They are not optimizer variables (the optimizer does not know
the model's non-trainable variables when it is built, and adding variables
later would change the length of `optimizer.variables`, which Keras's loader
compares with the saved one): Keras's saving walks the optimizer's
attributes and saves this object under its own path,
`<optimizer path>/_non_trainable_averages/vars/`, with the arrays

- `count`: the number of snapshots of the statistics taken (int64);
- `size`: the number of the model's non-trainable variables (int64);
- `average<p>_<i>`: for non-trainable float variable `i` (its position in
  `model.non_trainable_variables`), its average by the optimizer's rule `p`
  (one rule for `SWA`, one per `sigma_rels` for `PostHocEMA`);
- `copy_<i>`: for integer or boolean variable `i`, its value at the last
  snapshot.

A file loaded into an optimizer that has not met its model yet is held as
arrays until the callback attaches the model's variables, and checked
against them then.

The snapshots of the statistics are taken outside the training step (the
step's hot path is the same with or without them): on JAX the step never
sees the non-trainable variables' new values, which only a callback can read
once `fit` has written them back (`jax_state_sync`). `SWACallback` predicts
in Python which batches end with a snapshot and reads the model on those
only; see `SWACallback` for the cases it cannot predict.
"""

from __future__ import annotations

import warnings
from typing import Callable, List, Optional, Sequence

import keras
import numpy as np
from keras import ops
from keras.src.saving.keras_saveable import KerasSaveable

from kerasswa import _kernels
from kerasswa.averaging import averaging_factors


class NonTrainableAverages(KerasSaveable):
    """The averages (and copies) of a model's non-trainable variables.

    Held by every `SWA` optimizer, empty until `attach` gives it the model's
    non-trainable variables; saved and loaded by Keras with the optimizer.
    `SWACallback(average_non_trainable=True)` attaches it and takes its
    snapshots; `SWA.take_snapshot()` takes one too once it is attached.

    Example:

    >>> import numpy as np, keras
    >>> from kerasswa.nontrainable import NonTrainableAverages
    >>> statistic = keras.Variable(np.zeros(2, "float32"), trainable=False)
    >>> averages = NonTrainableAverages()
    >>> averages.attach([statistic], ["mean"], owner="swa")
    >>> for value in (1.0, 2.0, 6.0):
    ...     _ = statistic.assign(np.full(2, value, "float32"))
    ...     averages.snapshot()
    >>> averages.assign_to_sources()
    True
    >>> print(keras.ops.convert_to_numpy(statistic))  # (1 + 2 + 6) / 3
    [3. 3.]
    """

    def __init__(self) -> None:
        #: The number of snapshots taken.
        self.count = 0
        self._sources: Optional[list] = None
        self._rules: list = []
        self._float_indices: List[int] = []
        self._copy_indices: List[int] = []
        self._averages: List[list] = []  # [rule][float variable]
        self._copies: list = []
        self._pending: Optional[dict] = None
        self._owner = ""
        # While `fit` runs with the callback: the snapshot count of the
        # weights that the averages have caught up with, the one known to be
        # reached, and a function that reads it from the optimizer.
        self._synced: Optional[int] = None
        self._expected: Optional[int] = None
        self._read_count: Optional[Callable[[], int]] = None

    def _obj_type(self) -> str:
        # Keras's saving walks a saveable's attributes except those of a
        # reference object of its type, and knows a few types only; this
        # object is none of them and holds no saveable attribute, so the
        # plainest of those (known since Keras 3.0) serves.
        return "Loss"

    # -- attaching -----------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether the model's variables are attached."""
        return self._sources is not None

    def attach(self, variables: Sequence, rules: Sequence, owner: str) -> None:
        """Attaches the model's non-trainable variables (in the order of
        `model.non_trainable_variables`), with one averaging rule per
        average kept (`SWA.averaging`, or one per profile of `PostHocEMA`).

        Averages loaded from a file before are checked against the variables
        and become theirs; attaching the same structure again (a model
        loaded anew) keeps them. A file saved for other variables is refused
        with a `ValueError` that says which variable differs.
        """
        variables = list(variables)
        rules = list(rules)
        layout = _layout(variables)
        if self.attached:
            if self._current_layout() != layout or len(rules) != len(self._averages):
                raise ValueError(
                    f"The averages of the non-trainable variables kept by optimizer "
                    f"{owner!r} belong to other variables: {_difference(self._current_layout(), layout)}. "
                    "An optimizer trains one model: use a new optimizer for another."
                )
            self._sources, self._rules, self._owner = variables, rules, owner
            return
        pending = self._pending
        if pending is not None:
            _check_arrays(pending, layout, len(rules), owner)
        float_indices = [i for i, (_, _, is_float) in enumerate(layout) if is_float]
        copy_indices = [i for i, (_, _, is_float) in enumerate(layout) if not is_float]
        averages = [
            [
                keras.Variable(
                    pending[f"average{p}_{i}"] if pending is not None else np.zeros(layout[i][0], layout[i][1]),
                    dtype=layout[i][1],
                    trainable=False,
                    name="non_trainable_average",
                )
                for i in float_indices
            ]
            for p in range(len(rules))
        ]
        copies = [
            keras.Variable(
                pending[f"copy_{i}"] if pending is not None else ops.copy(_kernels.read(variables[i])),
                dtype=layout[i][1],
                trainable=False,
                name="non_trainable_copy",
            )
            for i in copy_indices
        ]
        self._sources, self._rules, self._owner = variables, rules, owner
        self._float_indices, self._copy_indices = float_indices, copy_indices
        self._averages, self._copies = averages, copies
        self._pending = None

    @property
    def variables(self) -> list:
        """The attached variables (empty before `attach`)."""
        return list(self._sources or [])

    def _current_layout(self) -> list:
        return _layout(self._sources)

    # -- snapshots -----------------------------------------------------------

    def snapshot(self) -> None:
        """Takes one snapshot of the attached variables now: each float
        variable joins its averages with the factor of the next snapshot of
        each rule, each other one is copied. Read the variables outside
        compiled functions (on JAX, after `fit` has written them back)."""
        floats = [self._sources[i] for i in self._float_indices]
        for rule, averages in zip(self._rules, self._averages):
            _kernels.blend_(averages, floats, averaging_factors(rule, self.count, averages))
        for copy, i in zip(self._copies, self._copy_indices):
            copy.assign(ops.copy(_kernels.read(self._sources[i])))
        self.count += 1

    def assign_to_sources(self, profile: int = 0) -> bool:
        """Assigns the averages by rule `profile` (and the copies) to the
        attached variables; `False`, and nothing changed, before the first
        snapshot."""
        if not self.attached or self.count == 0:
            return False
        for average, i in zip(self._averages[profile], self._float_indices):
            self._sources[i].assign(ops.copy(_kernels.read(average)))
        for copy, i in zip(self._copies, self._copy_indices):
            self._sources[i].assign(ops.copy(_kernels.read(copy)))
        return True

    # -- following the snapshots of the weights during `fit` ---------------

    def start_following(self, snapshot_count: int, read_count: Callable[[], int]) -> None:
        """Starts following the weights' snapshots, `snapshot_count` of
        which are taken now; `read_count` reads their count (from the
        device). Snapshots known in advance are announced with
        `expect_snapshot()`."""
        if self.count != snapshot_count:
            warnings.warn(
                f"The averages of the non-trainable variables hold {self.count} "
                f"snapshots and those of the weights {snapshot_count}: some "
                "snapshots were taken without `SWACallback(average_non_trainable=True)` "
                "(or a file held no averages of the non-trainable variables). They "
                "go on from here, one snapshot for each of the weights'.",
                stacklevel=3,
            )
        self._synced = self._expected = snapshot_count
        self._read_count = read_count

    def stop_following(self) -> None:
        self._synced = self._expected = self._read_count = None

    @property
    def synced_count(self) -> Optional[int]:
        """The snapshot count of the weights that the averages reflect
        (`None` when not following)."""
        return self._synced

    def expect_snapshot(self) -> None:
        """Announces a snapshot of the weights in the running step."""
        self._expected += 1

    @property
    def pending(self) -> bool:
        """Whether an announced snapshot is still to be taken."""
        return self._synced is not None and self._synced < self._expected

    def catch_up(self, snapshot_count: Optional[int] = None) -> None:
        """Takes the snapshots of the weights that the averages lack (at
        most one in `fit`), from the variables as they are now: up to
        `snapshot_count`, or to the count read from the optimizer. A no-op
        when not following."""
        if self._synced is None or not self.attached:
            return
        if snapshot_count is None:
            snapshot_count = self._read_count()
        while self._synced < snapshot_count:
            self.snapshot()
            self._synced += 1

    def take_manual_snapshot(self) -> None:
        """The snapshot of `SWA.take_snapshot()` (after its weights'), if
        attached."""
        if not self.attached:
            return
        self.snapshot()
        if self._synced is not None:
            self._synced += 1
            self._expected += 1

    # -- saving ----------------------------------------------------------------

    def arrays(self) -> dict:
        """The state as the arrays of the file format (module docstring);
        empty when there is none."""
        if self.attached:
            arrays = {
                "count": np.array(self.count, "int64"),
                "size": np.array(len(self._sources), "int64"),
            }
            for p, averages in enumerate(self._averages):
                for average, i in zip(averages, self._float_indices):
                    arrays[f"average{p}_{i}"] = ops.convert_to_numpy(average)
            for copy, i in zip(self._copies, self._copy_indices):
                arrays[f"copy_{i}"] = ops.convert_to_numpy(copy)
            return arrays
        return dict(self._pending or {})

    def save_own_variables(self, store) -> None:
        # A save at the end of a snapshot batch, before the callback's own
        # hook (or after `fit` stopped there), gets that batch's snapshot too.
        self.catch_up()
        for key, value in self.arrays().items():
            store[key] = value

    def load_own_variables(self, store) -> None:
        arrays = {key: np.asarray(store[key]) for key in store.keys()}
        if not arrays:
            # A file saved without them: they start over.
            self._pending = None
            self.count = 0
            return
        if "count" not in arrays or "size" not in arrays:
            raise ValueError(
                "The saved averages of the non-trainable variables lack their "
                f"`count` or `size`: found {sorted(arrays)[:6]}."
            )
        if self.attached:
            _check_arrays(arrays, self._current_layout(), len(self._averages), self._owner)
            for p, averages in enumerate(self._averages):
                for average, i in zip(averages, self._float_indices):
                    average.assign(arrays[f"average{p}_{i}"])
            for copy, i in zip(self._copies, self._copy_indices):
                copy.assign(arrays[f"copy_{i}"])
        else:
            self._pending = arrays
        self.count = int(arrays["count"])


def _layout(variables: Sequence) -> list:
    """`(shape, dtype, is_float)` of each variable."""
    layout = []
    for variable in variables:
        dtype = keras.backend.standardize_dtype(variable.dtype)
        layout.append((tuple(int(d) for d in variable.shape), dtype, keras.backend.is_float_dtype(dtype)))
    return layout


def _check_arrays(arrays: dict, layout: list, rules: int, owner: str) -> None:
    """Refuses saved arrays that do not fit `layout` and `rules` averages."""
    saved_size = int(arrays["size"])
    problem = None
    if saved_size != len(layout):
        problem = f"{saved_size} variables were saved, the model has {len(layout)}"
    else:
        for i, (shape, dtype, is_float) in enumerate(layout):
            keys = [f"average{p}_{i}" for p in range(rules)] if is_float else [f"copy_{i}"]
            for key in keys:
                if key not in arrays:
                    problem = f"non-trainable variable {i} ({dtype}{list(shape)}) has no saved {key!r}"
                    break
                saved = arrays[key]
                saved_dtype = keras.backend.standardize_dtype(saved.dtype)
                if tuple(saved.shape) != shape or saved_dtype != dtype:
                    problem = (
                        f"non-trainable variable {i} is {dtype}{list(shape)}, its saved "
                        f"{key!r} {saved_dtype}{list(saved.shape)}"
                    )
                    break
            if problem:
                break
        else:
            saved_rules = {key.split("_")[0] for key in arrays if key.startswith("average")}
            if len(saved_rules) > rules:
                problem = f"averages by {len(saved_rules)} rules were saved, the optimizer keeps {rules}"
    if problem:
        raise ValueError(
            f"The saved averages of the non-trainable variables do not fit the model of "
            f"optimizer {owner!r}: {problem}. They were saved for another model."
        )


def _difference(old: list, new: list) -> str:
    if len(old) != len(new):
        return f"{len(old)} variables then, {len(new)} now"
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return f"non-trainable variable {i} was {a[1]}{list(a[0])}, is {b[1]}{list(b[0])}"
    return "another number of averaging rules"
