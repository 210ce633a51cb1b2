"""Every bad input to every public name, in one table.

Each row must raise the stated error type with a message that names the
argument, and leave every variable as it was: the model's, the SWA
optimizer's and the inner optimizer's (whose learning rate a refused `SWA(...)`
call must not touch).
"""

import math
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import to_numpy

from kerasswa import SWA, SWACallback, SWALearningRateSchedule, update_bn


@pytest.fixture(scope="module")
def ctx():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
    )
    swa = SWA(keras.optimizers.SGD(0.05), start_averaging=2, average_period=2)
    model.compile(optimizer=swa, loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0)  # 8 updates
    unbuilt = keras.Sequential([keras.layers.BatchNormalization()])
    stranger = keras.Variable(np.zeros(3, "float32"), name="stranger")
    return SimpleNamespace(model=model, swa=swa, x=x, inner=keras.optimizers.SGD(0.125),
                           unbuilt=unbuilt, stranger=stranger)


def _state(ctx):
    variables = ctx.model.variables + ctx.swa.variables + ctx.inner.variables + [ctx.stranger]
    return [to_numpy(v).copy() for v in variables]


def _swa(**kwargs):
    return lambda c: SWA(c.inner, **kwargs)


def _schedule(**kwargs):
    arguments = dict(base_learning_rate=0.1, swa_learning_rate=0.01, start_averaging=5)
    arguments.update(kwargs)
    return lambda c: SWALearningRateSchedule(**arguments)


def _keras2_optimizer():
    tf_keras = pytest.importorskip("tf_keras")
    return tf_keras.optimizers.SGD(0.1)


