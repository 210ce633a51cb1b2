"""What one snapshot costs, against the memory bound, and what a step
without one costs: measured directly rather than as the difference of two
noisy epoch times.

1. Snapshot cost. A snapshot reads each weight and its average and writes the
   average back: 12 bytes per float32 parameter, the least any implementation
   can move (Keras's EMA moves the same per step). SWAG also reads and writes
   its mean of squares (8 bytes more) and, with `max_rank` > 0, writes one
   deviation row after reading the new average (8 more). `take_snapshot()`
   runs on the weights of overhead.py's `wide-16M` model (a 4096x4096 Dense,
   16.8M parameters) the way `fit` runs it: eagerly on PyTorch, as graph
   kernels (the same as eager ones) and under XLA on TensorFlow, under
   `jax.jit` with the state donated on JAX. Each variant runs through the
   backend kernels of `kerasswa._kernels` ("fused") and through the
   `keras.ops` reference (`_kernels.FUSED = False`, what kerasswa did
   before), side by side, against SGD's own update of the same weights and
   against the memory bound: those bytes over the bandwidth of NumPy's
   `a += b`, measured in the same process.
2. Per-step cost between snapshots, where Python runs every step (PyTorch
   eager and JAX with `jit_compile=False`): during `fit` on each model of
   overhead.py, the time spent in `SWA.apply` outside the inner optimizer's
   `apply` (wall time, and CPU time of the calling thread), with snapshots
   turned off (`start_averaging` past the end), over the bare SGD step, and
   the same for a wrapper that only forwards (its wall time is the thread
   waiting for a core that the backend's threads hold).
   Under `tf.function` and `jit` that work is in the compiled step:
   bench/kernel_profile.py reads it for TensorFlow.

Writes results/snapshot-<backend>.json.

    KERAS_BACKEND=torch python bench/snapshot.py [--reps 25] [--step-reps 10]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import time

import common  # noqa: F401  (sets the environment first)
import keras
import numpy as np
import overhead

from kerasswa import SWA, SWAG, _kernels

FLOAT_BYTES = 4
# Each variant, and the reads plus writes per parameter a snapshot of it must make.
VARIANTS = {
    "SWA mean": (lambda: SWA(keras.optimizers.SGD(0.01), start_averaging=None), 3),
    "SWA EMA": (lambda: SWA(keras.optimizers.SGD(0.01), start_averaging=None, averaging=0.99), 3),
    "SWAG diagonal": (lambda: SWAG(keras.optimizers.SGD(0.01), start_averaging=None, max_rank=0), 5),
    "SWAG max_rank=5": (lambda: SWAG(keras.optimizers.SGD(0.01), start_averaging=None, max_rank=5), 7),
}


def memory_bandwidth(nbytes: int, reps: int) -> float:
    """Bytes per second moved by NumPy's `a += b` on float32 arrays of `nbytes`
    each (it reads both and writes `a`, the traffic of a snapshot), the best
    of one thread and of one thread per CPU, each on a slice (NumPy releases
    the GIL for such loops)."""
    rng = np.random.default_rng(0)
    a = rng.random(nbytes // 4, dtype=np.float32)
    b = rng.random(nbytes // 4, dtype=np.float32)
    threads = os.cpu_count() or 1
    slices = [slice(i * len(a) // threads, (i + 1) * len(a) // threads) for i in range(threads)]

    def add(part):
        np.add(a[part], b[part], out=a[part])

    best = float("inf")
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in range(reps):
            for parallel in (False, True):
                start = time.perf_counter()
                if parallel:
                    list(pool.map(add, slices))
                else:
                    add(slice(None))
                best = min(best, time.perf_counter() - start)
    return 3 * nbytes / best


def wait_for(values) -> None:
    """Waits until the work queued on `values` (arrays or variables) is done
    (`common.synchronize`)."""
    common.synchronize(values)


def timed(function, state, reps: int, calls: int = 1) -> float:
    """Median seconds of one `function()`, over `reps` timings of `calls`
    calls in a row, each timing waited for (`state()` gives what to wait
    for). On a GPU, `calls` > 1 lets the launches of one call overlap the
    work of the one before, as they do between the steps of `fit`."""
    function()
    wait_for(state())
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        wait_for(state())
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def compiled_snapshot(optimizer):
    """A snapshot as `fit` runs it under `jit_compile=True`: inside one
    compiled program (JAX: `jax.jit` with the state donated, as Keras's JAX
    trainer donates it, so that XLA may update it in place; TensorFlow:
    `tf.function(jit_compile=True)`). Returns the function and what to wait for."""
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        snapshot = tf.function(optimizer.take_snapshot, jit_compile=True, autograph=False)
        return snapshot, optimizer._snapshot_state
    import jax

    jitted = jax.jit(optimizer._snapshot_values_of, donate_argnums=0)
    current = [v.value for v in optimizer._snapshot_state()]

    def snapshot():
        current[:] = jitted(list(current), [w.value for w in optimizer._trainable_variables])

    return snapshot, lambda: current


def compiled_sgd(sgd, gradients, weights):
    """SGD's update of `weights` compiled the same way, as the reference."""
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda: sgd.apply(gradients, weights), jit_compile=True, autograph=False), lambda: weights
    import jax

    def update(weight_values, optimizer_values):
        return sgd.stateless_apply(optimizer_values, gradients, weight_values)

    jitted = jax.jit(update, donate_argnums=(0, 1))
    # Copies: what is donated is deleted, and the weights serve the snapshots next.
    current = [[keras.ops.copy(w.value) for w in weights], [keras.ops.copy(v.value) for v in sgd.variables]]

    def step():
        current[:] = jitted(*current)

    return step, lambda: current[0]


