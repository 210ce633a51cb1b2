"""Step-time cost of SWA against every peer, measured side by side.

For each model, every variant (bare SGD and Adam, SWA around each with
average_period 1, 10 and 100, and Keras's built-in EMA) is built and warmed
up; then one-epoch repetitions are timed (the epoch alone, without `fit`'s
set-up) in an interleaved, shuffled order so that machine noise hits all
variants alike. Prints a table of median step times
and of ratios to the bare inner optimizer, and writes
results/overhead-<backend>.json.

    KERAS_BACKEND=jax python bench/overhead.py [--reps 7] [--steps 10]
"""

import argparse
import random
import time

import common  # noqa: F401  (sets the environment first)
import keras
import numpy as np

from kerasswa import SWA

MODELS = {
    # The reference model of the issue: 3 Dense layers of 1024, 3.1M parameters, batch 256.
    "mlp-3M": dict(inputs=1024, layers=[1024, 1024, 1024], batch=256),
    # Few FLOPs per parameter: one 4096x4096 layer (16.8M parameters), batch 8,
    # where the optimizer's own work dominates the step.
    "wide-16M": dict(inputs=4096, layers=[4096], batch=8),
}


def variants():
    sgd = lambda: keras.optimizers.SGD(0.01)  # noqa: E731
    adam = lambda: keras.optimizers.Adam(1e-4)  # noqa: E731
    found = {"SGD": sgd, "Adam": adam, "SGD + Keras EMA": lambda: keras.optimizers.SGD(0.01, use_ema=True)}
    for inner_name, inner in (("SGD", sgd), ("Adam", adam)):
        for period in (1, 10, 100):
            found[f"SWA({inner_name}) k={period}"] = (
                lambda inner=inner, period=period: SWA(inner(), start_averaging=0, average_period=period)
            )
    return found


def reference_of(variant):
    return "Adam" if "Adam" in variant else "SGD"


def random_data(spec, steps, rng):
    """Inputs and targets for `steps` batches of the model `spec`."""
    x = rng.normal(size=(spec["batch"] * steps, spec["inputs"])).astype("float32")
    y = rng.normal(size=(spec["batch"] * steps, spec["layers"][-1])).astype("float32")
    return x, y


def fit_options(spec):
    """`fit` arguments for one timed epoch: fixed batch order, no output."""
    return dict(batch_size=spec["batch"], shuffle=False, verbose=0)


def build(spec, make_optimizer, jit_compile):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((spec["inputs"],))]
    layers += [keras.layers.Dense(units, activation="relu") for units in spec["layers"][:-1]]
    layers.append(keras.layers.Dense(spec["layers"][-1]))
    model = keras.Sequential(layers)
    model.compile(optimizer=make_optimizer(), loss="mse", jit_compile=jit_compile)
    return model


class EpochTimer(keras.callbacks.Callback):
    """Wall time and process CPU time of the last epoch: `fit`'s own set-up is
    left out, and the epoch's end waits for the device (its logs are read
    back; on a GPU, the last update too). CPU time, summed over threads,
    hardly moves when another process shares the machine, so its ratios
    cross-check the wall-time ones."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        common.synchronize(self.model.trainable_variables + self.model.optimizer.variables)
        self.seconds = (time.perf_counter() - self.start[0], time.process_time() - self.start[1])


def runner(backend, spec, make_optimizer, jit_compile, x, y):
    """A function that trains one epoch and returns its seconds."""
    fit = fit_options(spec)
    if backend == "jax" and make_optimizer().use_ema:
        # Keras 3.15 on JAX: a model with `use_ema=True` fails its second
        # `fit`, so each repetition builds a new one and times its second
        # epoch (the first compiles).
        def run():
            timer = EpochTimer()
            build(spec, make_optimizer, jit_compile).fit(x, y, epochs=2, callbacks=[timer], **fit)
            return timer.seconds

        return run
    model = build(spec, make_optimizer, jit_compile)
    model.fit(x, y, epochs=1, **fit)  # warm-up: tracing and compilation

    def run():
        timer = EpochTimer()
        model.fit(x, y, epochs=1, callbacks=[timer], **fit)
        return timer.seconds

    return run


def measure(backend, jit_settings, reps, steps, models=None, names=None):
    """Median step times of each model (`models`, default `MODELS`; a spec's
    "steps" overrides `steps`) and variant (`names`, default all of
    `variants()`) under each `jit_compile` setting."""
    rng = np.random.default_rng(0)
    results = []
    for model_name, spec in (MODELS if models is None else models).items():
        model_steps = spec.get("steps", steps)
        x, y = random_data(spec, model_steps, rng)
        for jit_compile in jit_settings:
            runs = {
                name: runner(backend, spec, make, jit_compile, x, y)
                for name, make in variants().items()
                if names is None or name in names
            }
            times = {name: [] for name in runs}
            cpu_times = {name: [] for name in runs}
            order = list(runs)
            for _ in range(reps):
                random.shuffle(order)
                for name in order:
                    wall, cpu = runs[name]()
                    times[name].append(wall / model_steps)
                    cpu_times[name].append(cpu / model_steps)
            for name, values in times.items():
                median, spread = common.median_and_spread(values)
                reference = common.median_and_spread(times[reference_of(name)])[0]
                ratios = [v / r for v, r in zip(values, times[reference_of(name)])]
                cpu = common.median_and_spread(cpu_times[name])[0]
                results.append(
                    dict(
                        backend=backend, model=model_name, jit_compile=jit_compile, variant=name,
                        step_ms=median * 1e3, spread_ms=spread * 1e3, ratio=median / reference,
                        ratio_spread=common.median_and_spread(ratios)[1], cpu_ms=cpu * 1e3,
                        cpu_ratio=cpu / common.median_and_spread(cpu_times[reference_of(name)])[0],
                    )
                )
            print(f"{backend} {model_name} jit_compile={jit_compile}: done", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    arguments = parser.parse_args()
    backend = keras.config.backend()
    # torch.compile takes minutes per model here; PyTorch is timed eagerly.
    jit_settings = [False] if backend == "torch" else [True, False]
    results = measure(backend, jit_settings, arguments.reps, arguments.steps)
    print(
        common.table(
            ["model", "jit", "variant", "step ms (IQR)", "ratio to bare inner", "CPU-time ratio"],
            [
                (r["model"], r["jit_compile"], r["variant"], f"{r['step_ms']:.2f} ({r['spread_ms']:.2f})",
                 f"{r['ratio']:.3f}", f"{r['cpu_ratio']:.3f}")
                for r in results
            ],
        )
    )
    common.write(f"overhead-{backend}", dict(results=results, reps=arguments.reps, steps=arguments.steps))


if __name__ == "__main__":
    main()
