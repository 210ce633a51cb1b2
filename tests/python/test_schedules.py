"""`SWALearningRateSchedule` pinned at chosen steps against its formula."""

import math

import keras
import pytest
from conftest import to_numpy

from kerasswa import SWA, SWALearningRateSchedule


def _values(schedule, steps):
    return [float(to_numpy(schedule(step))) for step in steps]


def test_constant_swa_rate_from_start_averaging():
    schedule = SWALearningRateSchedule(0.1, 0.02, start_averaging=5)
    assert _values(schedule, [0, 4, 5, 6, 1000]) == pytest.approx([0.1, 0.1, 0.02, 0.02, 0.02])


def test_cosine_anneal():
    schedule = SWALearningRateSchedule(0.1, 0.02, start_averaging=10, anneal_steps=8)
    # swa + (base - swa) * (1 + cos(pi * (t - 10) / 8)) / 2
    expected = [0.02 + 0.08 * (1 + math.cos(math.pi * p / 8)) / 2 for p in (0, 2, 4, 6, 8)]
    assert expected[2] == pytest.approx(0.06)
    assert _values(schedule, [10, 12, 14, 16, 18]) == pytest.approx(expected, rel=1e-6)
    assert _values(schedule, [9, 30]) == pytest.approx([0.1, 0.02])


def test_linear_anneal_from_a_base_schedule():
    base = keras.optimizers.schedules.PolynomialDecay(0.2, decay_steps=20, end_learning_rate=0.1)
    schedule = SWALearningRateSchedule(base, 0.01, start_averaging=10, anneal_steps=4, anneal_strategy="linear")
    # The base schedule until step 10 (0.2 - 0.1 * t / 20), then from base(10) = 0.15
    # linearly down to 0.01 over 4 steps.
    assert _values(schedule, [0, 6, 10, 11, 12, 13, 14, 50]) == pytest.approx(
        [0.2, 0.17, 0.15, 0.115, 0.08, 0.045, 0.01, 0.01], rel=1e-5
    )


def test_cyclic_schedule_reaches_swa_rate_on_snapshot_steps():
    schedule = SWALearningRateSchedule(0.05, 0.01, start_averaging=6, cycle_length=4)
    # t >= 6: 0.05 + (0.01 - 0.05) * ((t - 7) mod 4 + 1) / 4
    assert _values(schedule, range(5, 15)) == pytest.approx(
        [0.05, 0.01, 0.04, 0.03, 0.02, 0.01, 0.04, 0.03, 0.02, 0.01], rel=1e-5
    )
    snapshot_steps = [t for t in range(6, 15) if (t - 6) % 4 == 0]
    assert _values(schedule, snapshot_steps) == pytest.approx([0.01] * len(snapshot_steps))


def test_config_round_trip_and_use_inside_swa():
    base = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    schedule = SWALearningRateSchedule(base, 0.01, start_averaging=3, cycle_length=2, name="swa_lr")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored.get_config()["cycle_length"] == 2
    assert _values(restored, range(8)) == pytest.approx(_values(schedule, range(8)))

    optimizer = SWA(keras.optimizers.SGD(schedule), start_averaging=3, average_period=2)
    config = keras.saving.serialize_keras_object(optimizer)
    inner = keras.saving.deserialize_keras_object(config).inner_optimizer
    assert isinstance(inner._learning_rate, SWALearningRateSchedule)