def modes(backend: str) -> list:
    """How `fit` runs a step on `backend`: eagerly on PyTorch; compiled on
    JAX; in a graph (the same kernels as eagerly) or under XLA on TensorFlow."""
    return {"torch": ["eager"], "jax": ["XLA"], "tensorflow": ["eager", "XLA"]}[backend]


def snapshot_costs(backend: str, reps: int, bandwidth: float, shape=(4096, 4096), calls: int = 1) -> list:
    """Each variant's snapshot of one float32 weight of `shape` (and SGD's
    update of it), timed as `timed` does with `reps` and `calls`, against
    the memory bound at `bandwidth` bytes per second."""
    parameters = int(np.prod(shape))
    rng = np.random.default_rng(1)
    rows = []
    for mode in modes(backend):
        weights = [keras.Variable(rng.standard_normal(size=shape, dtype=np.float32))]
        gradients = [keras.ops.convert_to_tensor(rng.standard_normal(size=shape, dtype=np.float32))]
        sgd = keras.optimizers.SGD(0.01)
        sgd.build(weights)
        if mode == "eager":
            sgd_seconds = timed(lambda: sgd.apply(gradients, weights), lambda: weights, reps, calls)
        else:
            sgd_seconds = timed(*compiled_sgd(sgd, gradients, weights), reps, calls)

        def row(variant, kernels, seconds, words):
            bound = words * FLOAT_BYTES * parameters / bandwidth
            return dict(mode=mode, variant=variant, kernels=kernels, seconds=seconds, bound_seconds=bound,
                        over_bound=seconds / bound, in_sgd_updates=seconds / sgd_seconds)

        rows.append(row("SGD update (reference)", "", sgd_seconds, 3))
        # On JAX every snapshot is the keras.ops reference, fused by XLA.
        for name, (make, words) in VARIANTS.items():
            for fused in ([True] if backend == "jax" else [False, True]):
                _kernels.FUSED = fused
                optimizer = make()
                optimizer.build(weights)
                if mode == "eager":
                    seconds = timed(optimizer.take_snapshot, optimizer._snapshot_state, reps, calls)
                else:
                    seconds = timed(*compiled_snapshot(optimizer), reps, calls)
                kernels = "XLA" if backend == "jax" else ("fused" if fused else "keras.ops")
                rows.append(row(name, kernels, seconds, words))
                del optimizer
        _kernels.FUSED = True
    return rows


class ApplyTimer:
    """Time spent inside `SWA.apply` and inside the inner optimizer's `apply`,
    summed over the calls made while `active`: wall time, and the CPU time of
    the calling thread (what SWA's Python costs, however long the thread waits
    for a core that the backend's compute threads hold)."""

    CLOCKS = (time.perf_counter, time.thread_time)

    def __init__(self, optimizer):
        self.reset()
        self.active = False
        self._wrap(optimizer, "swa")
        self._wrap(optimizer.inner_optimizer, "inner")

    def reset(self):
        self.totals = {"swa": [0.0, 0.0], "inner": [0.0, 0.0]}
        self.calls = 0

    def own(self) -> list:
        """SWA's own seconds per call outside the inner `apply`: [wall, CPU]."""
        return [(s - i) / max(self.calls, 1) for s, i in zip(self.totals["swa"], self.totals["inner"])]

    def _wrap(self, target, field):
        original = target.apply

        def apply(*args, **kwargs):
            start = [clock() for clock in self.CLOCKS]
            result = original(*args, **kwargs)
            if self.active:
                for i, clock in enumerate(self.CLOCKS):
                    self.totals[field][i] += clock() - start[i]
                self.calls += field == "swa"
            return result

        target.apply = apply


