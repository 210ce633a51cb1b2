"""Property-based tests of every public argument of kerasswa (Hypothesis).

For each drawn value of one argument (the others at working defaults), EITHER
the call refuses it with a `TypeError`/`ValueError` whose message names the
argument and shows the value, and nothing changed (model weights, optimizer
state, the inner optimizer handed in), OR it works: a short fit that crosses
a snapshot, saving to `.keras` and loading give finite results, the loaded
model goes on exactly as the original. A value accepted at construction that
fails later is a failure of this test.

Values come from these classes, on top of a few per argument ("special":
schedules, callables, arrays, variable lists, ...): small integers, integers
around and past the backend's counter range (`counter_max()`: int32 on JAX
and PyTorch, int64 on TensorFlow) and int32/int64/uint64, finite floats,
special floats (subnormal, huge, +-inf, NaN, -0.0), NumPy scalars, 0-d
arrays, booleans, strings, None and lists.

Reproducible: a fixed derandomized seed, no example database, no deadline.
`KERASSWA_FUZZ_EXAMPLES` sets the examples per argument (default 2; `make
fuzz` runs more). With `KERASSWA_FUZZ_REPORT=path`, JSON lines with the
counts (drawn / refused / worked per argument and value class) are appended
to `path`; `python tests/python/test_properties.py path` prints them as a
table.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import pathlib
import re
import sys
import warnings
from types import SimpleNamespace

import numpy as np

EXAMPLES = int(os.environ.get("KERASSWA_FUZZ_EXAMPLES", "2"))
REPORT = os.environ.get("KERASSWA_FUZZ_REPORT")


def _table(path):
    """The counts of a report file as a Markdown table, summed over runs."""
    rows = collections.defaultdict(lambda: collections.Counter())
    backends = set()
    for line in open(path, encoding="utf-8"):
        record = json.loads(line)
        backends.add(record["backend"])
        key = (record["target"], record["argument"], record["class"])
        rows[key].update(
            {k: record.get(k, 0)
             for k in ("drawn", "refused", "worked", "unrun", "diverged", "keras_fails")}
        )
    classes = sorted({c for _, _, c in rows})
    print(f"backends: {', '.join(sorted(backends))}; cells: drawn/refused/worked"
          " (of the worked, 'div' diverged in float32 as Keras's SGD alone does;"
          " 'keras': fails later exactly as with Keras's SGD alone;"
          " 'unrun': accepted, too large to run)")
    print("| argument | " + " | ".join(classes) + " |")
    print("|---" * (len(classes) + 1) + "|")
    for target, argument in sorted({(t, a) for t, a, _ in rows}):
        cells = []
        for value_class in classes:
            c = rows.get((target, argument, value_class))
            if not c:
                cells.append("")
                continue
            cell = f"{c['drawn']}/{c['refused']}/{c['worked']}"
            cell += f" ({c['diverged']} div)" if c["diverged"] else ""
            cell += f" ({c['keras_fails']} keras)" if c["keras_fails"] else ""
            cells.append(cell + (f" (+{c['unrun']} unrun)" if c["unrun"] else ""))
        print(f"| {target}({argument}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    _table(sys.argv[1])
    sys.exit(0)

import keras  # noqa: E402
import pytest  # noqa: E402
from conftest import BACKEND, to_numpy  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kerasswa import (  # noqa: E402
    SWA,
    SWAG,
    SWACallback,
    SWAModelCheckpoint,
    SWALearningRateSchedule,
    swag_predict,
    update_bn,
)
from kerasswa._validation import counter_max  # noqa: E402

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # No shrinking: an example costs a fit, and the failing one is printed.
    phases=(Phase.explicit, Phase.generate),
)

COUNTER_MAX = counter_max()
F32_MAX = float(np.finfo(np.float32).max)
# SWAG keeps `max_rank` copies of the weights: an accepted rank above this is
# counted as "unrun" instead of allocated.
MAX_RANK_RUN = 64
# swag_predict is stopped (and must restore everything) after this many samples.
SAMPLE_BUDGET = 4

# -- the values ------------------------------------------------------------

_INT_EDGES = sorted(
    {
        COUNTER_MAX - 1, COUNTER_MAX, COUNTER_MAX + 1,
        2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**100,
        -(2**31), -(2**31) - 1, -(2**63), -(2**63) - 1,
    }
)
_SPECIAL_FLOATS = [
    0.0, -0.0, 5e-324, 1e-310, 1.4e-45, 1e-40, F32_MAX, 3.5e38, 1e38, 1e39,
    1e300, sys.float_info.max, math.inf, -math.inf, math.nan, -math.nan,
    float(COUNTER_MAX), float(2**31), float(2**63), float(2**64), 2.0**1000,
]
_STRINGS = ["", "mean", "cos", "linear", "sgd", "adam", "10", "1e-3", "nan",
            "None", "True", "SWA", "a/b", " ", "\x00", "é"]
_NP_INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64]


def _np_ints():
    return st.sampled_from(_NP_INT_TYPES).flatmap(
        lambda t: st.integers(int(np.iinfo(t).min), int(np.iinfo(t).max)).map(t)
        | st.sampled_from([t(0), t(1), t(2), t(np.iinfo(t).max)])
    )


def _np_floats():
    return st.one_of(
        st.floats(width=16).map(np.float16),
        st.floats(width=32).map(np.float32),
        st.floats().map(np.float64),
        st.sampled_from([0.5, 0.01, 2.0, 3.0, 1e-3]).flatmap(
            lambda v: st.sampled_from([np.float16(v), np.float32(v), np.float64(v)])
        ),
    )


VALUE_CLASSES = {
    "int": st.integers(-3, 40),
    "int-edge": st.sampled_from(_INT_EDGES) | st.integers(-(2**70), 2**70),
    "float": st.one_of(
        st.floats(-5.0, 50.0),
        st.integers(-3, 40).map(float),
        st.floats(1e-6, 1e6),
        st.sampled_from([0.5, 0.1, 0.9, 0.999, 2.5, 1e-3, 1e-8]),
    ),
    "float-special": st.sampled_from(_SPECIAL_FLOATS) | st.floats(),
    "np-scalar": _np_ints() | _np_floats() | st.sampled_from([np.True_, np.str_("mean")]),
    "np-0d": (_np_ints() | _np_floats() | st.sampled_from([True, "mean"])).map(np.asarray),
    "bool": st.sampled_from([True, False, np.True_, np.False_]),
    "str": st.sampled_from(_STRINGS) | st.text(max_size=6),
    "None": st.none(),
    "list": st.one_of(
        st.lists(st.integers(-2, 5) | st.floats(-1, 3) | st.booleans() | st.none(), max_size=3),
        st.sampled_from([[], [1], [2.0], [[1]], ["mean"], (1,), (0.1, 0.2), {"a": 1},
                         np.array([3]), np.zeros(0)]),
    ),
}


def values(specials=()):
    """`(value class, value)` pairs, the argument's own specials included."""
    tagged = [
        strategy.map(lambda v, name=name: (name, v))
        for name, strategy in VALUE_CLASSES.items()
    ]
    if specials:
        # Specials are built lazily (they may need a model): drawn by index.
        tagged.append(st.integers(0, len(specials) - 1).map(lambda i: ("special", specials[i])))
    return st.one_of(tagged)


