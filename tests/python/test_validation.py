"""What validation accepts, and refusals that need more than one row of the
bad-input matrix (test_bad_input_matrix.py) to show."""

import keras
import numpy as np
import pytest

from kerasswa import SWA


@pytest.mark.parametrize("value, expected", [(10, 10), (10.0, 10), (np.int64(4), 4), (np.float64(3.0), 3)])
def test_whole_numbers_are_accepted_as_integers(value, expected):
    optimizer = SWA("sgd", start_averaging=value, average_period=value)
    assert optimizer.start_averaging == expected and isinstance(optimizer.start_averaging, int)
    assert optimizer.average_period == expected and isinstance(optimizer.average_period, int)


@pytest.mark.parametrize("argument", [{"learning_rate": 0.1}, {"decay": 0.5}])
def test_learning_rate_over_a_schedule_is_refused_and_the_schedule_kept(argument):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    inner = keras.optimizers.SGD(schedule)
    with pytest.raises(ValueError, match="already follows a learning-rate schedule"):
        SWA(inner, **argument)
    assert inner._learning_rate is schedule


def test_refused_lr_gives_no_deprecation_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="`lr`"):
            SWA("sgd", lr=-1.0)
