"""Post-hoc EMA: `PostHocEMA`, its saves, and `posthoc_ema`'s reconstruction,
checked against a power EMA of the same width trained directly (within a
bound derived below) and against a NumPy least-squares reconstruction written
from the formulas of CONTRACT.md."""

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import JIT_MODES, tensor, to_numpy

from kerasswa import SWA, PostHocEMA, PostHocEMACheckpoint, PowerEMA, posthoc_ema, posthoc_ema_error
from kerasswa.averaging import gamma_of_sigma_rel

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "posthoc_read.py"
sys.path.insert(0, str(SCRIPT.parent))
from posthoc_read import new_model  # noqa: E402

# -- the mathematics, written from the formulas (float64) -----------------------


def inner(t_a, g_a, t_b, g_b):
    """<p_a, p_b> of power profiles (g + 1) s**g / t**(g + 1) on [0, t]."""
    if t_a > t_b:
        t_a, g_a, t_b, g_b = t_b, g_b, t_a, g_a
    return (g_a + 1) * (g_b + 1) / ((g_a + g_b + 1) * t_b) * (t_a / t_b) ** g_b


def least_squares(profiles, target):
    """Weights (summing to 1) of `profiles` [(t, g)] closest to `target`,
    and the relative L2 error."""
    gram = np.array([[inner(*a, *b) for b in profiles] for a in profiles])
    toward = np.array([inner(*a, *target) for a in profiles])
    norm2 = inner(*target, *target)
    x = np.linalg.lstsq(gram, toward, rcond=None)[0]
    x /= x.sum()
    return x, math.sqrt(max(x @ gram @ x - 2 * x @ toward + norm2, 0) / norm2)


def power_weights(t, gamma, length=None):
    """Snapshot weights of the power EMA after t snapshots (zero after t)."""
    tau = np.arange(1, (length or t) + 1, dtype="float64")
    return np.where(tau <= t, (np.minimum(tau, t) / t) ** (gamma + 1) - ((np.minimum(tau, t) - 1) / t) ** (gamma + 1), 0.0)


def read_save(path):
    with np.load(path, allow_pickle=False) as arrays:
        metadata = json.loads(str(arrays["metadata"]))
        profiles = [
            [arrays[f"profile{p}_var{v}"] for v in range(len(metadata["variables"]))]
            for p in range(len(metadata["gammas"]))
        ]
    return metadata, profiles


# -- training -----------------------------------------------------------------------


def _data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (np.sin(x @ np.array([[1.0], [-2.0], [0.5]])) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
    return x, y


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.trajectory = []

    def on_train_batch_end(self, batch, logs=None):
        self.trajectory.append(np.concatenate([w.ravel() for w in self.model.get_weights()]).astype("float64"))


def _train(optimizer, jit_compile=False, callbacks=(), epochs=10):
    """160 updates of batches of 4 (16 an epoch); the weights after each."""
    x, y = _data()
    keras.utils.set_random_seed(3)
    model = new_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    recorder = _Recorder()
    model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=[recorder, *callbacks])
    return model, np.array(recorder.trajectory)


def _inner_sgd():
    return keras.optimizers.SGD(0.1, momentum=0.9)