# -- counting ----------------------------------------------------------------

COUNTS = collections.defaultdict(collections.Counter)


@pytest.fixture(autouse=True)
def _write_report():
    """After each test, its counts (so that a run cut short still reports)."""
    yield
    if not REPORT:
        COUNTS.clear()
        return
    with open(REPORT, "a", encoding="utf-8") as report:
        for (target, argument, value_class), c in sorted(COUNTS.items()):
            report.write(json.dumps({
                "backend": BACKEND, "examples": EXAMPLES, "target": target,
                "argument": argument, "class": value_class, "drawn": c["drawn"],
                "refused": c["refused"], "worked": c["worked"], "unrun": c["unrun"],
                "diverged": c["diverged"], "keras_fails": c["keras_fails"],
            }) + "\n")
    COUNTS.clear()


def _count(target, argument, value_class, outcome, diverged=False, keras_fails=False):
    counter = COUNTS[(target, argument, value_class)]
    counter["drawn"] += 1
    counter[outcome] += 1
    # Worked, and diverged in float32 exactly as Keras's SGD alone does.
    counter["diverged"] += diverged
    # Accepted as Keras's own SGD accepts it, and failing later as it does.
    counter["keras_fails"] += keras_fails


# -- checks ------------------------------------------------------------------


def _is_big(value) -> bool:
    """Values whose repr does not belong in a message (arrays, models,
    variables, data, callables): only the argument's name is required."""
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    if isinstance(value, (list, tuple, dict)):
        return any(_is_big(v) for v in (value.values() if isinstance(value, dict) else value)) or len(repr(value)) > 80
    if isinstance(value, (str, bytes, bool, int, float, complex, np.generic)) or value is None:
        return False
    return True


def _renderings(value) -> set:
    out = {repr(value), str(value)}
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
        out |= {repr(value), str(value)}
    if isinstance(value, np.generic):
        value = value.item()
        out |= {repr(value), str(value)}
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        out.add(str(int(value)))
    if isinstance(value, float) and math.isnan(value):
        out.add("nan")
    return out


def assert_refusal_message(error, argument, value):
    message = str(error)
    assert re.search(rf"`{re.escape(argument)}`|\b{re.escape(argument)}=", message), (
        f"the message does not name `{argument}`: {message!r}"
    )
    if not _is_big(value):
        assert any(r in message for r in _renderings(value)), (
            f"the message does not show the value {value!r}: {message!r}"
        )


def _state(variables):
    return [np.array(to_numpy(v), copy=True) for v in variables]


def assert_unchanged(before, after, what="state"):
    assert len(before) == len(after), what
    for old, new in zip(before, after):
        assert old.dtype == new.dtype and old.shape == new.shape, what
        assert np.array_equal(old, new, equal_nan=True), f"{what} changed"