class Forwarding(SWA):
    """An SWA that only forwards each update to the inner optimizer: what
    `ApplyTimer` reads for a wrapper that does no work of its own (the wall
    time a Python thread spends waiting for a core while the backend's
    threads run the queued step)."""

    def apply(self, grads, trainable_variables=None):
        self.inner_optimizer.apply(grads, trainable_variables)


def step_costs(backend: str, reps: int, steps: int) -> list:
    """The per-step work of SWA between snapshots where Python runs every
    step, over the bare SGD step, beside that of a wrapper that only
    forwards."""
    jit_compile = False  # on PyTorch, eager; on JAX, `stateless_apply` op by op
    rows = []
    rng = np.random.default_rng(2)
    for model_name, spec in overhead.MODELS.items():
        x, y = overhead.random_data(spec, steps, rng)
        bare = overhead.build(spec, lambda: keras.optimizers.SGD(0.01), jit_compile)
        swa = overhead.build(
            spec, lambda: SWA(keras.optimizers.SGD(0.01), start_averaging=10**9, average_period=1), jit_compile
        )
        forwarding = overhead.build(spec, lambda: Forwarding(keras.optimizers.SGD(0.01)), jit_compile)
        timers = {model: ApplyTimer(model.optimizer) for model in (swa, forwarding)}
        options = overhead.fit_options(spec)
        for model in (bare, swa, forwarding):
            model.fit(x, y, epochs=1, **options)  # warm-up
        bare_times, own = [], {model: [] for model in timers}
        for _ in range(reps):
            epoch = overhead.EpochTimer()
            bare.fit(x, y, epochs=1, callbacks=[epoch], **options)
            bare_times.append(epoch.seconds[0] / steps)
            for model, timer in timers.items():
                timer.reset()
                timer.active = True
                model.fit(x, y, epochs=1, **options)
                timer.active = False
                own[model].append(timer.own())
        bare_step = statistics.median(bare_times)
        wall, cpu = (statistics.median(values) for values in zip(*own[swa]))
        floor_wall, floor_cpu = (statistics.median(values) for values in zip(*own[forwarding]))
        rows.append(dict(
            backend=backend, model=model_name, jit_compile=jit_compile, bare_step_ms=bare_step * 1e3,
            swa_own_ms=wall * 1e3, swa_own_cpu_ms=cpu * 1e3, fraction=wall / bare_step, cpu_fraction=cpu / bare_step,
            forwarding_ms=floor_wall * 1e3, forwarding_cpu_ms=floor_cpu * 1e3,
        ))
        print(f"{backend} {model_name}: SWA's own work per step {wall * 1e3:.3f} ms wall, {cpu * 1e3:.3f} ms CPU "
              f"(a forwarding wrapper: {floor_wall * 1e3:.3f} ms wall, {floor_cpu * 1e3:.3f} ms CPU), "
              f"over a {bare_step * 1e3:.2f} ms step", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=25, help="snapshots timed per variant")
    parser.add_argument("--step-reps", type=int, default=10, help="epochs timed per model for the step cost")
    parser.add_argument("--steps", type=int, default=10)
    arguments = parser.parse_args()
    backend = keras.config.backend()
    bandwidth = memory_bandwidth(64 * 2**20, reps=20)
    snapshots = snapshot_costs(backend, arguments.reps, bandwidth)
    print(f"memory bandwidth (NumPy a += b): {bandwidth / 1e9:.2f} GB/s")
    print(common.table(
        ["mode", "variant", "kernels", "ms", "memory bound ms", "x bound", "in SGD updates"],
        [(r["mode"], r["variant"], r["kernels"], f"{r['seconds'] * 1e3:.2f}", f"{r['bound_seconds'] * 1e3:.2f}",
          f"{r['over_bound']:.2f}", f"{r['in_sgd_updates']:.2f}") for r in snapshots],
    ))
    steps = step_costs(backend, arguments.step_reps, arguments.steps) if backend in ("torch", "jax") else []
    common.write(f"snapshot-{backend}", dict(
        backend=backend, bandwidth=bandwidth, snapshots=snapshots, steps=steps,
        reps=arguments.reps, step_reps=arguments.step_reps, step_count=arguments.steps,
    ))


if __name__ == "__main__":
    main()