ROWS = {
    # SWA(...): the counts.
    "start_averaging negative": (_swa(start_averaging=-1), ValueError, "`start_averaging`.*-1"),
    "start_averaging fraction": (_swa(start_averaging=2.5), ValueError, "`start_averaging`.*2.5"),
    "start_averaging NaN": (_swa(start_averaging=math.nan), ValueError, "`start_averaging`.*nan"),
    "start_averaging Inf": (_swa(start_averaging=math.inf), ValueError, "`start_averaging`.*inf"),
    "start_averaging bool": (_swa(start_averaging=True), TypeError, "`start_averaging`.*True"),
    "start_averaging string": (_swa(start_averaging="10"), TypeError, "`start_averaging`.*'10'"),
    "average_period None": (_swa(average_period=None), TypeError, "`average_period`.*None"),
    "start_averaging list": (_swa(start_averaging=[1, 2]), TypeError, r"`start_averaging`.*\[1, 2\]"),
    "average_period zero": (_swa(average_period=0), ValueError, "`average_period`.*0"),
    "average_period fraction": (_swa(average_period=0.5), ValueError, "`average_period`.*0.5"),
    "average_period NaN": (_swa(average_period=math.nan), ValueError, "`average_period`.*nan"),
    "average_period bool": (_swa(average_period=False), TypeError, "`average_period`.*False"),
    "average_period empty list": (_swa(average_period=[]), TypeError, r"`average_period`.*\[\]"),
    # SWA(...): flags, names, rates.
    "sequential_update int": (_swa(sequential_update=1), TypeError, "`sequential_update`.*1"),
    "sequential_update None": (_swa(sequential_update=None), TypeError, "`sequential_update`.*None"),
    "name empty": (_swa(name=""), TypeError, "`name`.*''"),
    "name number": (_swa(name=3), TypeError, "`name`.*3"),
    "clipnorm negative": (_swa(clipnorm=-1.0), ValueError, "`clipnorm`.*-1.0"),
    "clipnorm zero": (_swa(clipnorm=0.0), ValueError, "`clipnorm`.*0.0"),
    "clipnorm NaN": (_swa(clipnorm=math.nan), ValueError, "`clipnorm`.*nan"),
    "clipnorm string": (_swa(clipnorm="1"), TypeError, "`clipnorm`.*'1'"),
    "clipvalue negative": (_swa(clipvalue=-0.5), ValueError, "`clipvalue`.*-0.5"),
    "global_clipnorm -Inf": (_swa(global_clipnorm=-math.inf), ValueError, "`global_clipnorm`.*-inf"),
    "two clipping arguments": (_swa(clipnorm=1.0, global_clipnorm=1.0), ValueError, "`clipnorm`.*`global_clipnorm`"),
    "decay negative": (_swa(decay=-0.1), ValueError, "`decay`.*-0.1"),
    "decay NaN": (_swa(decay=math.nan), ValueError, "`decay`.*nan"),
    "decay string": (_swa(decay="0.1"), TypeError, "`decay`.*'0.1'"),
    "lr zero": (_swa(lr=0.0), ValueError, "`lr`.*0.0"),
    "learning_rate NaN": (_swa(learning_rate=math.nan), ValueError, "`learning_rate`.*nan"),
    "learning_rate string": (_swa(learning_rate="fast"), TypeError, "`learning_rate`.*'fast'"),
    "lr and learning_rate": (_swa(lr=0.1, learning_rate=0.2), ValueError, "`lr`.*not both"),
    "weight_decay on the wrapper": (_swa(weight_decay=0.1), ValueError, "`weight_decay`.*inner optimizer"),
    "unknown keyword": (_swa(momentum=0.9), TypeError, "momentum"),
    # SWA(...): the inner optimizer.
    "optimizer None": (lambda c: SWA(None), TypeError, "`optimizer`.*None"),
    "optimizer number": (lambda c: SWA(3), TypeError, "`optimizer`.*3"),
    "optimizer layer": (lambda c: SWA(keras.layers.Dense(2)), TypeError, "`optimizer`.*Dense"),
    "optimizer unknown name": (lambda c: SWA("sgdd"), ValueError, "`optimizer`.*'sgdd'"),
    "optimizer SWA": (lambda c: SWA(c.swa), TypeError, "`optimizer`.*already an SWA"),
    "optimizer Keras 2": (lambda c: SWA(_keras2_optimizer()), TypeError, "`optimizer`.*Keras 2.*Keras 3"),
    "learning_rate over a schedule": (
        lambda c: SWA(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), decay=0.5),
        ValueError, "`decay`.*schedule",
    ),
    "tampered config": (
        lambda c: SWA.from_config(dict(c.swa.get_config(), average_period=-1)),
        ValueError, "`average_period`.*-1",
    ),
    "tampered inner optimizer": (
        lambda c: SWA.from_config(dict(c.swa.get_config(), optimizer={"class_name": "NoSuchOptimizer", "config": {}})),
        ValueError, "NoSuchOptimizer",
    ),
    # The SWA methods.
    "assign var_list number": (lambda c: c.swa.assign_average_vars(3), TypeError, "`var_list`.*3"),
    "swap var_list one variable": (
        lambda c: c.swa.swap_average_vars(c.model.trainable_variables[0]), TypeError, "`var_list`",
    ),
    "assign mismatched var_list": (
        lambda c: c.swa.assign_average_vars(c.model.variables + [c.stranger]), ValueError, "stranger",
    ),
    "use_average_vars mismatched var_list": (
        lambda c: c.swa.use_average_vars([c.stranger]).__enter__(), ValueError, "stranger",
    ),
    # update_bn.
    "update_bn model string": (lambda c: update_bn("model", c.x), TypeError, "`model`.*'model'"),
    "update_bn unbuilt model": (lambda c: update_bn(c.unbuilt, c.x), ValueError, "`update_bn` needs a built model"),
    "update_bn batch_size zero": (lambda c: update_bn(c.model, c.x, batch_size=0), ValueError, "`batch_size`.*0"),
    "update_bn steps fraction": (lambda c: update_bn(c.model, c.x, steps=1.5), ValueError, "`steps`.*1.5"),
    "update_bn verbose 2": (lambda c: update_bn(c.model, c.x, verbose=2), ValueError, "`verbose`.*2"),
    "update_bn data number": (lambda c: update_bn(c.model, 42), TypeError, "`data`.*42"),
    "update_bn data empty": (lambda c: update_bn(c.model, []), ValueError, "`data` gave no batches"),
    "update_bn data with Inf": (
        lambda c: update_bn(c.model, np.where(c.x > 1.5, np.inf, c.x)), ValueError, "`data`.*NaN or infinite",
    ),
    "update_bn bad second batch": (
        lambda c: update_bn(c.model, iter([c.x[:8], c.x[:8, :3]])), ValueError, "`data`: batch 1",
    ),
    # SWALearningRateSchedule.
    "schedule base None": (_schedule(base_learning_rate=None), TypeError, "`base_learning_rate`.*None"),
    "schedule base negative": (_schedule(base_learning_rate=-1.0), ValueError, "`base_learning_rate`.*-1.0"),
    "schedule swa zero": (_schedule(swa_learning_rate=0.0), ValueError, "`swa_learning_rate`.*0.0"),
    "schedule swa NaN": (_schedule(swa_learning_rate=math.nan), ValueError, "`swa_learning_rate`.*nan"),
    "schedule start negative": (_schedule(start_averaging=-1), ValueError, "`start_averaging`.*-1"),
    "schedule anneal fraction": (_schedule(anneal_steps=2.5), ValueError, "`anneal_steps`.*2.5"),
    "schedule strategy unknown": (_schedule(anneal_strategy="cosine"), ValueError, "`anneal_strategy`.*'cosine'"),
    "schedule cycle zero": (_schedule(cycle_length=0), ValueError, "`cycle_length`.*0"),
    "schedule cycle and anneal": (_schedule(cycle_length=3, anneal_steps=2), ValueError, "`anneal_steps`.*`cycle_length`"),
    # SWACallback.
    "callback bn_data and averaging": (
        lambda c: SWACallback(bn_data=c.x, average_non_trainable=True), ValueError, "`bn_data`.*not both",
    ),
    "callback average_non_trainable string": (
        lambda c: SWACallback(average_non_trainable="yes"), TypeError, "`average_non_trainable`.*'yes'",
    ),
    "callback validation_data array": (lambda c: SWACallback(validation_data=c.x), TypeError, "`validation_data`"),
    "callback validation_data one item": (lambda c: SWACallback(validation_data=(c.x,)), TypeError, "`validation_data`"),
    "callback finish_after_epoch zero": (lambda c: SWACallback(finish_after_epoch=0), ValueError, "`finish_after_epoch`.*0"),
    "callback bn_batch_size negative": (lambda c: SWACallback(bn_batch_size=-1), ValueError, "`bn_batch_size`.*-1"),
    "callback bn_steps string": (lambda c: SWACallback(bn_steps="all"), TypeError, "`bn_steps`.*'all'"),
    "callback verbose 3": (lambda c: SWACallback(verbose=3), ValueError, "`verbose`.*3"),
}


def test_the_matrix_is_large():
    assert len(ROWS) >= 60


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_refused_and_changes_nothing(row, ctx):
    call, error, match = ROWS[row]
    before = _state(ctx)
    with pytest.raises(error, match=match):
        call(ctx)
    for old, new in zip(before, _state(ctx)):
        np.testing.assert_array_equal(old, new)
    # The process goes on: the model still trains and averages.
    assert ctx.swa.snapshot_count == 3  # updates 2, 4, 6