def assert_finite(arrays, what):
    for array in arrays:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating):
            assert np.all(np.isfinite(array)), f"{what} is not finite: {array}"


def _accepted(error):
    return isinstance(error, (TypeError, ValueError))


def failed_later(target, argument, value, error) -> AssertionError:
    """The failure of the property: a value accepted at construction that
    failed afterwards (raise it `from error`)."""
    return AssertionError(f"{target}({argument}={value!r}) was accepted, then failed: {error!r}")


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _fn_learning_rate(step):
    return 0.05


def _state_of(optimizer):
    return [v for v in optimizer.variables]


# -- shared models -------------------------------------------------------------

# How a fit runs: graph and eager paths of the SWA step differ. PyTorch's
# `jit_compile=True` is torch.compile (tens of seconds): eager only.
# Compiled fits cost a compilation per configuration: drawn one time in three.
MODES = ["eager"] if BACKEND == "torch" else ["eager", "eager", "compiled"]


def _compile_kwargs(mode):
    """`compiled`: a traced step (tf.function without XLA, which only adds
    compile time here; jax.jit); `eager`: op by op."""
    if BACKEND == "tensorflow":
        return {"jit_compile": False, "run_eagerly": mode == "eager"}
    return {"jit_compile": mode == "compiled"}


def _data(n=8, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, features)).astype("float32")
    # Mean absolute error: gradients stay in [-1, 1] whatever the weights, so
    # only a learning rate beyond float32 (or a bug) makes training overflow.
    y = (x @ np.array([[0.5], [-1.0], [2.0], [0.25]], "float32")).astype("float32")
    return x, y


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    x, y = _data()
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    bn = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(2), keras.layers.BatchNormalization(),
        keras.layers.Dense(1),
    ])
    return SimpleNamespace(
        x=x, y=y, dense=dense, dense_init=dense.get_weights(), bn=bn,
        bn_init=bn.get_weights(), path=str(tmp_path_factory.mktemp("fuzz") / "m.keras"),
        seen=set(),
    )


def _trained(ctx, optimizer, model_name="dense"):
    """A model trained with `optimizer` (2 snapshots) and its state."""
    model = getattr(ctx, model_name)
    model.set_weights(getattr(ctx, model_name + "_init"))
    model.compile(optimizer=optimizer, loss="mae", jit_compile=False)
    model.fit(ctx.x, ctx.y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    return model


class NotFinite(AssertionError):
    pass


def diverges_without_swa(ctx, learning_rate, mode):
    """Whether Keras's SGD alone, at this learning rate, also goes
    non-finite on the same data: then a non-finite SWA run is float32
    arithmetic, not a fault of kerasswa."""
    try:
        model = ctx.dense
        model.set_weights(ctx.dense_init)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mae", **_compile_kwargs(mode))
        with _quiet():
            history = model.fit(ctx.x, ctx.y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    except Exception:  # noqa: BLE001 - Keras refuses it: no excuse.
        return False
    return not (np.all(np.isfinite(history.history["loss"]))
                and all(np.all(np.isfinite(w)) for w in model.get_weights()))


def keras_alone_fails(ctx, learning_rate, mode):
    """Whether Keras's SGD alone, with this learning rate (a callable), fails
    the same fit, save, load and step: then kerasswa accepts exactly what
    Keras accepts, and the failure is Keras's (on TensorFlow, Keras calls a
    restored lambda without the step)."""
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mae",
                      **_compile_kwargs(mode))
        with _quiet():
            model.fit(ctx.x, ctx.y, batch_size=2, epochs=1, shuffle=False, verbose=0)
            model.save(ctx.path)
            loaded = keras.models.load_model(ctx.path)
            loaded.compile(optimizer=loaded.optimizer, loss="mae", **_compile_kwargs(mode))
            loaded.train_on_batch(ctx.x[:2], ctx.y[:2])
    except Exception:  # noqa: BLE001
        return True
    return False


def fit_save_load(ctx, optimizer, mode, model_name="dense", callbacks=(), epochs=1, key=None):
    """The 'works' half of the property: fit, save, load, go on alike."""
    if key is not None:
        key = (type(optimizer).__name__, mode, model_name, epochs, key)
        if key in ctx.seen:
            return
    model = getattr(ctx, model_name)
    model.set_weights(getattr(ctx, model_name + "_init"))
    model.compile(optimizer=optimizer, loss="mae", **_compile_kwargs(mode))
    with _quiet():
        history = model.fit(ctx.x, ctx.y, batch_size=2, epochs=epochs, shuffle=False,
                            verbose=0, callbacks=list(callbacks))
    try:
        assert_finite([history.history["loss"]], "the training loss")
        assert_finite(_state(model.variables), "the weights")
    except AssertionError as error:
        raise NotFinite(str(error)) from None
    swa = model.optimizer
    assert_finite(_state(swa.variables), "the optimizer state")
    if swa.snapshot_count:
        with swa.use_average_vars(model.variables):
            assert_finite([to_numpy(model(ctx.x))], "the averaged model's output")
    if isinstance(swa, SWAG) and swa.snapshot_count:
        with swa.use_sample_vars(model.trainable_variables, seed=0, covariance=swa.rank >= 2):
            assert_finite(_state(model.trainable_variables), "a SWAG sample")
    model.save(ctx.path)
    loaded = keras.models.load_model(ctx.path)
    # Recompiled as the original (the optimizer, restored and built, is kept).
    loaded.compile(optimizer=loaded.optimizer, loss="mae", **_compile_kwargs(mode))
    assert type(loaded.optimizer) is type(swa)
    assert repr(loaded.optimizer.get_config()) == repr(swa.get_config())
    assert_unchanged(_state(model.variables), _state(loaded.variables), "the loaded weights")
    assert_unchanged(_state(swa.variables), _state(loaded.optimizer.variables),
                     "the loaded optimizer state")
    assert_finite([to_numpy(loaded(ctx.x))], "the loaded model's output")
    # The loaded model goes on exactly as the original.
    with _quiet():
        model.train_on_batch(ctx.x[:2], ctx.y[:2])
        loaded.train_on_batch(ctx.x[:2], ctx.y[:2])
    np.testing.assert_allclose(
        np.concatenate([w.ravel() for w in _state(loaded.variables)]),
        np.concatenate([w.ravel() for w in _state(model.variables)]), rtol=1e-6, atol=1e-6,
    )
    assert loaded.optimizer.snapshot_count == swa.snapshot_count
    if key is not None:
        ctx.seen.add(key)


# -- SWA and SWAG constructors -----------------------------------------------

SWA_ARGUMENTS = [
    "optimizer", "start_averaging", "average_period", "name", "sequential_update",
    "averaging", "clipnorm", "clipvalue", "global_clipnorm", "decay", "lr", "learning_rate",
]
SWAG_ARGUMENTS = ["max_rank", "var_clamp"] + SWA_ARGUMENTS


def _lr_specials():
    return [
        lambda: keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9),
        lambda: SWALearningRateSchedule(0.1, 0.01, start_averaging=2, anneal_steps=2),
        lambda: _fn_learning_rate,
        lambda: (lambda step: 0.05),
        lambda: keras.ops.convert_to_tensor(0.1),
        lambda: keras.Variable(0.1),
    ]