def _flat(arrays):
    return np.concatenate([np.asarray(a, "float64").ravel() for a in arrays])


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_reconstruction_agrees_with_a_power_ema_trained_directly(jit_compile, tmp_path):
    folder = tmp_path / "profiles"
    trained, trajectory = _train(
        PostHocEMA(_inner_sgd(), sigma_rels=(0.05, 0.10)),
        jit_compile,
        callbacks=[PostHocEMACheckpoint(folder, save_freq=8)],
    )
    direct_optimizer = SWA(_inner_sgd(), average_period=1, averaging=PowerEMA(sigma_rel=0.07))
    direct_model, direct_trajectory = _train(direct_optimizer, jit_compile)
    direct = _flat(to_numpy(a) for a in direct_optimizer.average_variables)
    T = len(trajectory)
    assert T == 160 and trained.optimizer.snapshot_count == 160

    # The saves: every 8 updates, and the end (the same file as update 160).
    names = sorted(os.listdir(folder))
    assert names == [f"posthoc-ema-{t:010d}.npz" for t in range(8, 161, 8)]
    saves = [read_save(folder / name) for name in names]
    gammas = [gamma_of_sigma_rel(0.05), gamma_of_sigma_rel(0.10)]
    for metadata, profiles in saves:
        assert metadata["gammas"] == pytest.approx(gammas, rel=1e-12)
    # Each saved profile against the closed-form weights on the trajectory.
    for metadata, profiles in saves[::5] + saves[-1:]:
        t = metadata["snapshot_count"]
        assert metadata["update_count"] == t
        for gamma, profile in zip(gammas, profiles):
            expected = power_weights(t, gamma) @ trajectory[:t]
            np.testing.assert_allclose(_flat(profile), expected, rtol=1e-5, atol=1e-6)

    rebuilt_model = new_model()
    error = posthoc_ema(rebuilt_model, folder, sigma_rel=0.07)
    rebuilt = _flat(rebuilt_model.get_weights())

    # NumPy's reconstruction from the files: the same weights and error.
    gamma = gamma_of_sigma_rel(0.07)
    profiles = [(m["snapshot_count"], g) for m, _ in saves for g in gammas]
    x, expected_error = least_squares(profiles, (T, gamma))
    assert error == pytest.approx(expected_error, rel=1e-6)
    assert error == pytest.approx(posthoc_ema_error(0.07, T, 8), rel=1e-9)  # the plan
    assert 1e-4 < error < 0.02
    averages = [_flat(profile) for _, save_profiles in saves for profile in save_profiles]
    np.testing.assert_allclose(rebuilt, x @ np.array(averages), rtol=1e-6, atol=1e-6)

    # The bound. The snapshot weights of a power EMA are its profile's
    # integrals over [tau - 1, tau], so (Cauchy-Schwarz on each interval)
    # the rebuilt weights d_tau = sum_k x_k w_k(tau) - w*(tau) satisfy
    # ||d|| <= error * ||p||, with ||p||**2 = <p, p>; and as sum(d) = 0,
    # |rebuilt - direct| = |sum_tau d_tau (theta_tau - c)|
    #                   <= ||d|| * ||theta - c||  for any constant c.
    d = sum(xk * power_weights(t, g, T) for xk, (t, g) in zip(x, profiles)) - power_weights(T, gamma)
    norm_p = math.sqrt(inner(T, gamma, T, gamma))
    assert abs(d.sum()) < 1e-12
    assert np.linalg.norm(d) <= error * norm_p * (1 + 1e-9)
    spread = np.linalg.norm(trajectory - trajectory.mean(axis=0), axis=0)
    # The second run's trajectory may differ from the first by rounding, and
    # the float32 averages carry their own (160 blends of ~6e-8 each).
    drift = np.abs(direct_trajectory - trajectory).max(axis=0)
    rounding = (np.abs(x).sum() + 1) * 160 * 6e-8 * np.abs(trajectory).max(axis=0)
    bound = error * norm_p * spread + drift + rounding
    assert np.all(np.abs(rebuilt - direct) <= bound), np.max(np.abs(rebuilt - direct) / bound)
    # A bound that could fail: far tighter than the distance to either saved
    # width (0.05 or 0.10) at the end.
    nearest = min(np.abs(_flat(p) - direct).max() for p in saves[-1][1])
    assert bound.max() < 0.3 * nearest


def test_error_matches_numerical_integration_of_the_profiles():
    # ||sum x_k p_k - p|| / ||p|| by quadrature on a fine grid, independent of
    # the closed-form inner products.
    sigma_rels, total, every = (0.05, 0.10), 100, 25
    gammas = [gamma_of_sigma_rel(s) for s in sigma_rels]
    target = (total, gamma_of_sigma_rel(0.2))
    profiles = [(t, g) for t in range(every, total + 1, every) for g in gammas]
    x, closed = least_squares(profiles, target)
    s = np.linspace(0.0, total, 400_001)

    def profile(t, g):
        return np.where(s <= t, (g + 1) * np.minimum(s, t) ** g / t ** (g + 1), 0.0)

    residual = sum(xk * profile(*p) for xk, p in zip(x, profiles)) - profile(*target)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy < 2.0: trapz
    numeric = math.sqrt(trapezoid(residual**2, s) / trapezoid(profile(*target) ** 2, s))
    assert numeric == pytest.approx(closed, rel=1e-3)
    assert posthoc_ema_error(0.2, total, every, sigma_rels) == pytest.approx(closed, rel=1e-9)
    # Denser saves rebuild better.
    assert posthoc_ema_error(0.2, total, 5, sigma_rels) < closed / 10


def test_planned_error_counts_snapshots_with_a_start_and_a_period():
    # 1000 updates, snapshots at updates 100, 110, ..., 990: 90; saves after
    # 250, 500, 750 and 1000 updates hold 15, 40, 65 and 90 snapshots.
    gammas = [gamma_of_sigma_rel(0.05), gamma_of_sigma_rel(0.10)]
    profiles = [(t, g) for t in (15, 40, 65, 90) for g in gammas]
    _, expected = least_squares(profiles, (90, gamma_of_sigma_rel(0.15)))
    planned = posthoc_ema_error(0.15, 1000, 250, start_averaging=100, average_period=10)
    assert planned == pytest.approx(expected, rel=1e-9)


