"""`SWACallback(average_non_trainable=True)`: the model's non-trainable float
variables (batch-norm statistics) averaged at the weights' snapshots by the
weights' rule, integer and boolean ones copied, all kept by the optimizer and
saved with it.

The reference: the model's first layer is a BatchNormalization, so its moving
statistics after each step follow from the data and the momentum alone
(NumPy, float64); the averages are checked against the closed-form snapshot
weights of each rule (written from the formulas in test_averaging_rules.py),
not against the code under test.
"""

import contextlib
import os

import keras
import numpy as np
import pytest
from conftest import BACKEND, JIT_MODES, to_numpy
from test_averaging_rules import ema_weights, power_weights
from test_posthoc_ema import least_squares

from kerasswa import EMA, SWA, PostHocEMA, PostHocEMACheckpoint, PowerEMA, SWACallback, posthoc_ema

MOMENTUM = 0.8
BATCH = 8
BATCHES = 6  # an epoch
EPOCHS = 3
FIT = dict(batch_size=BATCH, shuffle=False, verbose=0)


@keras.saving.register_keras_serializable(package="kerasswa_tests")
class Counter(keras.layers.Layer):
    """Counts its training calls (int32) and flips a flag (bool) at each."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="calls")
        self.flag = self.add_weight(shape=(), dtype="bool", initializer="zeros", trainable=False, name="flag")

    def call(self, inputs, training=False):
        if training:
            self.calls.assign(self.calls + 1)
            self.flag.assign(keras.ops.logical_not(self.flag))
        return inputs


def _data():
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(BATCH * BATCHES, 3)) * [1.0, 2.0, 0.5] + [0.5, -1.0, 2.0]).astype("float32")
    y = (x @ np.array([[1.0], [-0.5], [0.25]]) + 0.1 * rng.normal(size=(len(x), 1))).astype("float32")
    return x, y


def _model(optimizer, jit_compile=False, steps_per_execution=1, dropout=True):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.BatchNormalization(momentum=MOMENTUM),
            Counter(),
            # A SeedGenerator: integer state. Keras saves no seed state, so a
            # resumed run would draw other masks: not in the resume tests.
            keras.layers.Dropout(0.1 if dropout else 0.0),
            keras.layers.Dense(4, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model


def moving_statistics(x, steps):
    """The BatchNormalization's moving mean and variance before step 0 and
    after each of `steps` steps on consecutive batches (float64): Keras's
    `moving = moving * momentum + batch_moment * (1 - momentum)`, with the
    biased batch variance, from 0 and 1."""
    mean, variance = np.zeros(x.shape[1]), np.ones(x.shape[1])
    history = [(mean, variance)]
    for step in range(steps):
        batch = x[(step % BATCHES) * BATCH:(step % BATCHES + 1) * BATCH].astype("float64")
        mean = mean * MOMENTUM + batch.mean(axis=0) * (1 - MOMENTUM)
        variance = variance * MOMENTUM + batch.var(axis=0) * (1 - MOMENTUM)
        history.append((mean, variance))
    return history


def closed_form_weights(rule, t):
    """Weights of snapshots 1..t under `rule`, from the formulas."""
    if rule == "mean":
        return np.full(t, 1.0 / t)
    if isinstance(rule, float):
        weights = (1 - rule) * rule ** np.arange(t - 1, -1, -1, dtype="float64")
        weights[0] = rule ** (t - 1)  # the first snapshot is a copy
        return weights
    if isinstance(rule, EMA):
        return ema_weights(t, decay=rule.decay, min_decay=rule.min_decay, inv_gamma=rule.inv_gamma, power=rule.power)
    return power_weights(t, rule.gamma)


def expected_statistics(rule, x, snapshot_steps, before=False):
    """The averaged moving mean and variance over the snapshots at
    `snapshot_steps` (the statistics after those steps, or before them)."""
    history = moving_statistics(x, max(snapshot_steps) + 1)
    taken = [history[step if before else step + 1] for step in snapshot_steps]
    weights = closed_form_weights(rule, len(taken))
    return [sum(w * moments[k] for w, moments in zip(weights, taken)) for k in (0, 1)]


def statistics_of(model):
    bn = model.layers[0]
    return [to_numpy(bn.moving_mean), to_numpy(bn.moving_variance)]


def assert_statistics(model, expected):
    for actual, wanted in zip(statistics_of(model), expected):
        np.testing.assert_allclose(actual, wanted, rtol=2e-6, atol=2e-6)


class RecordIntegerState(keras.callbacks.Callback):
    """The integer and boolean non-trainable values after each batch."""

    def __init__(self):
        super().__init__()
        self.records = []

    def on_train_batch_end(self, batch, logs=None):
        self.records.append(integer_state(self.model))


def integer_state(model):
    return [to_numpy(v).copy() for v in model.non_trainable_variables if not keras.backend.is_float_dtype(v.dtype)]


def snapshot_steps(start, period, steps):
    return [t for t in range(steps) if t >= start and (t - start) % period == 0]


# -- every rule, against the closed form -------------------------------------------

RULES = ["mean", 0.7, EMA(0.9, power=0.75), PowerEMA(sigma_rel=0.15)]


@pytest.mark.parametrize("jit_compile", JIT_MODES)
@pytest.mark.parametrize("rule", RULES, ids=["mean", "decay", "ema", "power_ema"])
def test_statistics_follow_the_weights_rule(rule, jit_compile):
    x, y = _data()
    model = _model(SWA(keras.optimizers.SGD(0.02), start_averaging=2, average_period=3, averaging=rule), jit_compile)
    recorder = RecordIntegerState()
    model.fit(x, y, epochs=EPOCHS, callbacks=[recorder, SWACallback(average_non_trainable=True)], **FIT)
    steps = snapshot_steps(2, 3, BATCHES * EPOCHS)  # 2, 5, ..., 17
    assert model.optimizer.snapshot_count == model.optimizer._non_trainable_averages.count == len(steps) == 6
    assert_statistics(model, expected_statistics(rule, x, steps))
    # Integer and boolean state: copied at the last snapshot (step 17 of 18).
    counter, flag, seed = integer_state(model)
    assert int(counter) == 18 and not bool(flag)  # 18 training calls by then
    for actual, recorded in zip(integer_state(model), recorder.records[steps[-1]]):
        np.testing.assert_array_equal(actual, recorded)


def test_integer_state_is_copied_not_averaged():
    """With the last snapshot before the last step, the copies hold the
    values of that step, not of the end, nor any blend."""
    x, y = _data()
    model = _model(SWA(keras.optimizers.SGD(0.02), start_averaging=0, average_period=4))
    recorder = RecordIntegerState()
    model.fit(x, y, epochs=2, callbacks=[recorder, SWACallback(average_non_trainable=True)], **FIT)
    # 12 steps: snapshots at 0, 4, 8; training ended at step 11, with 12
    # calls and the flag down.
    counter, flag, seed = integer_state(model)
    assert int(counter) == 9 and bool(flag)  # after step 8: 9 calls, odd
    assert int(recorder.records[11][0]) == 12 and not bool(recorder.records[11][1])
    # The seed state (which PyTorch's dropout leaves as it is) of step 8.
    np.testing.assert_array_equal(seed, recorder.records[8][2])


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_sequential_update_false_takes_the_statistics_of_before_the_update(jit_compile):
    x, y = _data()
    optimizer = SWA(keras.optimizers.SGD(0.02), start_averaging=0, average_period=5, sequential_update=False)
    model = _model(optimizer, jit_compile)
    model.fit(x, y, epochs=2, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    steps = snapshot_steps(0, 5, 2 * BATCHES)  # 0, 5, 10: the first is of the initial statistics
    assert_statistics(model, expected_statistics("mean", x, steps, before=True))


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_gradient_accumulation_is_followed_in_python(jit_compile):
    """The inner optimizer updates every second batch: update u is batch
    2u + 1; snapshots at updates 1, 3, 5, 7 are batches 3, 7, 11, 15."""
    x, y = _data()
    inner = keras.optimizers.SGD(0.02, gradient_accumulation_steps=2)
    model = _model(SWA(inner, start_averaging=1, average_period=2, averaging=0.5), jit_compile)
    model.fit(x, y, epochs=EPOCHS, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    assert model.optimizer.snapshot_count == 4
    assert_statistics(model, expected_statistics(0.5, x, [3, 7, 11, 15]))


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_a_loss_scale_optimizer_is_followed_by_reading_the_count(jit_compile):
    x, y = _data()
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.02))
    model = _model(SWA(inner, start_averaging=1, average_period=4, averaging=PowerEMA(gamma=2.0)), jit_compile)
    callback = SWACallback(average_non_trainable=True)
    model.fit(x, y, epochs=EPOCHS, callbacks=[callback], **FIT)
    assert callback._schedule is None  # followed by reading the count
    steps = snapshot_steps(1, 4, BATCHES * EPOCHS)  # no step skipped: finite gradients
    assert model.optimizer.snapshot_count == len(steps) == 5
    assert_statistics(model, expected_statistics(PowerEMA(gamma=2.0), x, steps))


@contextlib.contextmanager
def _policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def test_mixed_precision_keeps_the_statistics_in_step():
    """Under mixed_float16 `compile` puts a LossScaleOptimizer around SWA,
    which may skip steps: the callback reads the count after each batch."""
    x, y = _data()
    with _policy("mixed_float16"):
        model = _model(SWA(keras.optimizers.SGD(0.02), start_averaging=1, average_period=4))
        callback = SWACallback(average_non_trainable=True)
        model.fit(x, y, epochs=2, callbacks=[callback], **FIT)
    assert model.optimizer is not model.optimizer.inner_optimizer  # wrapped
    assert callback._schedule is None
    swa = model.optimizer.inner_optimizer
    assert swa.snapshot_count == swa._non_trainable_averages.count


def test_manual_snapshots_take_the_statistics_too():
    x, y = _data()
    model = _model(SWA(keras.optimizers.SGD(0.02), start_averaging=None, averaging=0.6))
    model.fit(x, y, epochs=EPOCHS, callbacks=[SWACallback(start_epoch=2, average_non_trainable=True)], **FIT)
    ends = [2 * BATCHES - 1, 3 * BATCHES - 1]  # the last steps of epochs 2 and 3
    assert model.optimizer._non_trainable_averages.count == 2
    assert_statistics(model, expected_statistics(0.6, x, ends))

    # take_snapshot() between fits: after a fit of one more epoch (whose
    # start puts back the training state), one snapshot from outside.
    model.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    model.optimizer.take_snapshot()
    assert model.optimizer._non_trainable_averages.count == model.optimizer.snapshot_count == 3


# -- JAX: no state sync on batches without a snapshot --------------------------------


@pytest.mark.skipif(BACKEND != "jax", reason="jax_state_sync is JAX's")
@pytest.mark.parametrize("jit_compile", JIT_MODES)
@pytest.mark.parametrize("inner", ["sgd", "loss_scale"])
def test_jax_syncs_the_state_only_after_snapshot_batches(inner, jit_compile):
    x, y = _data()
    optimizer = keras.optimizers.SGD(0.02)
    if inner == "loss_scale":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model = _model(SWA(optimizer, start_averaging=2, average_period=5), jit_compile)
    syncs = []
    original = model.jax_state_sync

    def counting_sync():
        if getattr(model, "_jax_state", None) and not model._jax_state_synced:
            syncs.append(current[0])
        original()

    model.jax_state_sync = counting_sync
    callback = SWACallback(average_non_trainable=True)
    current = [None]

    class Where(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            current[0] = ("begin", self._epoch, batch)

        def on_train_batch_end(self, batch, logs=None):
            current[0] = ("end", self._epoch, batch)

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    # The marker runs first, so a sync inside the callback's hooks carries
    # the hook's place; fit syncs at each epoch end, after the last batch's
    # hooks (then a no-op if the callback has synced there).
    model.fit(x, y, epochs=EPOCHS, callbacks=[Where(), callback], **FIT)
    steps = snapshot_steps(2, 5, BATCHES * EPOCHS)  # 2, 7, 12, 17
    expected = []
    for epoch in range(EPOCHS):
        expected += [("end", epoch, b) for b in range(BATCHES) if epoch * BATCHES + b in steps]
        if epoch * BATCHES + BATCHES - 1 not in steps:
            expected.append(("end", epoch, BATCHES - 1))  # fit's own
    assert syncs == expected
    assert_statistics(model, expected_statistics("mean", x, steps))


# -- saved and resumed with the rest ----------------------------------------------


def _all_state(model):
    """Model variables, optimizer variables and the statistics' averages."""
    return (
        [to_numpy(v) for v in model.variables]
        + [to_numpy(v) for v in model.optimizer.variables]
        + [np.asarray(a) for _, a in sorted(model.optimizer._non_trainable_averages.arrays().items())]
    )