SPECIALS = {
    "optimizer": [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.serialize(keras.optimizers.SGD(0.02)),
        lambda: {"class_name": "NoSuchOptimizer", "config": {}},
        lambda: SWA("sgd"),
        lambda: keras.layers.Dense(1),
        lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05)),
    ],
    "learning_rate": _lr_specials(),
    "lr": _lr_specials(),
    "name": [lambda: "x" * 300, lambda: "swa/inner:0", lambda: "optimizer"],
}


def _build_value(value_class, value):
    return value() if value_class == "special" else value


def _swa_kwargs(argument, value, kind):
    kwargs = {"start_averaging": 1, "average_period": 2}
    if kind is SWAG:
        kwargs["max_rank"] = 3
    if argument != "optimizer":
        kwargs[argument] = value
        return keras.optimizers.SGD(0.05), kwargs
    return value, kwargs


def _check_constructor(ctx, kind, argument, drawn, mode):
    value_class, value = drawn
    value = _build_value(value_class, value)
    inner, kwargs = _swa_kwargs(argument, value, kind)
    watched = [inner] if isinstance(inner, keras.optimizers.Optimizer) else []
    before_config = [repr(o.get_config()) for o in watched]
    before_lr = [repr(o._learning_rate) if not isinstance(o._learning_rate, keras.Variable)
                 else float(to_numpy(o._learning_rate)) for o in watched]
    target = kind.__name__
    try:
        with _quiet():
            optimizer = kind(inner, **kwargs)
    except Exception as error:  # noqa: BLE001
        assert _accepted(error), f"{target}({argument}={value!r}) raised {error!r}"
        assert_refusal_message(error, argument, value)
        assert [repr(o.get_config()) for o in watched] == before_config, "the inner optimizer changed"
        assert [repr(o._learning_rate) if not isinstance(o._learning_rate, keras.Variable)
                else float(to_numpy(o._learning_rate)) for o in watched] == before_lr
        _count(target, argument, value_class, "refused")
        return
    if kind is SWAG and optimizer.max_rank > MAX_RANK_RUN:
        _count(target, argument, value_class, "unrun")
        return
    key = repr(optimizer.get_config()) if value_class != "special" else None
    rate = optimizer.inner_optimizer._learning_rate
    if isinstance(rate, keras.Variable):
        rate = float(to_numpy(rate))
    try:
        fit_save_load(ctx, optimizer, mode, key=key)
    except NotFinite:
        if argument not in ("lr", "learning_rate") or not diverges_without_swa(ctx, rate, mode):
            raise
        _count(target, argument, value_class, "worked", diverged=True)
        return
    except Exception as error:
        if (argument in ("lr", "learning_rate") and callable(value)
                and not isinstance(value, keras.optimizers.schedules.LearningRateSchedule)
                and keras_alone_fails(ctx, value, mode)):
            _count(target, argument, value_class, "worked", keras_fails=True)
            return
        raise failed_later(target, argument, value, error) from error
    _count(target, argument, value_class, "worked")