# -- the folder, the target time, a second process ---------------------------------


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    """A run of 48 updates saving every 6: 8 saves; its final model's
    trajectory is not needed, only the files."""
    folder = tmp_path_factory.mktemp("saves") / "profiles"
    _train(PostHocEMA(_inner_sgd()), callbacks=[PostHocEMACheckpoint(folder, save_freq=6)], epochs=3)
    return folder


def test_a_saved_width_at_a_saved_time_is_that_profile_exactly(saved_folder):
    metadata, profiles = read_save(saved_folder / "posthoc-ema-0000000024.npz")
    model = new_model()
    error = posthoc_ema(model, saved_folder, sigma_rel=0.10, snapshot_count=24)
    assert error < 1e-6
    np.testing.assert_allclose(_flat(model.get_weights()), _flat(profiles[1]), rtol=1e-6, atol=1e-7)


def test_saves_after_the_target_time_are_not_used(saved_folder, tmp_path):
    model = new_model()
    error = posthoc_ema(model, saved_folder, sigma_rel=0.07, snapshot_count=27)
    # The same with the saves after 30 deleted (30 itself is not used).
    shutil.copytree(saved_folder, tmp_path / "early")
    for name in os.listdir(tmp_path / "early"):
        if name.startswith("posthoc") and int(name[12:22]) > 30:
            os.remove(tmp_path / "early" / name)
    other = new_model()
    assert posthoc_ema(other, tmp_path / "early", sigma_rel=0.07, snapshot_count=27) == error
    np.testing.assert_array_equal(_flat(model.get_weights()), _flat(other.get_weights()))
    # ... and NumPy's reconstruction from the saves up to 24, toward time 27.
    saves = [read_save(saved_folder / f"posthoc-ema-{t:010d}.npz") for t in (6, 12, 18, 24)]
    gammas = saves[0][0]["gammas"]
    x, expected = least_squares([(t, g) for t in (6, 12, 18, 24) for g in gammas], (27, gamma_of_sigma_rel(0.07)))
    assert error == pytest.approx(expected, rel=1e-6)
    averages = np.array([_flat(p) for _, ps in saves for p in ps])
    np.testing.assert_allclose(_flat(model.get_weights()), x @ averages, rtol=1e-6, atol=1e-6)


def test_a_second_process_reads_the_folder(saved_folder, tmp_path):
    output = tmp_path / "read.npz"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(saved_folder), "0.08", str(output)],
        env=dict(os.environ), capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    model = new_model()
    error = posthoc_ema(model, saved_folder, sigma_rel=0.08)
    result = np.load(output)
    assert float(result["error"]) == error
    for i, weight in enumerate(model.get_weights()):
        np.testing.assert_array_equal(result[f"arr_{i}"], weight)


def test_file_format(saved_folder):
    (saved_folder / ".posthoc-ema-0000000099.npz.123.partial").write_bytes(b"half a file")
    metadata, profiles = read_save(saved_folder / "posthoc-ema-0000000048.npz")
    assert metadata["format"] == "kerasswa.posthoc_ema" and metadata["format_version"] == 1
    assert (metadata["snapshot_count"], metadata["update_count"]) == (48, 48)
    assert (metadata["start_averaging"], metadata["average_period"]) == (0, 1)
    assert metadata["sigma_rels"] == [0.05, 0.1]
    assert metadata["trainable_variables"] == 4
    assert [v["shape"] for v in metadata["variables"]] == [[3, 4], [4], [4, 1], [1]]
    assert [v["index"] for v in metadata["variables"]] == [0, 1, 2, 3]
    assert all(v["dtype"] == "float32" and v["path"].endswith(("kernel", "bias")) for v in metadata["variables"])
    assert [p.dtype for p in profiles[0]] == [np.float32] * 4
    # The partial file is ignored.
    assert posthoc_ema(new_model(), saved_folder, sigma_rel=0.1) < 1e-6


# -- the callback ---------------------------------------------------------------------


def _snapshot_counts(folder):
    return [int(name[12:22]) for name in sorted(os.listdir(folder))]


