"""The averaging rules of `SWA(averaging=...)`: `EMA` (warm-up) and `PowerEMA`
(EDM2's power function), each checked against NumPy re-computations written
from the formulas of CONTRACT.md (closed-form snapshot weights on a recorded
trajectory), with their persistence and their refusals."""

import math

import keras
import numpy as np
import pytest
from conftest import JIT_MODES, tensor, to_numpy

from kerasswa import EMA, SWA, SWAG, PowerEMA
from kerasswa.averaging import MAX_SIGMA_REL, gamma_of_sigma_rel, sigma_rel_of_gamma

# -- the closed forms, from the formulas (float64) -----------------------------


def power_weights(t, gamma):
    """Weights of snapshots 1..t in the power EMA after t snapshots."""
    tau = np.arange(1, t + 1, dtype="float64")
    return (tau / t) ** (gamma + 1) - ((tau - 1) / t) ** (gamma + 1)


def ema_decay(n, decay, min_decay=0.0, inv_gamma=1.0, power=2 / 3):
    """decay_n of the warm-up EMA for the snapshot after n snapshots."""
    if n == 0:
        return 0.0
    return max(min(decay, 1 - (1 + n / inv_gamma) ** -power), min_decay)


def ema_weights(t, **rule):
    """Weights of snapshots 1..t: snapshot tau enters with 1 - decay_{tau-1}
    and is then multiplied by every later decay."""
    weights = np.zeros(t)
    for tau in range(1, t + 1):
        later = [ema_decay(n, **rule) for n in range(tau, t)]
        weights[tau - 1] = (1 - ema_decay(tau - 1, **rule)) * np.prod(later)
    return weights


def test_sigma_rel_and_gamma_match_the_issue_and_the_width_formula():
    # The figures of issue 24 / EDM2: 0.05 is gamma 16.97, 0.10 is 6.94.
    assert PowerEMA(sigma_rel=0.05).gamma == pytest.approx(16.97, abs=0.005)
    assert PowerEMA(sigma_rel=0.10).gamma == pytest.approx(6.94, abs=0.005)
    for sigma_rel in (1e-30, 1e-6, 1e-3, 0.02, 0.05, 0.07, 0.1, 0.2, 0.28, MAX_SIGMA_REL):
        g = gamma_of_sigma_rel(sigma_rel)
        assert g >= 0
        # sigma_rel**2 (g+2)**2 (g+3) = g+1, the defining cubic.
        assert sigma_rel**2 * (g + 2) ** 2 * (g + 3) == pytest.approx(g + 1, rel=1e-12)
        rule = PowerEMA(sigma_rel=sigma_rel)
        assert (rule.gamma, rule.sigma_rel) == (g, sigma_rel)
    assert PowerEMA(sigma_rel=MAX_SIGMA_REL).gamma == pytest.approx(0.0, abs=1e-9)
    assert PowerEMA(gamma=6.94).sigma_rel == pytest.approx(math.sqrt(7.94 / (8.94**2 * 9.94)))
    assert sigma_rel_of_gamma(0.0) == pytest.approx(math.sqrt(1 / 12))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_power_factor_is_float32_accurate_at_ten_million_snapshots(dtype):
    if dtype == "float64" and keras.config.backend() == "jax":
        pytest.skip("JAX has no float64 unless jax_enable_x64 is set")
    rule = PowerEMA(sigma_rel=0.05)
    g = rule.gamma
    for n in (1, 2, 3, 10, 1000, 10**6, 10**7):
        count = keras.ops.convert_to_tensor(n - 1, "int32")
        got = float(to_numpy(rule.factor(count, dtype)))
        # float64: the direct form is exact enough up to 1e7 (relative 1e-9).
        expected = 1 - (1 - 1 / n) ** (g + 1)
        assert got == pytest.approx(expected, rel=1e-6 if dtype == "float32" else 1e-8), n
    # The direct form in float32 is 20% off at n = 1e7 (issue 24): the test
    # above would catch it.
    n = np.float32(1e7)
    direct = np.float32(1) - (np.float32(1) - np.float32(1) / n) ** np.float32(g + 1)
    assert abs(direct / (1 - (1 - 1 / 1e7) ** (g + 1)) - 1) > 0.1