def _with_specials(argument):
    return values(SPECIALS.get(argument, ()))


@pytest.mark.parametrize("argument", SWA_ARGUMENTS)
def test_swa_argument(ctx, argument):
    @FUZZ
    @given(drawn=_with_specials(argument), mode=st.sampled_from(MODES))
    def check(drawn, mode):
        _check_constructor(ctx, SWA, argument, drawn, mode)

    check()


@pytest.mark.parametrize("argument", SWAG_ARGUMENTS)
def test_swag_argument(ctx, argument):
    @FUZZ
    @given(drawn=_with_specials(argument), mode=st.sampled_from(MODES))
    def check(drawn, mode):
        _check_constructor(ctx, SWAG, argument, drawn, mode)

    check()


# -- take_snapshot (manual averaging), over the averaging rules ----------------


def test_take_snapshot(ctx):
    @FUZZ
    @given(drawn=values(), mode=st.sampled_from(MODES))
    def check(drawn, mode):
        value_class, averaging = drawn
        try:
            optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=None, averaging=averaging)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), repr(error)
            assert_refusal_message(error, "averaging", averaging)
            _count("take_snapshot", "averaging", value_class, "refused")
            return
        with pytest.raises(ValueError, match="take_snapshot"):
            optimizer.take_snapshot()
        model = ctx.dense
        model.set_weights(ctx.dense_init)
        model.compile(optimizer=optimizer, loss="mae", **_compile_kwargs(mode))
        model.fit(ctx.x, ctx.y, batch_size=2, epochs=1, shuffle=False, verbose=0)
        assert optimizer.snapshot_count == 0
        optimizer.take_snapshot()
        optimizer.take_snapshot()
        assert optimizer.snapshot_count == 2
        weights = _state(model.trainable_variables)
        averages = _state(optimizer.average_variables)
        for w, a in zip(weights, averages):
            np.testing.assert_allclose(a, w, rtol=1e-6, atol=1e-7)
        try:
            fit_save_load(ctx, SWA.from_config(optimizer.get_config()), mode,
                          key=("take_snapshot", repr(optimizer.get_config())))
        except Exception as error:
            raise AssertionError(f"averaging={averaging!r} was accepted, then failed: {error!r}") from error
        _count("take_snapshot", "averaging", value_class, "worked")

    check()


# -- SWACallback -----------------------------------------------------------------

CALLBACK_ARGUMENTS = [
    "bn_data", "bn_batch_size", "bn_steps", "validation_data", "validation_batch_size",
    "finish_after_epoch", "average_non_trainable", "verbose", "start_epoch",
]


def _data_specials(with_tuples=True):
    x, y = _data()
    specials = [
        lambda: x, lambda: x[:, :2], lambda: np.where(x > 0.5, np.nan, x), lambda: x[:0],
        lambda: iter([x[:4], x[4:]]), lambda: x.astype("float64"), lambda: x.tolist(),
    ]
    if with_tuples:
        specials += [lambda: (x, y), lambda: (x, y, np.ones(8, "float32")), lambda: [x, y],
                     lambda: (x,), lambda: (x, y[:3]), lambda: (x, y, None, None)]
    return specials


CALLBACK_SPECIALS = {"bn_data": _data_specials(), "validation_data": _data_specials()}


@pytest.mark.parametrize("argument", CALLBACK_ARGUMENTS)
def test_swa_callback_argument(ctx, argument):
    @FUZZ
    # Eager only: the callback's code runs eagerly either way, and each
    # compiled fit would trace the train and test steps anew.
    @given(drawn=values(CALLBACK_SPECIALS.get(argument, ())), mode=st.just("eager"))
    def check(drawn, mode):
        value_class, value = drawn
        value = _build_value(value_class, value)
        kwargs = {"bn_data": ctx.x, "validation_data": (ctx.x, ctx.y), "bn_batch_size": 4}
        if argument == "average_non_trainable":
            kwargs.pop("bn_data")
        kwargs[argument] = value
        try:
            with _quiet():
                callback = SWACallback(**kwargs)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"SWACallback({argument}={value!r}) raised {error!r}"
            assert_refusal_message(error, argument, value)
            _count("SWACallback", argument, value_class, "refused")
            return
        manual = callback.start_epoch is not None
        optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=None if manual else 1,
                        average_period=2)
        key = None
        if value_class != "special":
            key = ("callback", argument, repr(getattr(callback, argument)))
        try:
            fit_save_load(ctx, optimizer, mode, model_name="bn", callbacks=[callback], epochs=2,
                          key=key)
        except (TypeError, ValueError) as error:
            # Data that cannot fit the model is refused when `fit` starts,
            # before the first update: as good as at construction.
            if optimizer.update_count == 0 and re.search(rf"`{argument}`", str(error)):
                assert_refusal_message(error, argument, value)
                assert_unchanged(_state(ctx.bn.variables), [np.asarray(w) for w in ctx.bn_init],
                                 "the model")
                _count("SWACallback", argument, value_class, "refused")
                return
            raise failed_later("SWACallback", argument, value, error) from error
        except Exception as error:
            raise failed_later("SWACallback", argument, value, error) from error
        _count("SWACallback", argument, value_class, "worked")

    check()