@pytest.mark.parametrize(
    "save_freq, start, expected",
    [
        (10, 0, [10, 20, 30, 40, 48]),  # and at the end of training
        ("epoch", 0, [16, 32, 48]),
        (10, 25, [5, 15, 23]),          # snapshots from update 25: none before update 30
    ],
)
def test_callback_saves_every_n_batches_or_epochs_and_at_the_end(save_freq, start, expected, tmp_path):
    _train(
        PostHocEMA(_inner_sgd(), start_averaging=start),
        callbacks=[PostHocEMACheckpoint(tmp_path, save_freq=save_freq)],
        epochs=3,
    )
    assert _snapshot_counts(tmp_path) == expected


@pytest.mark.skipif(keras.config.backend() == "torch", reason="steps_per_execution must be 1 on PyTorch")
def test_callback_counts_batches_under_steps_per_execution(tmp_path):
    x, y = _data()
    model = new_model()
    model.compile(optimizer=PostHocEMA(_inner_sgd()), loss="mse", steps_per_execution=4)
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[PostHocEMACheckpoint(tmp_path, save_freq=6)])
    # Batch ends come every 4 batches: a save once 6 or more have passed.
    assert _snapshot_counts(tmp_path) == [8, 16, 24, 32]


# -- the optimizer ---------------------------------------------------------------------


def test_one_copy_of_the_weights_per_profile():
    weights = [keras.Variable(np.zeros((3, 2), "float32")), keras.Variable(np.zeros(2, "float32"))]
    optimizer = PostHocEMA("sgd", sigma_rels=(0.03, 0.05, 0.1))
    optimizer.build(weights)
    swa = SWA("sgd")
    swa.build(weights)
    assert len(optimizer.variables) == len(swa.variables) + 2 * len(weights)
    assert [len(p) for p in optimizer.profile_variables] == [2, 2, 2]
    assert optimizer.profile_variables[0] == optimizer.average_variables


def test_profiles_in_a_custom_loop_and_assign_average_vars_gives_the_first():
    w = keras.Variable(np.zeros(2, "float32"))
    optimizer = PostHocEMA(keras.optimizers.SGD(1.0), sigma_rels=(0.1, 0.2))
    for _ in range(6):  # w = 1, ..., 6
        optimizer.apply([tensor([-1.0, -1.0])], [w])
    for sigma_rel, profile in zip((0.1, 0.2), optimizer.profile_variables):
        expected = power_weights(6, gamma_of_sigma_rel(sigma_rel)) @ np.arange(1, 7)
        np.testing.assert_allclose(to_numpy(profile[0]), [expected] * 2, rtol=1e-6)
    optimizer.assign_average_vars([w])
    np.testing.assert_allclose(to_numpy(w), to_numpy(optimizer.profile_variables[0][0]))


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_posthoc_optimizer_is_saved_and_resumes_bit_identically(jit_compile, tmp_path):
    x, y = _data()

    def build():
        keras.utils.set_random_seed(3)
        model = new_model()
        model.compile(optimizer=PostHocEMA("adam", sigma_rels=(0.04, 0.12), average_period=2),
                      loss="mse", jit_compile=jit_compile)
        return model

    straight = build()
    straight.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    resumed = build()
    resumed.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    resumed.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")  # safe mode
    assert isinstance(resumed.optimizer, PostHocEMA) and resumed.optimizer.sigma_rels == (0.04, 0.12)
    resumed.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert resumed.optimizer.snapshot_count == straight.optimizer.snapshot_count == 16
    assert len(straight.optimizer.variables) == len(resumed.optimizer.variables)
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    config = straight.optimizer.get_config()
    assert "averaging" not in config and config["sigma_rels"] == [0.04, 0.12]


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: PostHocEMA("sgd", sigma_rels=()), ValueError, r"`sigma_rels`.*one or more.*sigma_rels=\(\)"),
        (lambda: PostHocEMA("sgd", sigma_rels=(0.1, 0.1)), ValueError, r"distinct.*\(0.1, 0.1\)"),
        (lambda: PostHocEMA("sgd", sigma_rels=(0.05, 0.5)), ValueError, r"`sigma_rels\[1\]`.*0.5"),
        (lambda: PostHocEMA("sgd", sigma_rels=0.1), TypeError, "`sigma_rels` must be a sequence.*0.1"),
        (lambda: PostHocEMA("sgd", sigma_rels="0.1"), TypeError, "`sigma_rels`.*'0.1'"),
        (lambda: PostHocEMA("sgd", averaging="mean"), ValueError, "takes no `averaging`.*'mean'"),
        (lambda: PostHocEMA("sgd", average_period=0), ValueError, "`average_period`.*0"),
        (lambda: PostHocEMACheckpoint(3), TypeError, "`folder` must be a path.*3"),
        (lambda: PostHocEMACheckpoint("f", save_freq="batch"), ValueError, "`save_freq`.*'batch'"),
        (lambda: PostHocEMACheckpoint("f", save_freq=0), ValueError, "`save_freq`.*0"),
        (lambda: posthoc_ema_error(0.4, 100, 10), ValueError, "`sigma_rel`.*0.4"),
        (lambda: posthoc_ema_error(0.1, 0, 10), ValueError, "`total_updates`.*0"),
        (lambda: posthoc_ema_error(0.1, 100, 2.5), ValueError, "`save_every`.*2.5"),
        (lambda: posthoc_ema_error(0.1, 10, 5, start_averaging=10), ValueError, "No snapshot.*start_averaging=10"),
        (lambda: posthoc_ema_error(0.1, 10**6, 1), ValueError, "save less often.*save_every=1"),
    ],
)
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_save_profiles_before_the_first_snapshot_is_refused(tmp_path):
    optimizer = PostHocEMA("sgd", start_averaging=5)
    with pytest.raises(ValueError, match="`save_profiles` has nothing to save"):
        optimizer.save_profiles(tmp_path)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    with pytest.raises(ValueError, match="no snapshot yet.*start_averaging=5"):
        optimizer.save_profiles(tmp_path)
    assert os.listdir(tmp_path) == []