def test_gamma_zero_is_the_mean_and_every_rule_copies_the_first_snapshot():
    for count in range(6):
        mean = float(to_numpy(PowerEMA(gamma=0).factor(count, "float32")))
        assert mean == pytest.approx(1 / (count + 1), rel=1e-6)
    for rule in (PowerEMA(sigma_rel=0.01), EMA(0.9999), EMA(0.5, min_decay=0.5)):
        assert float(to_numpy(rule.factor(0, "float32"))) == 1.0


def test_ema_warm_up_decays_match_the_formula():
    rule = EMA(0.999, min_decay=0.3, inv_gamma=2.0, power=0.75)
    for n in (0, 1, 2, 5, 50, 10**4, 10**6):
        expected = ema_decay(n, 0.999, 0.3, 2.0, 0.75)
        assert rule.decay_at(n) == pytest.approx(expected, rel=1e-12)
        assert float(to_numpy(rule.factor(n, "float32"))) == pytest.approx(1 - expected, rel=1e-5)
    # With the defaults: 0.37 at n = 1 and 0.999 at 31,600 (docstring).
    assert EMA().decay_at(1) == pytest.approx(1 - 2 ** (-2 / 3))
    assert EMA().decay_at(31_600) == pytest.approx(0.999, abs=1e-5)


# -- on a recorded trajectory ---------------------------------------------------


def _data(n=48):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.trajectory = []

    def on_train_batch_end(self, batch, logs=None):
        self.trajectory.append([w.astype("float64") for w in self.model.get_weights()])


def _model(optimizer, jit_compile):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


RULES = {
    "power 0.10": (PowerEMA(sigma_rel=0.10), lambda t: power_weights(t, gamma_of_sigma_rel(0.10))),
    "power gamma 3": (PowerEMA(gamma=3.0), lambda t: power_weights(t, 3.0)),
    "power gamma 0": (PowerEMA(gamma=0.0), lambda t: np.full(t, 1 / t)),
    "ema warm-up": (
        EMA(0.8, min_decay=0.1, inv_gamma=1.5, power=0.75),
        lambda t: ema_weights(t, decay=0.8, min_decay=0.1, inv_gamma=1.5, power=0.75),
    ),
    "ema capped": (EMA(0.5), lambda t: ema_weights(t, decay=0.5)),
}