# -- SWAModelCheckpoint ------------------------------------------------------------

CHECKPOINT_ARGUMENTS = [
    "filepath", "monitor", "verbose", "save_best_only", "save_weights_only", "mode",
    "save_freq", "initial_value_threshold", "update_weights", "bn_data", "bn_batch_size",
]
CHECKPOINT_SPECIALS = {
    "filepath": [
        lambda: "avg-{epoch}.keras", lambda: "avg.keras", lambda: "avg-{epoch:02d}-{loss:.3f}.keras",
        lambda: "avg.weights.h5", lambda: "avg", lambda: "sub/dir/avg-{epoch}.keras",
        lambda: pathlib.Path("avg-{epoch}.keras"), lambda: b"avg.keras",
    ],
    "monitor": [lambda: "val_swa_loss", lambda: "val_loss", lambda: "accuracy"],
    "bn_data": _data_specials(with_tuples=False),
}


def _check_written(ctx, folder, weights_only):
    """Every file the checkpoint wrote loads and holds finite weights."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.endswith(".keras"):
            assert_finite(keras.models.load_model(path).get_weights(), f"the model in {path.name}")
        elif path.name.endswith(".weights.h5") and weights_only:
            model = keras.models.clone_model(ctx.bn)
            model.load_weights(path)
            assert_finite(model.get_weights(), f"the weights in {path.name}")


def keras_checkpoint_fails(ctx, monitor, folder, error) -> bool:
    """Whether Keras's ModelCheckpoint, with this `monitor`, fails the same
    fit with the same message (naming `monitor` and its value)."""
    try:
        model = ctx.bn
        model.set_weights(ctx.bn_init)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mae")
        checkpoint = keras.callbacks.ModelCheckpoint(str(folder / "keras-{epoch}.keras"), monitor=monitor)
        with _quiet():
            model.fit(ctx.x, ctx.y, batch_size=2, epochs=1, verbose=0, callbacks=[checkpoint])
    except ValueError as keras_error:
        ours = str(error).replace("SWAModelCheckpoint", "ModelCheckpoint")
        return str(keras_error) == ours and f"monitor={monitor}" in ours
    return False


@pytest.mark.parametrize("argument", CHECKPOINT_ARGUMENTS)
def test_swa_model_checkpoint_argument(ctx, argument, tmp_path, monkeypatch):
    # Relative paths land in a folder of this test's own.
    monkeypatch.chdir(tmp_path)
    attempt = iter(range(10**6))

    @FUZZ
    # Eager only, as for SWACallback: the checkpoint's code runs eagerly.
    @given(drawn=values(CHECKPOINT_SPECIALS.get(argument, ())), mode=st.just("eager"))
    def check(drawn, mode):
        value_class, value = drawn
        value = _build_value(value_class, value)
        folder = tmp_path / f"attempt-{next(attempt)}"
        folder.mkdir()
        kwargs = {"filepath": str(folder / "avg-{epoch}.keras"), "monitor": "loss"}
        if argument == "filepath" and isinstance(value, (str, bytes, os.PathLike)):
            # Drawn paths are taken relative to this attempt's folder.
            monkeypatch.chdir(folder)
        kwargs[argument] = value
        try:
            with _quiet():
                callback = SWAModelCheckpoint(**kwargs)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"SWAModelCheckpoint({argument}={value!r}) raised {error!r}"
            assert_refusal_message(error, argument, value)
            assert not any(folder.iterdir()), "a refused checkpoint wrote a file"
            _count("SWAModelCheckpoint", argument, value_class, "refused")
            return
        optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=1, average_period=2)
        try:
            fit_save_load(ctx, optimizer, mode, model_name="bn", callbacks=[callback], epochs=2)
            _check_written(ctx, folder, callback.save_weights_only)
        except ValueError as error:
            # A `monitor` whose direction `mode="auto"` cannot tell: known only
            # once the model's metrics are, and Keras's own ModelCheckpoint
            # accepts it and fails at the first save just the same.
            if argument == "monitor" and keras_checkpoint_fails(ctx, value, folder, error):
                _count("SWAModelCheckpoint", argument, value_class, "worked", keras_fails=True)
                return
            raise failed_later("SWAModelCheckpoint", argument, value, error) from error
        except Exception as error:
            raise failed_later("SWAModelCheckpoint", argument, value, error) from error
        _count("SWAModelCheckpoint", argument, value_class, "worked")

    check()


# -- SWALearningRateSchedule ----------------------------------------------------

SCHEDULE_ARGUMENTS = [
    "base_learning_rate", "swa_learning_rate", "start_averaging", "anneal_steps",
    "anneal_strategy", "cycle_length", "name",
]
SCHEDULE_SPECIALS = {
    "base_learning_rate": [
        lambda: keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9),
        lambda: keras.optimizers.schedules.CosineDecay(0.1, 100),
        lambda: _fn_learning_rate,
    ],
}


@pytest.mark.parametrize("argument", SCHEDULE_ARGUMENTS)
def test_schedule_argument(ctx, argument):
    @FUZZ
    @given(drawn=values(SCHEDULE_SPECIALS.get(argument, ())), mode=st.sampled_from(MODES))
    def check(drawn, mode):
        value_class, value = drawn
        value = _build_value(value_class, value)
        kwargs = {"base_learning_rate": 0.1, "swa_learning_rate": 0.01, "start_averaging": 2}
        if argument == "anneal_strategy":
            kwargs["anneal_steps"] = 2
        kwargs[argument] = value
        try:
            schedule = SWALearningRateSchedule(**kwargs)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"SWALearningRateSchedule({argument}={value!r}) raised {error!r}"
            assert_refusal_message(error, argument, value)
            _count("SWALearningRateSchedule", argument, value_class, "refused")
            return
        try:
            steps = [0, 1, 2, 3, 5, 100, COUNTER_MAX]
            rates = [float(to_numpy(schedule(keras.ops.convert_to_tensor(s, "int64" if BACKEND == "tensorflow" else "int32"))))
                     for s in steps]
            assert all(r >= 0 for r in rates), rates
            if not all(math.isfinite(r) for r in rates):
                raise NotFinite(f"rates {rates}")
            restored = SWALearningRateSchedule.from_config(schedule.get_config())
            assert repr(restored.get_config()) == repr(schedule.get_config())
            optimizer = SWA(keras.optimizers.SGD(schedule), start_averaging=1, average_period=2)
            key = None if value_class == "special" else repr(schedule.get_config())
            fit_save_load(ctx, optimizer, mode, key=key)
        except NotFinite:
            if not diverges_without_swa(ctx, schedule, mode):
                raise
            _count("SWALearningRateSchedule", argument, value_class, "worked", diverged=True)
            return
        except Exception as error:
            raise failed_later("SWALearningRateSchedule", argument, value, error) from error
        _count("SWALearningRateSchedule", argument, value_class, "worked")

    check()


# -- update_bn -------------------------------------------------------------------

UPDATE_BN_ARGUMENTS = ["model", "data", "batch_size", "steps", "verbose"]
UPDATE_BN_SPECIALS = {
    "data": _data_specials(),
    "model": [
        lambda: keras.Sequential([keras.layers.BatchNormalization()]),
        lambda: keras.layers.Dense(1),
        lambda: keras.optimizers.SGD(),
    ],
}


@pytest.mark.parametrize("argument", UPDATE_BN_ARGUMENTS)
def test_update_bn_argument(ctx, argument):
    model = ctx.bn
    model.set_weights(ctx.bn_init)

    @FUZZ
    @given(drawn=values(UPDATE_BN_SPECIALS.get(argument, ())))
    def check(drawn):
        value_class, value = drawn
        value = _build_value(value_class, value)
        kwargs = {"model": model, "data": ctx.x, "batch_size": 4, "steps": None, "verbose": 0}
        kwargs[argument] = value
        before = _state(model.variables)
        trainable = _state(model.trainable_variables)
        momenta = [layer.momentum for layer in model.layers if hasattr(layer, "momentum")]
        try:
            with _quiet():
                result = update_bn(**kwargs)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"update_bn({argument}={value!r}) raised {error!r}"
            assert_refusal_message(error, argument, value)
            assert_unchanged(before, _state(model.variables), "the model")
            _count("update_bn", argument, value_class, "refused")
            return
        finally:
            assert momenta == [layer.momentum for layer in model.layers if hasattr(layer, "momentum")]
        assert result is kwargs["model"]
        if result is model:
            assert_finite(_state(model.variables), "the statistics")
            assert_unchanged(trainable, _state(model.trainable_variables), "the trainable weights")
        model.set_weights(ctx.bn_init)
        _count("update_bn", argument, value_class, "worked")

    check()


# -- SWAG sampling: sample_vars and swag_predict ------------------------------------

SAMPLE_ARGUMENTS = ["var_list", "scale", "seed", "covariance"]
PREDICT_ARGUMENTS = ["model", "x", "num_samples", "scale", "covariance", "bn_data", "batch_size",
                     "seed", "verbose", "bn_batch_size"]


def _var_list_specials(model_name):
    return [
        lambda c: getattr(c, model_name).variables,
        lambda c: getattr(c, model_name).trainable_variables,
        lambda c: tuple(getattr(c, model_name).variables),
        lambda c: iter(getattr(c, model_name).variables),
        lambda c: getattr(c, model_name).non_trainable_variables,
        lambda c: getattr(c, model_name).variables[:1],
        lambda c: [keras.Variable(np.zeros(3, "float32"), name="stranger")],
        lambda c: getattr(c, model_name).trainable_variables[0],
    ]


def _swag_trained(ctx):
    optimizer = SWAG(keras.optimizers.SGD(0.05), start_averaging=0, average_period=1, max_rank=3)
    model = _trained(ctx, optimizer, "bn")
    assert optimizer.rank == 3
    return model, optimizer


@pytest.mark.parametrize("argument", SAMPLE_ARGUMENTS)
def test_sample_vars_argument(ctx, argument):
    model, optimizer = _swag_trained(ctx)
    specials = {"var_list": _var_list_specials("bn"),
                "seed": [lambda c: keras.random.SeedGenerator(3)]}.get(argument, ())

    @FUZZ
    @given(drawn=values(specials))
    def check(drawn):
        value_class, value = drawn
        if value_class == "special":
            value = value(ctx)
        kwargs = {"var_list": model.trainable_variables, "scale": 0.5, "seed": 0, "covariance": True}
        kwargs[argument] = value
        watched = model.variables + optimizer.variables
        before = _state(watched)
        try:
            optimizer.sample_vars(**kwargs)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"sample_vars({argument}={value!r}) raised {error!r}"
            assert_refusal_message(error, argument, value)
            assert_unchanged(before, _state(watched), "the model and optimizer")
            _count("sample_vars", argument, value_class, "refused")
            return
        assert_finite(_state(model.variables), "the sample")
        assert_unchanged(before[len(model.variables):], _state(optimizer.variables), "the optimizer")
        model.set_weights(before[: len(model.variables)])
        _count("sample_vars", argument, value_class, "worked")

    check()


class _Budget(BaseException):
    pass


@pytest.mark.parametrize("argument", PREDICT_ARGUMENTS)
def test_swag_predict_argument(ctx, argument):
    model, optimizer = _swag_trained(ctx)
    x = ctx.x
    specials = {
        "model": [lambda c: c.dense, lambda c: keras.Sequential([keras.layers.Dense(1)])],
        "x": [lambda c: x, lambda c: x[:3], lambda c: x[:, :2], lambda c: x[:0],
              lambda c: np.where(x > 0.5, np.nan, x)],
        "bn_data": [lambda c, f=f: f() for f in _data_specials()],
        "seed": [lambda c: keras.random.SeedGenerator(3)],
    }.get(argument, ())

    @FUZZ
    @given(drawn=values(specials))
    def check(drawn):
        value_class, value = drawn
        if value_class == "special":
            value = value(ctx)
        kwargs = {"model": model, "x": x, "num_samples": 2, "scale": 0.5, "covariance": True,
                  "bn_data": None, "batch_size": None, "seed": 0, "verbose": 0, "bn_batch_size": 4}
        kwargs[argument] = value
        watched = model.variables + optimizer.variables
        before = _state(watched)
        calls = []
        original_predict = model.predict

        def predict(*args, **kw):
            calls.append(1)
            if len(calls) > SAMPLE_BUDGET:
                raise _Budget()
            return original_predict(*args, **kw)

        model.predict = predict
        try:
            with _quiet():
                result = swag_predict(**kwargs)
        except _Budget:
            assert_unchanged(before, _state(watched), "the model after an interrupted swag_predict")
            _count("swag_predict", argument, value_class, "worked")
            return
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"swag_predict({argument}={value!r}) raised {error!r}"
            assert_refusal_message(error, argument, value)
            assert_unchanged(before, _state(watched), "the model and optimizer")
            _count("swag_predict", argument, value_class, "refused")
            return
        finally:
            del model.predict
        assert_finite([result], "the prediction")
        assert_unchanged(before, _state(watched), "the model after swag_predict")
        _count("swag_predict", argument, value_class, "worked")

    check()


# -- the averages: assign_average_vars, swap_average_vars, use_average_vars ----------

AVERAGE_METHODS = ["assign_average_vars", "swap_average_vars", "use_average_vars"]


@pytest.mark.parametrize("method", AVERAGE_METHODS)
def test_average_vars_argument(ctx, method):
    optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=1, average_period=2)
    model = _trained(ctx, optimizer, "bn")
    assert optimizer.snapshot_count == 2

    @FUZZ
    @given(drawn=values(_var_list_specials("bn")))
    def check(drawn):
        value_class, value = drawn
        factory = value
        make = (lambda: factory(ctx)) if value_class == "special" else (lambda: factory)
        value = make()
        watched = model.variables + optimizer.variables
        before = _state(watched)
        try:
            if method == "use_average_vars":
                with optimizer.use_average_vars(value):
                    assert_finite(_state(model.variables), "the averaged weights")
            else:
                getattr(optimizer, method)(value)
        except Exception as error:  # noqa: BLE001
            assert _accepted(error), f"{method}({value!r}) raised {error!r}"
            assert_refusal_message(error, "var_list", value)
            assert_unchanged(before, _state(watched), "the model and optimizer")
            _count(method, "var_list", value_class, "refused")
            return
        assert_finite(_state(watched), "the weights and averages")
        if method == "swap_average_vars":
            optimizer.swap_average_vars(make())  # back
            assert_unchanged(before, _state(watched), "a double swap")
        elif method == "use_average_vars":
            assert_unchanged(before, _state(watched), "use_average_vars afterwards")
        for variable, old in zip(watched, before):
            variable.assign(old)
        _count(method, "var_list", value_class, "worked")

    check()