def _assert_same_state(a, b):
    first, second = _all_state(a), _all_state(b)
    assert len(first) == len(second)
    for left, right in zip(first, second):
        np.testing.assert_array_equal(left, right)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch:
            raise RuntimeError("interrupted")


def _swa(rule=EMA(0.8, power=0.75)):
    return SWA(keras.optimizers.Adam(0.01), start_averaging=3, average_period=2, averaging=rule)


@pytest.mark.parametrize("jit_compile", JIT_MODES)
@pytest.mark.parametrize("via", ["load_model", "load_weights", "backup_first", "backup_last"])
def test_a_run_split_in_two_ends_bit_for_bit_where_one_run_ends(via, jit_compile, tmp_path):
    x, y = _data()
    epochs = 4
    whole = _model(_swa(), jit_compile, dropout=False)
    whole.fit(x, y, epochs=epochs, callbacks=[SWACallback(average_non_trainable=True)], **FIT)

    first = _model(_swa(), jit_compile, dropout=False)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    statistics = SWACallback(average_non_trainable=True)
    if via == "load_model":
        callbacks = [statistics, keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch-{epoch}.keras"))]
    elif via == "load_weights":
        checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch-{epoch}.weights.h5"), save_weights_only=True)
        callbacks = [statistics, checkpoint]
    else:
        callbacks = [backup, statistics] if via == "backup_first" else [statistics, backup]
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(x, y, epochs=epochs, callbacks=[*callbacks, _Interrupt(2)], **FIT)
    # Epoch 2 ended at step 11: snapshots at 3, 5, ..., 11.
    assert first.optimizer._non_trainable_averages.count == 5

    if via == "load_model":
        second = keras.models.load_model(tmp_path / "epoch-2.keras")  # safe mode
        callbacks, initial_epoch = [SWACallback(average_non_trainable=True)], 2
    elif via == "load_weights":
        second = _model(_swa(), jit_compile, dropout=False)
        second.optimizer.build(second.trainable_variables)
        second.load_weights(tmp_path / "epoch-2.weights.h5")
        callbacks, initial_epoch = [SWACallback(average_non_trainable=True)], 2
    else:
        second = _model(_swa(), jit_compile, dropout=False)
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        statistics = SWACallback(average_non_trainable=True)
        callbacks = [backup, statistics] if via == "backup_first" else [statistics, backup]
        initial_epoch = 0  # BackupAndRestore knows where it stopped
    assert second.optimizer._non_trainable_averages.count == (0 if via.startswith("backup") else 5)
    second.fit(x, y, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks, **FIT)
    assert second.optimizer.snapshot_count == whole.optimizer.snapshot_count == 11  # 3, 5, ..., 23
    assert second.optimizer._non_trainable_averages.count == 11
    _assert_same_state(second, whole)


@pytest.mark.parametrize("inner", ["sgd", "loss_scale"])
def test_a_save_at_a_snapshot_batch_before_the_callbacks_hook_holds_that_snapshot(inner, tmp_path):
    import h5py

    x, y = _data()
    optimizer = keras.optimizers.SGD(0.02)
    if inner == "loss_scale":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model = _model(SWA(optimizer, start_averaging=3, average_period=2, averaging=0.6))
    path = tmp_path / "step-9.weights.h5"

    class SaveAfterStep9(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch * BATCHES + batch == 9:
                self.model.save_weights(path)

    callback = SWACallback(average_non_trainable=True)
    model.fit(x, y, epochs=2, callbacks=[SaveAfterStep9(), callback], **FIT)
    with h5py.File(path) as file:
        saved = file["optimizer/_non_trainable_averages/vars"]
        assert int(saved["count"][()]) == 4  # snapshots at 3, 5, 7, 9
        wanted = expected_statistics(0.6, x, [3, 5, 7, 9])
        np.testing.assert_allclose(saved["average0_0"][()], wanted[0], rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(saved["average0_1"][()], wanted[1], rtol=2e-6, atol=2e-6)
    # The callback did not take it a second time.
    assert model.optimizer._non_trainable_averages.count == model.optimizer.snapshot_count == 5
    assert_statistics(model, expected_statistics(0.6, x, [3, 5, 7, 9, 11]))


def test_the_file_of_a_model_that_averages_no_statistics_is_unchanged(tmp_path):
    import h5py

    x, y = _data()
    model = _model(_swa())
    model.fit(x, y, epochs=1, **FIT)
    model.save_weights(tmp_path / "plain.weights.h5")
    with h5py.File(tmp_path / "plain.weights.h5") as file:
        arrays = []
        file.visititems(lambda name, item: arrays.append(name) if isinstance(item, h5py.Dataset) else None)
    # No array (Keras 3.8 writes an empty group for every object it walks).
    assert arrays and not any("non_trainable" in name for name in arrays)


def test_snapshots_taken_without_the_statistics_are_reported():
    x, y = _data()
    model = _model(_swa())
    model.fit(x, y, epochs=1, **FIT)  # snapshots at 3 and 5, without the statistics
    with pytest.warns(UserWarning, match="hold 0 snapshots and those of the weights 2"):
        model.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    # They go on in step from there: one snapshot each at 7, 9, 11.
    assert model.optimizer._non_trainable_averages.count == 3
    assert model.optimizer.snapshot_count == 5


# -- post-hoc EMA: one average of the statistics per profile ---------------------


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_posthoc_profiles_keep_statistics_and_posthoc_ema_rebuilds_them(jit_compile, tmp_path):
    x, y = _data()
    sigma_rels = (0.10, 0.20)
    model = _model(PostHocEMA(keras.optimizers.SGD(0.02), sigma_rels=sigma_rels), jit_compile)
    callbacks = [SWACallback(average_non_trainable=True), PostHocEMACheckpoint(str(tmp_path), save_freq=4)]
    model.fit(x, y, epochs=EPOCHS, callbacks=callbacks, **FIT)
    steps = list(range(BATCHES * EPOCHS))  # a snapshot at every step
    # Each profile: the power EMA of its width over the statistics.
    state = model.optimizer._non_trainable_averages.arrays()
    for p, sigma_rel in enumerate(sigma_rels):
        wanted = expected_statistics(PowerEMA(sigma_rel=sigma_rel), x, steps)
        for k in (0, 1):
            np.testing.assert_allclose(state[f"average{p}_{k}"], wanted[k], rtol=2e-6, atol=2e-6)

    # The saves (after 4, 8, 12, 16 and 18 snapshots) hold them; each is the
    # closed form at its time.
    saves = sorted(os.listdir(tmp_path))
    assert saves == [f"posthoc-ema-{n:010d}.npz" for n in (4, 8, 12, 16, 18)]
    with np.load(tmp_path / saves[1]) as arrays:
        wanted = expected_statistics(PowerEMA(sigma_rel=0.20), x, steps[:8])
        np.testing.assert_allclose(arrays["profile1_stat0"], wanted[0], rtol=2e-6, atol=2e-6)
        np.testing.assert_array_equal(arrays["copy2"], 8)  # the Counter after 8 steps

    # The rebuilt statistics: the weights' coefficients (NumPy least squares,
    # from the formulas) on the saved statistics.
    gammas = [PowerEMA(sigma_rel=s).gamma for s in sigma_rels]
    target = PowerEMA(sigma_rel=0.15)
    counts = (4, 8, 12)
    profiles = [(t, g) for t in counts for g in gammas]
    weights, _ = least_squares(profiles, (12, target.gamma))
    wanted_mean = 0.0
    for k, (t, g) in enumerate(profiles):
        with np.load(tmp_path / f"posthoc-ema-{t:010d}.npz") as arrays:
            wanted_mean = wanted_mean + weights[k] * arrays[f"profile{gammas.index(g)}_stat0"].astype("float64")
    model.fit(x, y, epochs=1, **FIT)  # the model's statistics move on
    posthoc_ema(model, tmp_path, sigma_rel=0.15, snapshot_count=12)
    np.testing.assert_allclose(statistics_of(model)[0], wanted_mean, rtol=1e-6, atol=1e-6)
    counter, flag, _ = integer_state(model)
    assert int(counter) == 12 and not bool(flag)  # the copies of the save at 12


def test_posthoc_ema_refuses_a_model_whose_statistics_do_not_match(tmp_path):
    x, y = _data()
    model = _model(PostHocEMA(keras.optimizers.SGD(0.02)))
    callbacks = [SWACallback(average_non_trainable=True), PostHocEMACheckpoint(str(tmp_path))]
    model.fit(x, y, epochs=1, callbacks=callbacks, **FIT)
    # The same weights, without the Dropout's seed state.
    layers = [keras.layers.BatchNormalization(), Counter(), keras.layers.Dense(4, activation="tanh")]
    layers.append(keras.layers.Dense(1))
    other = keras.Sequential([keras.Input((3,)), *layers])
    before = [to_numpy(v).copy() for v in other.variables]
    refusal = "does not match the saved statistics: it has 4 non-trainable variables, the saves 5"
    with pytest.raises(ValueError, match=refusal):
        posthoc_ema(other, tmp_path, sigma_rel=0.07)
    for old, variable in zip(before, other.variables):
        np.testing.assert_array_equal(old, to_numpy(variable))


# -- refused -----------------------------------------------------------------------


@pytest.mark.skipif(BACKEND == "torch", reason="Keras refuses steps_per_execution > 1 on PyTorch itself")
def test_steps_per_execution_is_refused_at_train_begin():
    x, y = _data()
    model = _model(_swa(), steps_per_execution=2)
    before = [to_numpy(v).copy() for v in model.variables]
    with pytest.raises(ValueError, match=r"`steps_per_execution=2`.*steps_per_execution=1"):
        model.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    for old, variable in zip(before, model.variables):
        np.testing.assert_array_equal(old, to_numpy(variable))


def test_an_optimizer_that_may_skip_with_snapshots_before_the_update_is_refused():
    x, y = _data()
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.02))
    model = _model(SWA(inner, start_averaging=0, sequential_update=False))
    with pytest.raises(ValueError, match="may skip updates.*`sequential_update=True`"):
        model.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)


def test_averages_of_other_non_trainable_variables_are_refused(tmp_path):
    x, y = _data()
    model = _model(_swa())
    model.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    model.save(tmp_path / "m.keras")
    # The same optimizer, after a layer was frozen: its weights became non-trainable.
    model.layers[4].trainable = False
    with pytest.raises(ValueError, match="belong to other variables: 5 variables then, 7 now"):
        model.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
    # A loaded copy, whose averages wait for the model's variables.
    loaded = keras.models.load_model(tmp_path / "m.keras")
    loaded.layers[4].trainable = False
    with pytest.raises(ValueError, match="do not fit the model of optimizer .*5 variables were saved, the model has 7"):
        loaded.fit(x, y, epochs=1, callbacks=[SWACallback(average_non_trainable=True)], **FIT)
