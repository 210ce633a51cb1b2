"""Where the step time goes: TensorFlow's profiler, kernel by kernel.

Wall-clock ratios on a shared 2-core machine carry a few percent of noise,
more than the 1% a target allows. A profiler trace does not: it records how
long every kernel (a TensorFlow op, or an XLA fusion under `jit_compile`)
ran, so the time SWA adds can be read off directly instead of as a
difference of two noisy totals.

For each model and `jit_compile` setting, every variant is built in a fresh
Keras session (so that op names match across variants), warmed up, and one
epoch is traced with `tf.profiler`. The kernels of a variant whose names the
bare inner optimizer's trace lacks are the ones it added: the averaging
(under XLA, whose fusion numbers change from program to program, the runs
of each kind of kernel beyond the bare run's, see `added_by_kind`). The
table gives their time per step and `1 + added / bare kernel time`, the
ratio of kernel time per step. It bounds the step-time ratio from above, as
the step also spends time outside kernels (Python, the input pipeline) that
all variants share. Writes results/profile-tensorflow.json.

    KERAS_BACKEND=tensorflow python bench/kernel_profile.py [--steps 20]
"""

import argparse
import collections
import itertools
import pathlib
import re
import statistics
import tempfile

import common  # noqa: F401  (sets the environment first)
import keras
import numpy as np
import overhead

VARIANTS = ["SGD", "SGD + Keras EMA", "SWA(SGD) k=1", "SWA(SGD) k=10", "SWA(SGD) k=100"]

# Events that are not kernels: executor and thread-pool bookkeeping, and
# XLA's control-flow thunks, whose time is that of the kernels they run.
NOT_KERNELS = re.compile(
    r"^(Executor|CpuExecutable|BlockUntil|ThunkExecutor|SlinkyThreadPool|end: )|^(cond|while)(\.\d+)?$"
)


def same_in_every_session(name: str) -> str:
    """An op name without the numbers Keras appends to the scopes of a second
    model or optimizer (`sgd_1/Mul_3` -> `sgd/Mul_3`); the op's own number stays."""
    *scopes, op = name.split("/")
    return "/".join([re.sub(r"_\d+$", "", scope) for scope in scopes] + [op])


def xla_kind(name: str) -> str:
    """The kind of an XLA kernel (`multiply_subtract_fusion.3` ->
    `multiply_subtract_fusion`). XLA numbers the fusions of each program
    anew, so the same SGD update may carry another number once SWA's kernels
    are in the program: under XLA only kinds compare across variants."""
    return re.sub(r"\.\d+$", "", name)


def added_by_kind(durations: dict, bare_durations: dict, steps: int) -> dict:
    """Under XLA: milliseconds per step added by each kernel kind that runs
    more often than in the bare run. Each bare run of the kind is matched
    with a run of the variant as close in duration as it can be (`leftover`);
    the runs left over are the added ones. (A renumbered kernel that runs as
    often adds nothing; a scalar copy added beside copies of weight matrices
    counts as the microseconds it takes, not as an average copy.)"""
    def by_kind(values):
        grouped = collections.defaultdict(list)
        for name, runs in values.items():
            grouped[xla_kind(name)] += runs
        return grouped

    bare = by_kind(bare_durations)
    added = {}
    for kind, runs in by_kind(durations).items():
        if len(runs) > len(bare.get(kind, [])):
            added[kind] = leftover(bare.get(kind, []), runs) / steps
    return added