@pytest.mark.parametrize("jit_compile", JIT_MODES)
@pytest.mark.parametrize("rule", list(RULES))
def test_rule_in_fit_matches_closed_form_weights_on_the_recorded_trajectory(rule, jit_compile):
    averaging, weights_of = RULES[rule]
    x, y = _data()
    start, period = 2, 3
    optimizer = SWA(keras.optimizers.SGD(0.05, momentum=0.5), start_averaging=start,
                    average_period=period, averaging=averaging)
    model = _model(optimizer, jit_compile)
    recorder = _Recorder()
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[recorder])

    updates = [t for t in range(len(recorder.trajectory)) if t >= start and (t - start) % period == 0]
    assert optimizer.snapshot_count == len(updates) == 12
    weights = weights_of(len(updates))
    assert weights.sum() == pytest.approx(1.0)
    for i, average in enumerate(optimizer.average_variables):
        expected = sum(w * recorder.trajectory[t][i] for w, t in zip(weights, updates))
        np.testing.assert_allclose(to_numpy(average), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("period", [10, 100])
def test_power_ema_under_a_period_is_the_same_profile_sampled(period):
    # Issue 24: on a ramp w_t = t over 5000 updates, ema-pytorch's power EMA
    # (its beta from the call count, applied every N calls) reads 2210 with
    # N = 10 and 362 with N = 100. Here the snapshot count drives the rule:
    # snapshots after updates 1, 1 + N, ..., (weights 1, 1 + N, ...), with the
    # closed-form weights of sigma_rel 0.10 (gamma 6.94) over them.
    jit_compile = JIT_MODES[-1]  # 5000 eager JAX steps would take 30 s
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")]
    )
    optimizer = SWA(keras.optimizers.SGD(1.0), average_period=period, averaging=PowerEMA(sigma_rel=0.10))
    model.compile(
        optimizer=optimizer,
        loss=lambda y, p: -keras.ops.mean(p),  # gradient -1: w_t = t
        jit_compile=jit_compile,
        steps_per_execution=1 if keras.config.backend() == "torch" else 100,
    )
    ones = np.ones((5000, 1), "float32")
    model.fit(ones, ones, batch_size=1, epochs=1, shuffle=False, verbose=0)
    assert float(model.get_weights()[0][0, 0]) == 5000.0

    snapshots = np.arange(1, 5001, period, dtype="float64")
    expected = power_weights(len(snapshots), gamma_of_sigma_rel(0.10)) @ snapshots
    # Worked out once from the same formula: with every update it is 4441.0.
    assert expected == pytest.approx({10: 4436.53, 100: 4390.22}[period], abs=0.01)
    assert optimizer.snapshot_count == len(snapshots)
    assert float(to_numpy(optimizer.average_variables[0])[0, 0]) == pytest.approx(expected, rel=2e-6)


def test_rules_add_no_optimizer_variables():
    counts = []
    for averaging in ("mean", 0.9, EMA(0.99), PowerEMA(sigma_rel=0.1)):
        optimizer = SWA("sgd", averaging=averaging)
        optimizer.build([keras.Variable(np.zeros((3, 2), "float32"))])
        counts.append(len(optimizer.variables))
    assert len(set(counts)) == 1


# -- persistence ----------------------------------------------------------------


@pytest.mark.parametrize(
    "averaging, jit_compile",
    [(EMA(0.9, power=0.75), JIT_MODES[-1]), (PowerEMA(sigma_rel=0.08), False), (PowerEMA(gamma=2.5), JIT_MODES[-1])],
)
def test_rule_is_saved_as_data_and_resumes_bit_identically(averaging, jit_compile, tmp_path):
    x, y = _data()

    def build():
        return _model(SWA("adam", start_averaging=1, average_period=2, averaging=averaging), jit_compile)

    straight = build()
    straight.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    resumed = build()
    resumed.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    resumed.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")  # safe mode
    assert resumed.optimizer.averaging == averaging
    assert type(resumed.optimizer.averaging) is type(averaging)
    resumed.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert resumed.optimizer.snapshot_count == straight.optimizer.snapshot_count == 12
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))

    config = straight.optimizer.get_config()["averaging"]
    assert config["registered_name"] == f"kerasswa>{type(averaging).__name__}"
    assert all(isinstance(v, (int, float)) for v in config["config"].values())  # data, not code
    assert SWA.from_config(straight.optimizer.get_config()).averaging == averaging


def test_mean_and_decay_keep_their_config_form():
    # Files saved before the rules existed hold these, and must still load.
    assert SWA("sgd").get_config()["averaging"] == "mean"
    assert SWA("sgd", averaging=0.9).get_config()["averaging"] == 0.9
    assert SWA.from_config(SWA("sgd", averaging=0.9).get_config()).averaging == 0.9


def test_power_ema_given_by_gamma_or_sigma_rel_saves_what_was_given():
    assert PowerEMA(sigma_rel=0.1).get_config() == {"sigma_rel": 0.1}
    assert PowerEMA(gamma=4.0).get_config() == {"gamma": 4.0}
    assert PowerEMA.from_config({"sigma_rel": 0.1}).gamma == PowerEMA(sigma_rel=0.1).gamma


