"""Wall time of a training step when no snapshot is due, against bare SGD.

SWA promises no work between snapshots. This measures what a user sees of
that promise: the wall time of `fit` steps with `SWA(SGD, average_period=100)`
(a snapshot every 100 updates), with `SWA(SGD, start_averaging=None)` (SWA
present, never due: no snapshot is ever taken), with SWAG at the same period
(20 deviations), and with the bare SGD they wrap, on compiled steps (TensorFlow with XLA, JAX `jit`).
Three models: the two of overhead.py, and deep-120, sixty Dense layers of 64
(120 variables, 0.25M parameters), whose steps are short and whose variables
are many, so that a cost per variable shows.

Noise on a shared two-core machine is several percent from one block of steps
to the next, larger than the effect looked for, so the design is paired:
each round times one block of steps of every variant (the epoch alone,
without `fit`'s set-up), in a new random order, and each variant's block is
divided by the bare SGD block of the same round; the rounds are split into
sessions, each with every variant built anew (see MODELS). The table gives the median
of those paired ratios over the rounds with a 95% interval for it (the order
statistics that bracket a median, from the binomial distribution), the
median step time, and the ratio of process CPU time (summed over threads, it
moves less with the rest of the machine).

    KERAS_BACKEND=tensorflow python bench/step_wall.py [--models mlp-3M,wide-16M,deep-120]

`--sessions N` gives the models measured N sets of builds, with as many
rounds per set as MODELS gives (more rounds, a narrower interval); `--update`
replaces only the measured models' rows in the results file, keeping the
others and the commands that made them.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

import common  # noqa: F401  (sets the environment first)
import keras
import numpy as np
from overhead import MODELS, EpochTimer, build, fit_options, random_data

from kerasswa import SWA, SWAG

VARIANTS = {
    "SGD": lambda: keras.optimizers.SGD(0.01),
    "SWA never due": lambda: SWA(keras.optimizers.SGD(0.01), start_averaging=None),
    "SWA k=100": lambda: SWA(keras.optimizers.SGD(0.01), start_averaging=0, average_period=100),
    "SWAG k=100": lambda: SWAG(keras.optimizers.SGD(0.01), start_averaging=0, average_period=100),
}

# Each model's block of steps (about a second on two cores), its rounds, and
# the sessions they are split into: each session builds every variant anew.
# Two builds of one model can differ by a percent or two in speed (bare SGD's
# mlp-3M step took 19.7 ms in one run of this script and 20.4 ms in the next),
# which pairing within one build cannot remove; twelve sets of builds
# average it out (with six, SWA k=100 on wide-16M gave medians of 1.013 and
# 1.001 in two runs). deep-120's effect is twenty times that: one set serves.
MODELS = dict(
    {name: dict(spec, steps=40, rounds=72, sessions=12) for name, spec in MODELS.items()},
    **{"deep-120": dict(inputs=64, layers=[64] * 60, batch=32, steps=300, rounds=12, sessions=1)},
)


def median_interval(values, confidence=0.95):
    """The median of `values` and the order statistics that bracket it with
    at least `confidence` (distribution-free: the rank of each bound comes
    from the binomial(n, 1/2) distribution)."""
    ordered = sorted(values)
    n = len(ordered)
    # The largest k with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2.
    tail = (1 - confidence) / 2
    cumulative, k = 0.0, 0
    while k < n:
        probability = math.comb(n, k) / 2**n
        if cumulative + probability > tail:
            break
        cumulative += probability
        k += 1
    low, high = ordered[max(k - 1, 0)], ordered[min(n - k, n - 1)]
    return statistics.median(ordered), low, high


def measure(spec, rng):
    steps = spec["steps"]
    x, y = random_data(spec, steps, rng)
    seconds = {name: [] for name in VARIANTS}
    cpu_seconds = {name: [] for name in VARIANTS}
    for _ in range(spec["sessions"]):
        models = {name: build(spec, make, jit_compile=True) for name, make in VARIANTS.items()}
        for model in models.values():  # tracing and compilation
            model.fit(x, y, epochs=1, **fit_options(spec))
        order = list(models)
        for _ in range(spec["rounds"] // spec["sessions"]):
            random.shuffle(order)
            for name in order:
                timer = EpochTimer()
                models[name].fit(x, y, epochs=1, callbacks=[timer], **fit_options(spec))
                seconds[name].append(timer.seconds[0] / steps)
                cpu_seconds[name].append(timer.seconds[1] / steps)
        # The snapshots of the k=100 variant over the session, as a check.
        snapshots = models["SWA k=100"].optimizer.snapshot_count
    rows = []
    for name, values in seconds.items():
        ratios = [v / b for v, b in zip(values, seconds["SGD"])]
        ratio, low, high = median_interval(ratios)
        cpu_ratio = statistics.median(cpu_seconds[name]) / statistics.median(cpu_seconds["SGD"])
        rows.append(
            dict(variant=name, step_ms=statistics.median(values) * 1e3, ratio=ratio, low=low, high=high, cpu_ratio=cpu_ratio)
        )
    return rows, snapshots


def launch_cost(count=120, calls=300, repetitions=9):
    """Microseconds a compiled function's call costs per small state
    variable it writes: one that updates `count` variables of 64 x 64 against
    one that updates a single one, the work itself negligible (TensorFlow: a
    `tf.function` that XLA compiles, as Keras's step; JAX: `jax.jit` with the
    state donated, as Keras's trainer runs it)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        state = [tf.Variable(tf.zeros((64, 64))) for _ in range(count + 1)]

        def program(variables):
            @tf.function(jit_compile=True, autograph=False)  # plain Python loop: nothing to convert
            def step():
                for variable in variables:
                    variable.assign_add(tf.ones((64, 64)))

            return step

        one, many = program(state[:1]), program(state[1:])
    else:
        import jax

        update = jax.jit(lambda arrays: [a + 1.0 for a in arrays], donate_argnums=0)
        boxes = {"one": [jax.numpy.zeros((64, 64))], "many": [jax.numpy.zeros((64, 64)) for _ in range(count)]}

        def runner(key):
            def step():
                boxes[key] = update(boxes[key])

            return step

        one, many = runner("one"), runner("many")

    def seconds_per_call(function):
        for _ in range(20):
            function()
        common.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            function()
        if backend == "jax":
            jax.block_until_ready(boxes)
        return (time.perf_counter() - start) / calls

    differences = []
    for _ in range(repetitions):
        differences.append(seconds_per_call(many) - seconds_per_call(one))
    return statistics.median(differences) / (count - 1) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sessions", type=int, help="sets of builds per model (default: MODELS's)")
    parser.add_argument("--update", action="store_true", help="keep the other models' rows of the results file")
    arguments = parser.parse_args()
    names = arguments.models.split(",")
    specs = {name: dict(MODELS[name]) for name in names}
    if arguments.sessions:
        for spec in specs.values():
            spec["rounds"] = spec["rounds"] // spec["sessions"] * arguments.sessions
            spec["sessions"] = arguments.sessions
    backend = keras.config.backend()
    random.seed(0)
    rng = np.random.default_rng(0)
    results = []
    for model_name in names:
        start = time.perf_counter()
        rows, snapshots = measure(specs[model_name], rng)
        for row in rows:
            results.append(dict(row, backend=backend, model=model_name, snapshots=snapshots))
        print(f"{backend} {model_name}: {time.perf_counter() - start:.0f} s", flush=True)
    per_variable = launch_cost()
    print(f"{backend}: a compiled call costs {per_variable:.2f} microseconds per small state variable it writes")
    print(
        common.table(
            ["model", "variant", "step ms", "ratio to SGD (95% interval)", "CPU-time ratio"],
            [
                (r["model"], r["variant"], f"{r['step_ms']:.2f}",
                 f"{r['ratio']:.3f} ({r['low']:.3f}-{r['high']:.3f})", f"{r['cpu_ratio']:.3f}")
                for r in results
            ],
        )
    )
    payload = dict(results=results, launch_us_per_variable=per_variable, models=specs)
    earlier = common.load(f"step-wall-{backend}") if arguments.update else None
    if earlier:
        order = list(MODELS).index
        kept = [row for row in earlier["results"] if row["model"] not in specs]
        payload["results"] = sorted(kept + results, key=lambda row: order(row["model"]))  # stable
        models = {**earlier["models"], **specs}
        payload["models"] = {name: models[name] for name in sorted(models, key=order)}
        payload["earlier_commands"] = earlier.get("earlier_commands", []) + [earlier["command"]]
    common.write(f"step-wall-{backend}", payload)


if __name__ == "__main__":
    main()