def leftover(bare: list, variant: list) -> float:
    """The total duration of the runs of `variant` left unmatched when each
    run of `bare` (no more of them) is matched with one of `variant`, so that
    the matched durations differ by as little as possible in sum.

    Sorted, an optimal matching never crosses, so a dynamic programme over
    the two sorted lists finds it: `cost[j]` is the least total difference
    with the first `i` bare runs matched among the first `j` variant runs,
    and `left[j]` the duration left unmatched on that path."""
    bare, variant = sorted(bare), sorted(variant)
    inf = float("inf")
    cost = [0.0] * (len(variant) + 1)
    left = [0.0] + list(itertools.accumulate(variant))
    for b in bare:
        new_cost, new_left = [inf] * (len(variant) + 1), [0.0] * (len(variant) + 1)
        for j, v in enumerate(variant, start=1):
            skip = (new_cost[j - 1], new_left[j - 1] + v)
            match = (cost[j - 1] + abs(v - b), left[j - 1])
            new_cost[j], new_left[j] = min(skip, match)
        cost, left = new_cost, new_left
    return left[-1]


def per_step(runs: list, steps: int) -> float:
    """Milliseconds per step of one kernel: its median duration times its
    runs per step (a run that the OS preempted would otherwise count for a
    hundred runs of a scalar op)."""
    return statistics.median(runs) * len(runs) / steps


def kernel_times(logdir: pathlib.Path) -> dict:
    """The duration in milliseconds of every run of each kernel in a trace,
    by kernel name."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    (path,) = logdir.glob("**/*.xplane.pb")
    space.ParseFromString(path.read_bytes())
    durations = collections.defaultdict(list)
    for plane in space.planes:
        for line in plane.lines:
            # Kernels run on TensorFlow's compute and Eigen threads.
            if not line.name.startswith(("tf_Compute", "tf_numa")):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if not NOT_KERNELS.search(name):
                    durations[same_in_every_session(name)].append(event.duration_ps / 1e9)
    return durations


def trace(spec: dict, variant: str, jit_compile: bool, x, y) -> dict:
    import tensorflow as tf

    keras.backend.clear_session()
    model = overhead.build(spec, overhead.variants()[variant], jit_compile)
    model.fit(x, y, epochs=1, **overhead.fit_options(spec))  # warm-up: tracing and compilation
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(x, y, epochs=1, **overhead.fit_options(spec))
        tf.profiler.experimental.stop()
        return kernel_times(pathlib.Path(logdir))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    arguments = parser.parse_args()
    if keras.config.backend() != "tensorflow":
        raise SystemExit("bench/kernel_profile.py reads TensorFlow's profiler: run it with KERAS_BACKEND=tensorflow")
    rng = np.random.default_rng(0)
    results = []
    for model_name, spec in overhead.MODELS.items():
        x, y = overhead.random_data(spec, arguments.steps, rng)
        for jit_compile in (True, False):
            traces = {variant: trace(spec, variant, jit_compile, x, y) for variant in VARIANTS}
            bare = traces["SGD"]
            bare_ms = sum(map(sum, bare.values())) / arguments.steps
            for variant, durations in traces.items():
                if jit_compile:
                    added = added_by_kind(durations, bare, arguments.steps)
                else:
                    added = {name: per_step(runs, arguments.steps) for name, runs in durations.items() if name not in bare}
                results.append(
                    dict(
                        model=model_name, jit_compile=jit_compile, variant=variant,
                        kernel_ms=sum(map(sum, durations.values())) / arguments.steps,
                        added_ms=sum(added.values()),
                        ratio=1 + sum(added.values()) / bare_ms,
                        added=dict(collections.Counter(added).most_common(4)),
                    )
                )
            print(f"profiled {model_name} jit_compile={jit_compile}", flush=True)
    print(
        common.table(
            ["model", "jit", "variant", "kernel ms/step", "added ms/step", "kernel-time ratio", "largest added"],
            [
                (r["model"], r["jit_compile"], r["variant"], f"{r['kernel_ms']:.2f}", f"{r['added_ms']:.3f}",
                 f"{r['ratio']:.3f}", ", ".join(f"{n} {ms:.2f}" for n, ms in list(r["added"].items())[:2]))
                for r in results
            ],
        )
    )
    common.write("profile-tensorflow", dict(results=results, steps=arguments.steps))


if __name__ == "__main__":
    main()
