"""kerasswa's costs on a GPU: the measuring half of bench/gpu/run.sh.

`bench` runs on the Keras backend of its process (`KERAS_BACKEND`, jax or
torch) and writes one JSON part, rewritten after each piece so that a run
stopped at its time limit keeps what it measured:

1. Host synchronisations: the eager `apply` of SGD, Keras's EMA, SWA and
   SWAG (averaging every step, and every 10), counted per step: on PyTorch
   with CUDA's sync debug mode (each synchronising call warns), on JAX
   with a device-to-host transfer guard (each read of a device array to
   the host raises; the step is then run again without the guard).
2. One snapshot (bench/snapshot.py's `snapshot_costs`: SWA, SWA's EMA, SWAG
   diagonal and with 5 deviations; fused kernels and the `keras.ops`
   reference on PyTorch, under `jax.jit` with the state donated on JAX)
   against SGD's update of the same weights and against the memory bound:
   the bytes a snapshot must move (12 per parameter for SWA) over the
   bandwidth of a device-to-device copy that moves as many bytes (read
   plus written), timed in the same process. One 4096x4096 weight (16.8M
   parameters) and one 16384x16384 weight (268M).
3. A training step (bench/overhead.py's `measure`): bare SGD, SGD with
   Keras's EMA, SWA(SGD) averaging every 1, 10 and 100 steps, on an MLP of
   143M parameters whose step keeps the GPU busy (batch 2048, 1.8 TFLOP per
   step) and on overhead.py's wide-16M (a 4096x4096 Dense, batch 8), where
   the optimizer and the host's dispatch dominate the step. JAX with
   `jit_compile` on and off, PyTorch eagerly. Epochs are timed to the end
   of the device's work (`common.synchronize`), medians of interleaved
   repetitions.

`report` merges the parts and the pytest logs that run.sh left in a folder
into gpu-bench.json and gpu-bench.md there; it imports no backend.

`--mode cpu` runs the same pieces with tiny sizes and few repetitions: the
dry run that proves the pipeline on a machine without a GPU.

    KERAS_BACKEND=jax python bench/gpu/gpu_bench.py bench --mode gpu --part OUT/bench-jax.json
    python bench/gpu/gpu_bench.py report --out OUT --stages STAGES_FILE --mode gpu
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import traceback
import warnings

HERE = pathlib.Path(__file__).resolve().parent
for _path in (HERE.parents[1] / "python", HERE.parent, HERE):  # kerasswa, bench/, bench/gpu/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import common  # noqa: E402  (sets the environment first; run.sh sets CUDA_VISIBLE_DEVICES before)

# The variants of the training-step table (overhead.variants() names).
STEP_VARIANTS = ["SGD", "SGD + Keras EMA", "SWA(SGD) k=1", "SWA(SGD) k=10", "SWA(SGD) k=100"]

SIZES = {
    "gpu": dict(
        shapes=[(4096, 4096), (16384, 16384)],
        snapshot_reps=15,
        # Snapshots timed back to back per timing: enough for each timing to
        # outlast a launch and a synchronisation many times over.
        calls={4096 * 4096: 20, 16384 * 16384: 4},
        models={
            # 512 -> 8192 -> 8192 -> 8192 -> 512: 143M parameters; batch 2048
            # is 1.8 TFLOP per step, while a batch's input and target are 8 MB.
            "mlp-143M": dict(inputs=512, layers=[8192, 8192, 8192, 512], batch=2048, steps=10),
            "wide-16M": dict(inputs=4096, layers=[4096], batch=8, steps=30),
        },
        step_reps=5,
        probe_shape=(4096, 4096),
        probe_steps=10,
    ),
    "cpu": dict(
        shapes=[(64, 64), (256, 256)],
        snapshot_reps=3,
        calls={64 * 64: 2, 256 * 256: 2},
        models={
            "mlp-tiny": dict(inputs=32, layers=[64, 64, 32], batch=32, steps=4),
            "wide-tiny": dict(inputs=128, layers=[128], batch=8, steps=4),
        },
        step_reps=2,
        probe_shape=(64, 64),
        probe_steps=4,
    ),
}


# -- bench ---------------------------------------------------------------


def nvidia_smi() -> dict | None:
    """The GPU as nvidia-smi names it, or None without one."""
    if not shutil.which("nvidia-smi"):
        return None
    fields = "name,driver_version,memory.total,clocks.max.sm,clocks.max.mem"
    try:
        text = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if not text.strip():
        return None
    return dict(zip(fields.split(","), (value.strip() for value in text.splitlines()[0].split(","))))


def copy_seconds(backend: str, floats: int, reps: int, calls: int) -> float:
    """Median seconds of one device-to-device copy of `floats` float32
    values (timed as snapshot.timed times a snapshot)."""
    import keras
    import snapshot

    source = keras.ops.ones((floats,), "float32")
    if backend == "torch":
        import torch

        target = torch.empty_like(source)
        seconds = snapshot.timed(lambda: target.copy_(source), lambda: [target], reps, calls)
        del target
    else:
        import jax
        import jax.numpy as jnp

        # Not donated, so XLA must write a new buffer: a real copy.
        copy = jax.jit(jnp.copy)
        result = [source]

        def run():
            result[0] = copy(source)

        seconds = snapshot.timed(run, lambda: result, reps, calls)
    del source
    return seconds


def probe_makers() -> dict:
    import keras

    from kerasswa import SWA, SWAG

    sgd = lambda: keras.optimizers.SGD(0.01)  # noqa: E731
    return {
        "SGD": sgd,
        "SGD + Keras EMA": lambda: keras.optimizers.SGD(0.01, use_ema=True),
        "SWA(SGD) k=1": lambda: SWA(sgd(), start_averaging=0, average_period=1),
        "SWA(SGD) k=10": lambda: SWA(sgd(), start_averaging=0, average_period=10),
        "SWA(SGD) EMA k=1": lambda: SWA(sgd(), start_averaging=0, average_period=1, averaging=0.99),
        "SWAG(SGD) max_rank=5 k=1": lambda: SWAG(sgd(), start_averaging=0, average_period=1, max_rank=5),
    }


def _caller(frames) -> str:
    """The innermost frame of kerasswa or keras in a traceback (where the
    read was asked for), as "file:line"."""
    chosen = None
    for frame in frames:
        if "kerasswa" in frame.filename or "keras" in frame.filename:
            chosen = frame
    chosen = chosen or frames[-1]
    return f"{pathlib.Path(chosen.filename).name}:{chosen.lineno}"


def count_syncs(backend: str, step, steps: int) -> dict:
    """Host synchronisations in `steps` calls of `step()`: their number per
    step and where the first few were asked for. PyTorch counts them only on
    a GPU (CUDA's sync debug mode); JAX guards device-to-host transfers on
    any device."""
    where: list = []
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return dict(per_step=None, where=[], note="CUDA's sync debug mode needs a GPU")
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(steps):
                    step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        for w in syncs:
            place = f"{pathlib.Path(w.filename).name}:{w.lineno}"
            if place not in where:
                where.append(place)
        return dict(per_step=len(syncs) / steps, where=where[:5])
    import jax

    count = 0
    for _ in range(steps):
        try:
            # "disallow_explicit": `jax.device_get` too, not only implicit reads.
            with jax.transfer_guard_device_to_host("disallow_explicit"):
                step()
        except Exception as error:  # noqa: BLE001  (JAX's error type differs across versions)
            if "transfer" not in str(error).lower():
                raise
            count += 1
            place = _caller(traceback.extract_tb(error.__traceback__))
            if place not in where:
                where.append(place)
            step()  # again, unguarded, so that the optimizer's bookkeeping stays whole
    return dict(per_step=count / steps, where=where[:5])


CONTROL = "control: SGD, then one weight read to the host"


def host_syncs(backend: str, shape, steps: int) -> list:
    """`count_syncs` for the eager `apply` of each optimizer of
    `probe_makers()` on one weight of `shape`, after two unguarded steps
    (the first reads the step counter once). A control first reads one
    weight to the host after each SGD step: where it counts no read per
    step, the detector is blind on this device (on the CPU, where nothing
    is transferred) and no row is counted."""
    import keras
    import numpy as np

    rng = np.random.default_rng(3)
    makers = {CONTROL: probe_makers()["SGD"], **probe_makers()}
    rows = []
    blind = False
    for name, make in makers.items():
        try:
            weights = [keras.Variable(rng.standard_normal(size=shape, dtype=np.float32))]
            grads = [keras.ops.convert_to_tensor(rng.standard_normal(size=shape, dtype=np.float32))]
            optimizer = make()
            optimizer.build(weights)
            for _ in range(2):
                optimizer.apply(grads, weights)
            common.synchronize(weights)

            def step(optimizer=optimizer, weights=weights, grads=grads, control=name == CONTROL):
                optimizer.apply(grads, weights)
                if control:
                    float(keras.ops.convert_to_numpy(weights[0].value[0, 0]))

            found = count_syncs(backend, step, steps)
            if name == CONTROL:
                blind = found["per_step"] is None or found["per_step"] < 1
            if blind:
                found = dict(per_step=None, where=found["where"],
                             note=found.get("note") or "the control's read was not caught: blind on this device")
        except Exception as error:  # noqa: BLE001  (recorded: the other rows still run)
            found = dict(per_step=None, where=[], error=f"{type(error).__name__}: {error}"[:300])
        rows.append(dict(optimizer=name, steps=steps, **found))
        print(f"host syncs, {backend} {name}: {found}", flush=True)
    return rows


def bench(mode: str, part: pathlib.Path) -> int:
    import device_check

    expected = os.environ.get("KERASSWA_EXPECT_DEVICE") or mode
    device = device_check.require(expected)
    import keras
    import overhead
    import snapshot

    backend = keras.config.backend()
    config = SIZES[mode]
    result = dict(
        backend=backend, mode=mode, device=device, gpu=nvidia_smi(), versions=common.versions(),
        machine=common.machine(), started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        config={k: v for k, v in config.items() if k != "calls"}, seconds={}, complete=False,
        host_syncs=[], snapshots=[], steps=[],
    )

    def write():
        temporary = part.with_suffix(".tmp")
        temporary.write_text(json.dumps(result, indent=1, default=str))
        temporary.replace(part)

    def piece(name, function):
        """Runs one piece; an error is recorded and the next piece runs."""
        start = time.perf_counter()
        try:
            function()
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            result.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"[:500]
        finally:
            result["seconds"][name] = round(time.perf_counter() - start, 1)
            write()

    print(f"bench on {backend}: {device}", flush=True)
    write()
    try:
        piece("host_syncs", lambda: result["host_syncs"].extend(
            host_syncs(backend, config["probe_shape"], config["probe_steps"])))
        for shape in config["shapes"]:
            parameters = shape[0] * shape[1]
            calls = config["calls"][parameters]

            def snapshots(shape=shape, parameters=parameters, calls=calls):
                # A copy that reads and writes as many bytes as SWA's snapshot
                # (12 per parameter): 1.5 float32 per parameter.
                seconds = copy_seconds(backend, 3 * parameters // 2, config["snapshot_reps"], calls)
                bandwidth = 12 * parameters / seconds
                print(f"{backend} copy of {12 * parameters / 2**20:.0f} MiB (read + written): "
                      f"{seconds * 1e3:.3f} ms, {bandwidth / 1e9:.0f} GB/s", flush=True)
                for row in snapshot.snapshot_costs(backend, config["snapshot_reps"], bandwidth, shape, calls):
                    row.update(parameters=parameters, bandwidth=bandwidth, calls=calls)
                    result["snapshots"].append(row)
                    print(f"  {parameter_label(parameters)} {row['variant']} ({row['kernels'] or 'reference'}): "
                          f"{row['seconds'] * 1e3:.3f} ms, {row['over_bound']:.2f} x bound, "
                          f"{row['in_sgd_updates']:.2f} SGD updates", flush=True)

            piece(f"snapshots {parameters}", snapshots)
        jit_settings = [True, False] if backend == "jax" else [False]
        for model_name, spec in config["models"].items():
            for jit_compile in jit_settings:

                def steps(model_name=model_name, spec=spec, jit_compile=jit_compile):
                    rows = overhead.measure(backend, [jit_compile], config["step_reps"], spec["steps"],
                                            models={model_name: spec}, names=STEP_VARIANTS)
                    for row in rows:
                        row["steps"] = spec["steps"]
                        result["steps"].append(row)
                        print(f"  {row['model']} jit={row['jit_compile']} {row['variant']}: "
                              f"{row['step_ms']:.3f} ms (ratio {row['ratio']:.3f})", flush=True)

                piece(f"steps {model_name} jit={jit_compile}", steps)
        result["complete"] = "errors" not in result
    except KeyboardInterrupt:
        result["interrupted"] = True
        print("bench: interrupted (time limit); what was measured is kept", flush=True)
        return 130
    finally:
        result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write()
    return 0 if result["complete"] else 1


# -- report --------------------------------------------------------------

SUMMARY = re.compile(r"^=+ (.*?) in ([\d.]+)s.*=+$")


def read_pytest(path: pathlib.Path) -> dict | None:
    """The runs in one pytest log of run.sh (the first, and a rerun of its
    failures after a line "### rerun: ..."): device, summary, failures."""
    if not path.exists():
        return None
    runs = []
    for number, chunk in enumerate(re.split(r"^### rerun: ", path.read_text(errors="replace"), flags=re.M)):
        lines = chunk.splitlines()
        run = dict(
            label="first run" if number == 0 else lines[0].strip(),
            device=next((line[len("device: "):] for line in lines if line.startswith("device: ")), None),
            summary=None, seconds=None,
            interrupted=any("KeyboardInterrupt" in line for line in lines),
            skipped=any(line.startswith("=== ") and ": skipped, " in line for line in lines),
            failures=[line for line in lines if line.startswith(("FAILED ", "ERROR "))],
            exit=next((line.split("pytest exit ")[1] for line in lines if line.startswith("pytest exit ")), None),
        )
        for line in lines:
            match = SUMMARY.match(line)
            if match:
                run["summary"], run["seconds"] = match.group(1), float(match.group(2))
        runs.append(run)
    return dict(runs=runs)


def read_stages(path: pathlib.Path | None) -> list:
    if not path or not path.exists():
        return []
    stages = []
    for line in path.read_text().splitlines():
        name, status, seconds, limit = line.split("\t")
        stages.append(dict(stage=name, status=status, seconds=int(seconds), limit=int(limit)))
    return stages


def parameter_label(parameters: int) -> str:
    """16.8M, 268.4M; small counts whole."""
    return f"{parameters / 1e6:.1f}M" if parameters >= 10**6 else f"{parameters:,}"


def markdown(data: dict) -> str:
    table = common.table
    parts = data["bench"]
    lines = [f"# kerasswa on a GPU ({'dry run on the CPU' if data['mode'] == 'cpu' else 'GPU run'})", ""]
    lines.append(f"Date: {data['date']}.")
    for backend, part in parts.items():
        versions = ", ".join(f"{k} {v}" for k, v in sorted(part.get("versions", {}).items()))
        lines.append(f"{backend}: {part['device']['kind']} ({part['device']['name']}); {versions}.")
    gpu = next((p.get("gpu") for p in parts.values() if p.get("gpu")), None)
    if gpu:
        lines.append("GPU: " + ", ".join(f"{k} {v}" for k, v in gpu.items()) + ".")
    machine = next((p.get("machine") for p in parts.values()), None)
    if machine:
        lines.append(f"Host: {machine['cpus']} CPUs, {machine['platform']}.")
    lines += ["", "## Tests", ""]
    rows = []
    for backend, log in data["pytest"].items():
        for run in (log or {}).get("runs", []):
            result = run["summary"] or ("skipped: no time left" if run["skipped"] else "no summary")
            rows.append((backend, run["label"], run["device"] or "", result
                         + (" (interrupted: time limit)" if run["interrupted"] else ""),
                         "<br>".join(run["failures"][:10])))
    lines.append(table(["backend", "run", "device", "result", "failures"], rows) if rows else "No test log.")
    lines += ["", "## Host synchronisations per eager `apply`", ""]
    rows = [(b, r["optimizer"], "n/a" if r["per_step"] is None else f"{r['per_step']:.2f}",
             ", ".join(r["where"]) or r.get("note") or r.get("error", ""))
            for b, p in parts.items() for r in p.get("host_syncs", [])]
    lines.append(table(["backend", "optimizer", "per step", "asked for at"], rows) if rows else "Not measured.")
    lines += ["", "## One snapshot against the memory bound", "",
              "Median of one call (calls timed back to back, then waited for); the bound is the bytes the "
              "snapshot must move over the bandwidth of a device-to-device copy of as many bytes, timed in the "
              "same process.", ""]
    rows = [(b, parameter_label(r["parameters"]), f"{r['bandwidth'] / 1e9:.0f}", r["variant"], r["kernels"],
             f"{r['seconds'] * 1e3:.3f}", f"{r['bound_seconds'] * 1e3:.3f}", f"{r['over_bound']:.2f}",
             f"{r['in_sgd_updates']:.2f}")
            for b, p in parts.items() for r in p.get("snapshots", [])]
    lines.append(table(["backend", "parameters", "copy GB/s", "variant", "kernels", "ms", "bound ms", "x bound",
                        "in SGD updates"], rows) if rows else "Not measured.")
    lines += ["", "## Training step", "",
              "Median step time over interleaved one-epoch repetitions (IQR in brackets), each epoch timed to the "
              "end of the device's work; ratio to bare SGD.", ""]
    rows = [(b, r["model"], r["jit_compile"], r["variant"], f"{r['step_ms']:.3f} ({r['spread_ms']:.3f})",
             f"{r['ratio']:.3f} ({r['ratio_spread']:.3f})", f"{r['cpu_ratio']:.3f}")
            for b, p in parts.items() for r in p.get("steps", [])]
    lines.append(table(["backend", "model", "jit_compile", "variant", "step ms (IQR)", "ratio (IQR)",
                        "CPU-time ratio"], rows) if rows else "Not measured.")
    errors = [(b, name, error) for b, p in parts.items() for name, error in p.get("errors", {}).items()]
    errors += [(b, "bench", "interrupted at its time limit") for b, p in parts.items() if p.get("interrupted")]
    if errors:
        lines += ["", "## Errors", "", table(["backend", "piece", "error"], errors)]
    lines += ["", "## Stages", ""]
    rows = [(s["stage"], s["status"], s["seconds"], s["limit"]) for s in data["stages"]]
    rows += [(f"bench-{b} {name}", "", seconds, "") for b, p in parts.items() for name, seconds in p["seconds"].items()]
    lines.append(table(["stage", "exit", "seconds", "limit"], rows) if rows else "None recorded.")
    return "\n".join(lines) + "\n"


def report(out: pathlib.Path, stages: pathlib.Path | None, mode: str) -> int:
    parts = {}
    for path in sorted(out.glob("bench-*.json")):
        parts[path.stem[len("bench-"):]] = json.loads(path.read_text())
    data = dict(
        mode=mode, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        stages=read_stages(stages),
        pytest={backend: read_pytest(out / f"pytest-{backend}.txt") for backend in ("jax", "torch")},
        bench=parts,
    )
    (out / "gpu-bench.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "gpu-bench.md").write_text(markdown(data))
    for path in out.glob("bench-*.json"):  # merged into gpu-bench.json
        path.unlink()
    print((out / "gpu-bench.md").read_text())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("bench", help="measure on this process's backend; write one JSON part")
    run.add_argument("--mode", choices=sorted(SIZES), default="gpu")
    run.add_argument("--part", type=pathlib.Path, required=True)
    merge = commands.add_parser("report", help="merge the parts and pytest logs of a folder")
    merge.add_argument("--out", type=pathlib.Path, required=True)
    merge.add_argument("--stages", type=pathlib.Path)
    merge.add_argument("--mode", choices=sorted(SIZES), default="gpu")
    arguments = parser.parse_args()
    if arguments.command == "bench":
        return bench(arguments.mode, arguments.part)
    return report(arguments.out, arguments.stages, arguments.mode)


if __name__ == "__main__":
    sys.exit(main())
