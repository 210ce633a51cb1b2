"""What a compiled training step holds.

Under XLA a step without a snapshot copies no weight-sized buffer: the
optimized HLO is read and every `copy` of a float array is counted (on
TensorFlow a `cond` around the snapshot used to copy every average on every
step, 8 bytes a parameter; a loop of zero or one trip does not). Nor does it
compute on one outside the snapshot: the step's own (entry) computation holds
as many weight-sized operations as Keras's SGD's (XLA hoisted SWAG's
`square(w)`, invariant in the snapshot loop, into every TensorFlow step).
Under AutoGraph, as in a custom training step decorated with `tf.function`,
every method of the optimizer converts without a warning."""

import logging
import re

import keras
import numpy as np
import pytest
from conftest import BACKEND

from kerasswa import SWA, SWAG

SHAPES = [(64, 32), (32,), (32, 8)]

OPTIMIZERS = {
    # The control: Keras's own SGD copies nothing either.
    "SGD": lambda: keras.optimizers.SGD(0.1),
    "SWA": lambda: SWA(keras.optimizers.SGD(0.1), average_period=100),
    "SWA moving average": lambda: SWA(keras.optimizers.SGD(0.1), average_period=100, averaging=0.9),
    "SWAG": lambda: SWAG(keras.optimizers.SGD(0.1), average_period=100, max_rank=3),
}

# A copy whose result is a float array (scalars, such as counters, aside).
ARRAY_COPY = re.compile(r"= f32\[\d[\d,]*\]\S* copy\(")


def _built(name):
    weights = [keras.Variable(np.ones(shape, "float32")) for shape in SHAPES]
    optimizer = OPTIMIZERS[name]()
    optimizer.build(weights)
    grads = [np.full(shape, 0.1, "float32") for shape in SHAPES]
    return optimizer, weights, grads


def _optimized_hlo(optimizer, weights, grads) -> str:
    if BACKEND == "jax":
        import jax

        # As Keras's JAX trainer runs it: the state donated, and returned in
        # the order it came in (so that each buffer can be reused in place).
        step = jax.jit(
            lambda trainable, state, g: optimizer.stateless_apply(state, g, trainable),
            donate_argnums=(0, 1),
        )
        lowered = step.lower([w.value for w in weights], [v.value for v in optimizer.variables], grads)
        return lowered.compile().as_text()
    import tensorflow as tf

    step = tf.function(lambda g: optimizer.apply(g, weights), jit_compile=True)
    return step.experimental_get_compiler_ir([tf.constant(g) for g in grads])(stage="optimized_hlo")


@pytest.mark.skipif(BACKEND == "torch", reason="XLA compiles the step on TensorFlow and JAX")
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_step_under_xla_copies_no_weight_sized_buffer(name):
    text = _optimized_hlo(*_built(name))
    assert "f32[64,32]" in text  # the step was compiled with its weights
    copies = [line.strip() for line in text.splitlines() if ARRAY_COPY.search(line)]
    assert copies == []


# An operation of the entry computation whose result has a weight's shape;
# what only moves or names buffers (parameters, tuples, loops, conditionals,
# bitcasts) and the copies counted above aside.
WEIGHT_SIZED = re.compile(r"= f32\[(%s)\]\S* (?!parameter|get-tuple-element|tuple|while|conditional|bitcast|copy)[a-z-]+\(" % "|".join(
    ",".join(str(d) for d in shape) for shape in SHAPES
))


def _entry_computation(text: str) -> list:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ENTRY"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("}"))
    return lines[start:end]


@pytest.mark.skipif(BACKEND == "torch", reason="XLA compiles the step on TensorFlow and JAX")
@pytest.mark.parametrize("name", [name for name in OPTIMIZERS if name != "SGD"])
def test_a_step_under_xla_computes_no_more_outside_the_snapshot_than_sgd(name):
    def weight_sized(optimizer_name):
        entry = _entry_computation(_optimized_hlo(*_built(optimizer_name)))
        return sorted(re.sub(r"%[\w.-]+", "%", line.split("=", 1)[1].split("(", 1)[0]).strip()
                      for line in entry if WEIGHT_SIZED.search(line))

    sgd = weight_sized("SGD")
    assert sgd  # SGD's own update of each weight
    assert weight_sized(name) == sgd


@pytest.mark.skipif(BACKEND != "tensorflow", reason="AutoGraph is TensorFlow's")
@pytest.mark.parametrize("name", ["SWA", "SWAG"])
def test_autograph_converts_every_method(name):
    import tensorflow as tf

    optimizer, weights, grads = _built(name)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        # A custom training step: AutoGraph converts what it calls.
        @tf.function
        def step(g):
            optimizer.apply(g, weights)

        step([tf.constant(g) for g in grads])
    finally:
        logger.removeHandler(handler)
    assert [m for m in messages if "AutoGraph" in m] == []
    assert optimizer.snapshot_count == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(optimizer.average_variables[0]), 0.99)