# -- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: PowerEMA(), ValueError, "exactly one of `sigma_rel` and `gamma`.*sigma_rel=None, gamma=None"),
        (lambda: PowerEMA(sigma_rel=0.1, gamma=3), ValueError, "exactly one.*sigma_rel=0.1, gamma=3"),
        (lambda: PowerEMA(sigma_rel=0.0), ValueError, r"`sigma_rel` must be in \(0, sqrt\(1/12\).*sigma_rel=0.0"),
        (lambda: PowerEMA(sigma_rel=-0.1), ValueError, "`sigma_rel`.*-0.1"),
        (lambda: PowerEMA(sigma_rel=0.3), ValueError, "`sigma_rel`.*0.2887.*sigma_rel=0.3"),
        (lambda: PowerEMA(sigma_rel=math.nan), ValueError, "`sigma_rel`.*nan"),
        (lambda: PowerEMA(sigma_rel=1e-320), ValueError, "`sigma_rel` is too small.*sigma_rel=1e-320"),
        (lambda: PowerEMA(sigma_rel="0.1"), TypeError, "`sigma_rel`.*'0.1'"),
        (lambda: PowerEMA(sigma_rel=True), TypeError, "`sigma_rel`.*True"),
        (lambda: PowerEMA(gamma=-1.0), ValueError, "`gamma`.*>= 0.*gamma=-1.0"),
        (lambda: PowerEMA(gamma=math.inf), ValueError, "`gamma`.*inf"),
        (lambda: PowerEMA(gamma="7"), TypeError, "`gamma`.*'7'"),
        (lambda: EMA(0.0), ValueError, r"`decay`.*between 0 and 1.*decay=0.0"),
        (lambda: EMA(1.0), ValueError, "`decay`.*decay=1.0"),
        (lambda: EMA(math.nan), ValueError, "`decay`.*nan"),
        (lambda: EMA("high"), TypeError, "`decay`.*'high'"),
        (lambda: EMA(0.9, min_decay=0.95), ValueError, r"`min_decay`.*\[0, 0.9\].*min_decay=0.95"),
        (lambda: EMA(0.9, min_decay=-0.1), ValueError, "`min_decay`.*-0.1"),
        (lambda: EMA(0.9, inv_gamma=0), ValueError, "`inv_gamma`.*> 0.*inv_gamma=0"),
        (lambda: EMA(0.9, power=-1), ValueError, "`power`.*power=-1"),
        (lambda: EMA(0.9, power=None), TypeError, "`power`.*None"),
        (lambda: SWA("sgd", averaging=PowerEMA), TypeError, "`averaging`.*PowerEMA"),
        (lambda: SWA("sgd", averaging={"class_name": "Dense", "config": {}}), ValueError, "`averaging`.*Dense"),
        (lambda: SWA("sgd", averaging="ema"), ValueError, "`averaging`.*EMA.*'ema'"),
        (lambda: SWAG("sgd", averaging=PowerEMA(gamma=0)), ValueError, "`averaging` must be \"mean\".*PowerEMA"),
        (lambda: SWAG("sgd", averaging=EMA(0.9)), ValueError, "`averaging` must be \"mean\".*EMA"),
    ],
)
def test_bad_rules_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_rules_in_a_custom_loop_with_manual_snapshots():
    # take_snapshot goes through the same seam: snapshots of 1, 2, 3, 4.
    w = keras.Variable(np.zeros(2, "float32"))
    optimizer = SWA(keras.optimizers.SGD(1.0), start_averaging=None, averaging=PowerEMA(gamma=1.0))
    for _ in range(4):
        optimizer.apply([tensor([-1.0, -1.0])], [w])
        optimizer.take_snapshot()
    expected = power_weights(4, 1.0) @ np.arange(1, 5)  # (1 + 3*2 + 5*3 + 7*4) / 16
    assert expected == pytest.approx(50 / 16)
    np.testing.assert_allclose(to_numpy(optimizer.average_variables[0]), [expected] * 2, rtol=1e-6)