def test_the_callback_needs_a_posthoc_optimizer(tmp_path):
    model = new_model()
    model.compile(optimizer=SWA("sgd"), loss="mse")
    x, y = _data()
    with pytest.raises(TypeError, match="PostHocEMACheckpoint needs a model compiled with a kerasswa.PostHocEMA"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[PostHocEMACheckpoint(tmp_path)])


def test_bad_folders_and_targets_are_refused_and_change_nothing(saved_folder, tmp_path):
    model = new_model()
    before = _flat(model.get_weights())
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "posthoc-ema-0000000001.npz").write_bytes(b"not a zip")
    (tmp_path / "file.txt").write_text("x")
    mixed = tmp_path / "mixed"
    shutil.copytree(saved_folder, mixed)
    _train(PostHocEMA(_inner_sgd(), average_period=2), callbacks=[PostHocEMACheckpoint(mixed, save_freq=100)], epochs=1)
    newer = tmp_path / "newer"
    shutil.copytree(saved_folder, newer)
    path = newer / "posthoc-ema-0000000048.npz"
    metadata, profiles = read_save(path)
    metadata["format_version"] = 2
    arrays = {f"profile{p}_var{v}": a for p, ps in enumerate(profiles) for v, a in enumerate(ps)}
    np.savez(path, metadata=np.array(json.dumps(metadata)), **arrays)
    cases = [
        (dict(folder=tmp_path / "missing"), ValueError, "`folder` is not a folder.*missing"),
        (dict(folder=tmp_path / "file.txt"), ValueError, "`folder` is not a folder.*file.txt"),
        (dict(folder=tmp_path / "empty"), ValueError, "`folder` holds no post-hoc EMA profiles.*empty"),
        (dict(folder=tmp_path / "junk"), ValueError, "posthoc-ema-0000000001.npz.*not a post-hoc EMA save"),
        (dict(folder=mixed), ValueError, "mixes saves of different runs: average_period differs"),
        (dict(folder=newer), ValueError, "format version 2.*update kerasswa"),
        (dict(folder=None), TypeError, "`folder` must be a path.*None"),
        (dict(snapshot_count=49), ValueError, r"`snapshot_count` is later than the last save.*\(48 snapshots\).*49"),
        (dict(snapshot_count=0), ValueError, "`snapshot_count`.*>= 1.*0"),
        (dict(sigma_rel=None), ValueError, "exactly one of `sigma_rel` and `gamma`"),
        (dict(sigma_rel=0.1, gamma=2.0), ValueError, "exactly one of `sigma_rel` and `gamma`"),
        (dict(sigma_rel=0.0), ValueError, "`sigma_rel`.*0.0"),
        (dict(model="model"), TypeError, "`model` must be a Keras model.*'model'"),
    ]
    for overrides, error, match in cases:
        arguments = dict(model=model, folder=saved_folder, sigma_rel=0.1)
        arguments.update(overrides)
        with pytest.raises(error, match=match):
            posthoc_ema(**arguments)
    wider = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"`model` does not match.*shape \(3, 5\).*\(3, 4\)"):
        posthoc_ema(wider, saved_folder, sigma_rel=0.1)
    deeper = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="`model` does not match.*6 trainable variables, the saves 4"):
        posthoc_ema(deeper, saved_folder, sigma_rel=0.1)
    np.testing.assert_array_equal(_flat(model.get_weights()), before)
