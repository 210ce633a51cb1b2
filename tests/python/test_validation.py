"""Every bad input of CONTRACT.md's validation list: the stated error type, a
message naming the argument, and the inner optimizer left as it was."""

import math

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA


@pytest.mark.parametrize(
    "argument, value, error",
    [
        ("start_averaging", -1, ValueError),
        ("start_averaging", 2.5, ValueError),
        ("start_averaging", math.nan, ValueError),
        ("start_averaging", math.inf, ValueError),
        ("start_averaging", True, TypeError),
        ("start_averaging", "10", TypeError),
        ("start_averaging", None, TypeError),
        ("start_averaging", [1, 2], TypeError),
        ("average_period", 0, ValueError),
        ("average_period", -3, ValueError),
        ("average_period", 0.5, ValueError),
        ("average_period", math.nan, ValueError),
        ("average_period", False, TypeError),
        ("average_period", "ten", TypeError),
        ("sequential_update", 1, TypeError),
        ("sequential_update", "yes", TypeError),
        ("sequential_update", None, TypeError),
        ("name", "", TypeError),
        ("name", 3, TypeError),
        ("clipnorm", -1.0, ValueError),
        ("clipnorm", 0.0, ValueError),
        ("clipnorm", math.nan, ValueError),
        ("clipnorm", "1", TypeError),
        ("clipvalue", -0.5, ValueError),
        ("global_clipnorm", math.inf, ValueError),
        ("decay", -0.1, ValueError),
        ("decay", math.nan, ValueError),
        ("decay", "0.1", TypeError),
        ("lr", 0.0, ValueError),
        ("lr", -0.01, ValueError),
        ("learning_rate", math.nan, ValueError),
        ("learning_rate", "fast", TypeError),
    ],
)
def test_bad_argument_is_refused_and_named(argument, value, error):
    inner = keras.optimizers.SGD(0.125)
    with pytest.warns() if argument == "lr" else _no_context():
        with pytest.raises(error, match=f"`{argument}`") as raised:
            SWA(inner, **{argument: value})
    assert repr(value) in str(raised.value) or str(value) in str(raised.value)
    assert float(to_numpy(inner.learning_rate)) == 0.125


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


@pytest.mark.parametrize("value, expected", [(10, 10), (10.0, 10), (np.int64(4), 4), (np.float64(3.0), 3)])
def test_whole_numbers_are_accepted_as_integers(value, expected):
    optimizer = SWA("sgd", start_averaging=value, average_period=value)
    assert optimizer.start_averaging == expected and isinstance(optimizer.start_averaging, int)
    assert optimizer.average_period == expected and isinstance(optimizer.average_period, int)


def test_two_clipping_arguments_are_refused():
    with pytest.raises(ValueError, match="clipnorm.*global_clipnorm"):
        SWA("sgd", clipnorm=1.0, global_clipnorm=1.0)


def test_lr_and_learning_rate_together_are_refused_and_change_nothing():
    inner = keras.optimizers.SGD(0.125)
    with pytest.raises(ValueError, match="`lr`.*not both"):
        SWA(inner, lr=0.1, learning_rate=0.2)
    assert float(to_numpy(inner.learning_rate)) == 0.125


@pytest.mark.parametrize("argument", [{"learning_rate": 0.1}, {"decay": 0.5}])
def test_learning_rate_over_a_schedule_is_refused(argument):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    inner = keras.optimizers.SGD(schedule)
    with pytest.raises(ValueError, match="already follows a learning-rate schedule"):
        SWA(inner, **argument)
    assert inner._learning_rate is schedule


@pytest.mark.parametrize("argument", ["weight_decay", "use_ema", "gradient_accumulation_steps"])
def test_inner_only_arguments_point_to_the_inner_optimizer(argument):
    with pytest.raises(ValueError, match=f"`{argument}`.*inner optimizer"):
        SWA("sgd", **{argument: 2})


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="momentum"):
        SWA("sgd", momentum=0.9)


def test_none_optimizer_is_refused():
    with pytest.raises(TypeError, match="`optimizer`.*None"):
        SWA(None)


def test_swa_in_swa_is_refused():
    with pytest.raises(TypeError, match="already an SWA"):
        SWA(SWA("sgd"))


@pytest.mark.parametrize("value", [3, 0.1, object(), keras.layers.Dense(2)])
def test_non_optimizer_is_refused(value):
    with pytest.raises(TypeError, match="`optimizer` must be a Keras 3 optimizer"):
        SWA(value)


def test_unknown_optimizer_name_is_refused():
    with pytest.raises(ValueError, match="'sgdd'"):
        SWA("sgdd")


def test_keras2_optimizer_is_refused_with_keras3_advice():
    tf_keras = pytest.importorskip("tf_keras")
    with pytest.raises(TypeError, match="Keras 2 optimizer.*needs a Keras 3"):
        SWA(tf_keras.optimizers.SGD(0.1))
