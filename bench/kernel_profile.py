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
(under XLA, whose fusion numbers change from program to program, the extra
runs per step of each kind of kernel, see `added_by_kind`). The
table gives their time per step and `1 + added / bare kernel time`, the
ratio of kernel time per step. It bounds the step-time ratio from above, as
the step also spends time outside kernels (Python, the input pipeline) that
all variants share. Writes results/profile-tensorflow.json.

    KERAS_BACKEND=tensorflow python bench/kernel_profile.py [--steps 20]
"""

import argparse
import collections
import pathlib
import re
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


def added_by_kind(times: dict, counts: dict, bare_counts: dict) -> dict:
    """Under XLA: for each kernel kind that runs more often per step than in
    the bare run, the extra runs at the variant's mean time per run of that
    kind (a renumbered kernel that runs as often adds nothing)."""
    def by_kind(values):
        grouped = collections.Counter()
        for name, value in values.items():
            grouped[xla_kind(name)] += value
        return grouped

    times, counts = by_kind(times), by_kind(counts)
    bare_counts = by_kind(bare_counts)
    added = {}
    for kind, count in counts.items():
        extra = count - bare_counts.get(kind, 0.0)
        if extra > 1e-9:
            added[kind] = extra * times[kind] / count
    return added


def kernel_times(logdir: pathlib.Path, steps: int) -> tuple:
    """Milliseconds per step of each kernel name in a trace, and how many
    times per step each ran."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    (path,) = logdir.glob("**/*.xplane.pb")
    space.ParseFromString(path.read_bytes())
    times, counts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            # Kernels run on TensorFlow's compute and Eigen threads.
            if not line.name.startswith(("tf_Compute", "tf_numa")):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if not NOT_KERNELS.search(name):
                    times[same_in_every_session(name)] += event.duration_ps / 1e9 / steps
                    counts[same_in_every_session(name)] += 1 / steps
    return times, counts


def trace(spec: dict, variant: str, jit_compile: bool, x, y, steps: int) -> tuple:
    import tensorflow as tf

    keras.backend.clear_session()
    model = overhead.build(spec, overhead.variants()[variant], jit_compile)
    model.fit(x, y, epochs=1, **overhead.fit_options(spec))  # warm-up: tracing and compilation
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(x, y, epochs=1, **overhead.fit_options(spec))
        tf.profiler.experimental.stop()
        return kernel_times(pathlib.Path(logdir), steps)


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
            traces = {variant: trace(spec, variant, jit_compile, x, y, arguments.steps) for variant in VARIANTS}
            bare, bare_counts = traces["SGD"]
            for variant, (times, counts) in traces.items():
                if jit_compile:
                    added = added_by_kind(times, counts, bare_counts)
                else:
                    added = {name: ms for name, ms in times.items() if name not in bare}
                results.append(
                    dict(
                        model=model_name, jit_compile=jit_compile, variant=variant,
                        kernel_ms=sum(times.values()), added_ms=sum(added.values()),
                        ratio=1 + sum(added.values()) / sum(bare.values()),
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
