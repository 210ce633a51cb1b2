"""Turns the JSON files of results/ into RESULTS.md and its two plots.

    python bench/report.py
"""

import json
import pathlib

import common
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
TARGET_PERIODIC = 1.01
TARGET_TORCH_WIDE = 1.6  # SWA(SGD) k=1 on PyTorch's wide-16M
TARGET_STEP_WORK = 0.003  # SWA's own work on a step without a snapshot, over a bare step
BACKENDS = ("tensorflow", "jax", "torch")
# results/before/: the same benchmarks at commit 9c75cdd, before the snapshot kernels.
BEFORE = "before"


def load(name):
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def overhead_section(runs, before):
    lines = ["## Cost: step time against the bare inner optimizer", ""]
    lines.append(
        "Median step time of `model.fit` epochs over interleaved repetitions (IQR in brackets), its ratio to "
        "the bare inner optimizer (SGD for the SGD rows and Keras EMA, Adam for the Adam rows), and the same "
        "ratio for process CPU time, which another process on the machine hardly disturbs. 'Ratio before' is "
        "the same benchmark at commit 9c75cdd, before the snapshot kernels and the eager decision (older "
        "stack: numpy 1.26, jax 0.7.1; results/before/)."
    )
    verdicts = []
    for run in runs:
        backend = run["results"][0]["backend"]
        lines += ["", f"### {backend} backend ({run['reps']} repetitions of {run['steps']} steps)", ""]
        rows = []
        for r in run["results"]:
            old = before.get((r["backend"], r["model"], r["jit_compile"], r["variant"]))
            rows.append((r["model"], r["jit_compile"], r["variant"], f"{r['step_ms']:.2f} ({r['spread_ms']:.2f})",
                         f"{r['ratio']:.3f} ({r['ratio_spread']:.3f})", f"{r.get('cpu_ratio', float('nan')):.3f}",
                         _format(old)))
        lines.append(common.table(
            ["model", "jit_compile", "variant", "step ms (IQR)", "ratio (IQR)", "CPU-time ratio", "ratio before"],
            rows))
        for (model, jit), by_variant in _by_setting(run["results"]).items():
            def result(variant):
                r = by_variant[variant]
                return r["ratio"], r["ratio_spread"] / 2

            every, every_noise = result("SWA(SGD) k=1")
            ema, ema_noise = result("SGD + Keras EMA")
            worst = max((k for k in by_variant if k.endswith(" k=10")), key=lambda k: by_variant[k]["ratio"])
            periodic, periodic_noise = result(worst)
            rare = max((k for k in by_variant if k.endswith(" k=100")), key=lambda k: by_variant[k]["ratio"])
            rarely, rarely_noise = result(rare)
            bound = TARGET_TORCH_WIDE if (backend, model) == ("torch", "wide-16M") else None
            verdicts.append((
                backend, model, jit,
                f"{every:.3f}", f"{ema:.3f}", _verdict(every, ema, max(every_noise, ema_noise)),
                "" if bound is None else _verdict(every, bound, every_noise),
                f"{worst}: {periodic:.3f}",
                _periodic_verdict(every, periodic, periodic_noise),
                f"{rare}: {rarely:.3f}", _verdict(rarely, 1.0, rarely_noise).replace("missed", "above"),
            ))
    lines += ["", "### Targets, from the timings (wall-time ratios)", ""]
    lines.append(
        "The issue's targets: SWA averaging every step no slower than Keras's EMA every step, and on PyTorch's "
        f"wide-16M at most {TARGET_TORCH_WIDE}; every 10 steps at most {TARGET_PERIODIC} wherever a snapshot "
        "costs at most 0.1 bare step (the k=1 ratio minus 1); every 100 steps within noise of 1.000. A verdict "
        "is 'met' or 'missed' only when the ratio is further from the bound than half the interquartile range "
        "of its per-repetition ratios; otherwise the machine was too noisy to tell. For TensorFlow the "
        "profiler section below settles what the timings cannot."
    )
    lines += ["", common.table(
        ["backend", "model", "jit_compile", "SWA(SGD) k=1", "Keras EMA", "k=1 <= EMA", f"k=1 <= {TARGET_TORCH_WIDE}",
         "worst k=10", f"<= {TARGET_PERIODIC}", "worst k=100", "k=100 = 1.000"], verdicts)]
    return lines


def profile_section(profile, before):
    lines = ["## Where the time goes: TensorFlow's profiler", ""]
    lines.append(
        "`bench/kernel_profile.py` traces one epoch of "
        f"{profile['steps']} steps of each variant with `tf.profiler` and sums the time of every kernel (a "
        "TensorFlow op, or an XLA fusion under `jit_compile`). The kernels a variant has and the bare SGD run "
        "lacks are the ones it added: the averaging, and whatever comes with it. Their time per step, over the "
        "bare run's kernel time, gives the kernel-time ratio, which is exact where wall-clock ratios carry a few "
        "percent of noise. It bounds the step-time ratio from above: a step also spends time outside kernels "
        "(Python, the input pipeline), the same for every variant."
    )
    earlier = {(r["model"], r["jit_compile"], r["variant"]): r["ratio"] for r in (before or {}).get("results", [])}
    rows = [
        (r["model"], r["jit_compile"], r["variant"], f"{r['kernel_ms']:.2f}", f"{r['added_ms']:.3f}",
         f"{r['ratio']:.3f}", _format(earlier.get((r["model"], r["jit_compile"], r["variant"]))),
         ", ".join(f"`{_short(name)}` {ms:.2f}" for name, ms in list(r["added"].items())[:2]))
        for r in profile["results"]
    ]
    lines += ["", common.table(
        ["model", "jit_compile", "variant", "kernel ms/step", "added ms/step", "kernel-time ratio",
         "ratio before", "largest added kernels (ms/step)"], rows)]
    verdicts = []
    for (model, jit), by_variant in _by_setting(profile["results"]).items():
        ratio = {variant: r["ratio"] for variant, r in by_variant.items()}
        verdicts.append((
            model, jit, f"{ratio['SWA(SGD) k=1'] - 1:.3f}",
            f"{ratio['SWA(SGD) k=10']:.3f}", _periodic_verdict(ratio["SWA(SGD) k=1"], ratio["SWA(SGD) k=10"]),
            f"{ratio['SWA(SGD) k=100']:.3f}", f"{ratio['SWA(SGD) k=1']:.3f}", f"{ratio['SGD + Keras EMA']:.3f}",
            "met" if ratio["SWA(SGD) k=1"] <= ratio["SGD + Keras EMA"] else "missed",
        ))
    lines += ["", "### Targets, from the profiler (TensorFlow, kernel-time ratios)", ""]
    lines.append(
        "A snapshot costs one pass over the weights and their averages, which XLA compiles whether or not the "
        "step is compiled (three `keras.ops` kernels, each writing a new tensor, before): about what SGD's own "
        "update of those weights costs, and what Keras's EMA pays on every step. Averaging every `k` steps adds "
        "a `k`-th of that to each step. The second column is that cost in bare SGD steps (measured with `k` = 1, so it includes any fixed cost per step): where it "
        f"exceeds 0.1, an average updated in its own pass cannot stay within {TARGET_PERIODIC} at `k` = 10, and "
        "`k` must be at least a hundred times that column."
    )
    lines.append(
        " Under XLA (`jit_compile=True`) the kernels are fusions that XLA numbers anew in each program (SGD's "
        "own update may carry another number once the snapshot is in the program), so there kernels compare "
        "by kind: each run of a kind in the bare trace is matched with the variant's run nearest in duration, "
        "and the runs left over count as added. Without XLA a kernel counts its median duration (a scalar op "
        "that the OS preempted once would count for a hundred runs). Until commit b5b57df every step under XLA "
        "copied every average: the snapshot sat in a `cond`, and XLA gave the branch without a snapshot result "
        "buffers of its own (0.5 ms a step on mlp-3M, 2%; read in the optimized HLO). It is now a loop of zero "
        "or one trip, which XLA updates in place; tests/python/test_compiled_step.py counts the copies in the "
        "HLO (none). The `copy` still listed under XLA is the two weight copies that the bare step makes too, "
        "run more slowly after a snapshot has passed over the weights and their averages (the optimized HLO of "
        "the step has no copy of SWA's own); the matching counts the slower runs as added."
    )
    lines += ["", common.table(
        ["model", "jit_compile", "one snapshot, in bare steps", "SWA k=10", f"<= {TARGET_PERIODIC}", "SWA k=100",
         "SWA k=1", "Keras EMA", "SWA k=1 <= EMA"], verdicts)]
    return lines


def snapshot_section(snapshots):
    lines = ["## One snapshot against the memory bound", ""]
    lines.append(
        "`bench/snapshot.py` times `take_snapshot()` on the weights of wide-16M (one 4096x4096 Dense, 16.8M "
        "float32 parameters) the way `fit` runs it on each backend: eagerly on PyTorch, in a TensorFlow graph "
        "(the same XLA-compiled functions as eagerly) or in a step that XLA compiles, and under `jax.jit` with "
        "the state donated on JAX. "
        "'keras.ops' is the rule written in `keras.ops` (`_kernels.FUSED = False`, what kerasswa ran before "
        "the snapshot kernels), 'fused' the backend kernels of `kerasswa/_kernels.py`, side by side in one "
        "process. The memory bound is the bytes a snapshot must move (SWA: read the weight and the average, "
        "write the average, 12 bytes per parameter; SWAG diagonal: 8 more for the mean of squares; SWAG with "
        "deviations: 8 more for a deviation row) over the machine's memory bandwidth, measured in the same "
        "process with NumPy's `a += b` on 64 MiB arrays (the same traffic), the best of one and two threads. "
        "SGD's own update of those weights (also 12 bytes per parameter) is the issue's yardstick: a snapshot "
        "should cost about one such update."
    )
    for run in snapshots:
        lines += ["", f"### {run['backend']} (memory bandwidth {run['bandwidth'] / 1e9:.1f} GB/s; "
                  f"median of {run['reps']} snapshots)", ""]
        lines.append(common.table(
            ["mode", "variant", "kernels", "ms", "memory bound ms", "x bound", "in SGD updates"],
            [(r["mode"], r["variant"], r["kernels"], f"{r['seconds'] * 1e3:.2f}",
              f"{r['bound_seconds'] * 1e3:.2f}", f"{r['over_bound']:.2f}", f"{r['in_sgd_updates']:.2f}")
             for r in run["snapshots"]],
        ))
    steps = [row for run in snapshots for row in run["steps"]]
    if steps:
        lines += ["", "### A step without a snapshot", ""]
        lines.append(
            "Where Python runs every step (PyTorch eager, JAX with `jit_compile=False`), SWA decides in Python "
            "whether a step is a snapshot. The table gives the time `fit` spent in `SWA.apply` outside the inner "
            "optimizer's `apply`, per step (median over the repetitions, no snapshot due): wall time, and CPU "
            "time of the Python thread, over the bare SGD step, against the target of "
            f"{TARGET_STEP_WORK:.1%}; beside it the same for a wrapper that only forwards each update to the "
            "inner optimizer. That wrapper does nothing, yet on JAX it shows a wall time tens of times its CPU "
            "time: the Python thread waits for a core while XLA's threads run the queued step, and the bare "
            "step's Python waits the same way. So the verdict reads CPU time. On JAX SWA's work is mostly one "
            "`assign` of the update count (known without a read), from arrays made 1024 at a time: a new "
            "device array each step cost 0.24-0.26 ms of CPU on mlp-3M. Under `tf.function` and `jit` the "
            "decision is a few scalar kernels in the compiled step: the profiler section gives them for "
            "TensorFlow."
        )
        lines += ["", common.table(
            ["backend", "model", "bare SGD step ms", "SWA's own work ms/step (wall / CPU)",
             "forwarding only ms/step (wall / CPU)", "fraction (wall / CPU)", f"CPU <= {TARGET_STEP_WORK:.1%}"],
            [(r["backend"], r["model"], f"{r['bare_step_ms']:.2f}", f"{r['swa_own_ms']:.3f} / {r['swa_own_cpu_ms']:.3f}",
              f"{r['forwarding_ms']:.3f} / {r['forwarding_cpu_ms']:.3f}",
              f"{r['fraction']:.2%} / {r['cpu_fraction']:.2%}",
              "met" if r["cpu_fraction"] <= TARGET_STEP_WORK else "missed") for r in steps],
        )]
    return lines


def before_ratios(runs):
    """`{(backend, model, jit_compile, variant): ratio}` of the overhead runs in results/before/."""
    return {(r["backend"], r["model"], r["jit_compile"], r["variant"]): r["ratio"] for run in runs for r in run["results"]}


def _format(ratio):
    return "" if ratio is None else f"{ratio:.3f}"


def _by_setting(results):
    """`{(model, jit_compile): {variant: result}}`, in the order of `results`."""
    groups = {}
    for r in results:
        groups.setdefault((r["model"], r["jit_compile"]), {})[r["variant"]] = r
    return groups


def _short(name):
    """The op of a TensorFlow kernel name without its scopes."""
    return name.split("/")[-1].split(":")[0] if "/" in name else name


def _periodic_verdict(every, periodic, noise=0.0):
    """The k=10 target, which holds where a snapshot costs at most 0.1 bare
    step (`every`, the ratio with a snapshot on every step, minus 1)."""
    if every - 1 > 0.1:
        return f"n/a (a snapshot costs {every - 1:.2f} step)"
    return _verdict(periodic, TARGET_PERIODIC, noise)


def _verdict(value, bound, noise):
    if noise and abs(value - bound) <= noise:
        return f"within noise (±{noise:.3f})"
    return "met" if value <= bound else "missed"


def overhead_plot(runs):
    labels, values = [], []
    for run in runs:
        for r in run["results"]:
            if r["model"] == "wide-16M" and r["variant"] not in ("SGD", "Adam"):
                labels.append(f"{r['backend']}{' jit' if r['jit_compile'] else ''}: {r['variant']}")
                values.append(r["ratio"])
    figure, axis = plt.subplots(figsize=(8, 0.28 * len(labels) + 1))
    axis.barh(labels, values, color=["#c44" if "EMA" in label else "#47a" for label in labels])
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.axvline(TARGET_PERIODIC, color="gray", linestyle="--", linewidth=0.8)
    axis.set_xlabel("step time / bare inner optimizer (wide-16M model)")
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(HERE / "overhead.png", dpi=110)


def _versions(run):
    return ", ".join(f"{k} {v}" for k, v in sorted(run["versions"].items()))


def memory_section(memory):
    lines = ["## Memory", ""]
    weights = memory["weights_bytes"]
    lines.append(
        f"One Dense 4096x4096 layer: {weights / 2**20:.2f} MiB of trainable weights. The rule: SWA's state is "
        "the inner optimizer's plus one copy of the weights plus O(1); SWAG's, the inner optimizer's plus "
        "`2 + max_rank` copies (the mean, the mean of the squares, `max_rank` deviations) plus O(1). The "
        "last column is what is left beyond the rule, in bytes: the snapshot count, and the step counter and "
        f"learning rate every Keras optimizer creates. Measured with {_versions(memory)}."
    )
    lines += ["", common.table(
        ["variant", "optimizer state MiB", "inner state MiB", "(state - inner) / weights", "rule: copies",
         "beyond the rule (bytes)"],
        [(r["variant"], f"{r['state_bytes'] / 2**20:.2f}", f"{r.get('inner_bytes', r['state_bytes']) / 2**20:.2f}",
          f"{r['copies_measured']:.4f}" if "copies_measured" in r else "", r.get("copies", ""),
          r.get("beyond_rule_bytes", "")) for r in memory["state"]])]
    lines += ["", "How far resident memory rises while a process builds the model and trains 3 steps, at its "
              "peak and once training is done (measured from after the imports; the peak comes from "
              "tracing and compilation temporaries, which later allocations reuse):", ""]
    lines.append(common.table(
        ["variant", "peak RSS growth MiB", "over SGD MiB", "RSS growth after training MiB", "over SGD MiB"],
        [(r["variant"], f"{r['peak_rss'] / 2**20:.1f}", f"{r['over_sgd_bytes'] / 2**20:.1f}",
          f"{r['rss'] / 2**20:.1f}", f"{r['rss_over_sgd_bytes'] / 2**20:.1f}") for r in memory["peak"]]))
    return lines


QUALITY_LABELS = {
    "mnist1d": "MNIST-1D",
    "mnist1d-noisy": "MNIST-1D, 30% of the training labels flipped",
    "digits": "scikit-learn digits",
}


def _mean_se(pair, digits=4, signed=False):
    return f"{pair[0]:{'+' if signed else ''}.{digits}f} ± {pair[1]:.{digits}f}"


def _paired(per_seed, method, baseline, metric):
    """Mean and standard error over seeds of `method - baseline`."""
    differences = [r[method][metric] - r[baseline][metric] for r in per_seed]
    mean, sd = common.mean_sd(differences)
    return mean, sd / len(differences) ** 0.5


def quality_section(quality):
    lines = ["## Benefit: SWA and SWAG against SGD at the same budget", ""]
    lines.append((
        f"{quality['seeds']} seeds (initialisation, batch order and SWAG samples; one fixed train/test split per "
        f"data set); the same budget for every method: {quality['epochs']} epochs of batches of {quality['batch']}. "
        f"SGD: momentum {quality['momentum']}, weight decay {quality['weight_decay']}, the SWA paper's learning "
        f"rate ({quality['lr_init']} for the first half, falling linearly to {quality['final_ratio']:g} of it at 90%, "
        "then constant); its last weights are the baseline. SWA and SWAG come from one run per seed with the "
        f"paper's SWA schedule (the same shape over the first {quality['swa_start']} epochs, ending at swa_lr "
        f"{quality['swa_lr']}) and a snapshot at the end of each of the last "
        f"{quality['epochs'] - quality['swa_start']} epochs: SWA is the average; SWAG-diagonal and SWAG "
        f"(`max_rank={quality['max_rank']}`) average the predictions of `swag_predict(num_samples="
        f"{quality['num_samples']}, scale={quality['scale']})` with `covariance=False` and `True`. Metrics on "
        f"the test set: accuracy, negative log-likelihood (NLL), expected calibration error (ECE, "
        f"{quality['bins']} bins). 'method - SGD' is the mean over seeds of the paired difference and its "
        "standard error; for NLL and ECE negative is better. The protocol, with its sources, heads "
        f"`bench/quality.py`. Run on the {quality['command'].split()[0].split('=')[1]} backend (the script "
        f"says why) in {quality['runtime_s'] / 60:.1f} minutes, with {_versions(quality)}."
    ))
    for name, result in quality["datasets"].items():
        hidden = "-".join(str(h) for h in result["hidden"])
        lines += ["", f"### {QUALITY_LABELS.get(name, name)}", ""]
        lines.append(f"{result['train']} training and {result['test']} test examples; MLP with hidden layers "
                     f"{hidden} (ReLU).")
        rows = []
        for method in quality["methods"]:
            means, difference = result["means"][method], result["differences"].get(method)
            row = [method] + [f"{means[k][0]:.4f}" for k in ("accuracy", "nll", "ece")]
            row += [_mean_se(difference[k], signed=True) if difference else "" for k in ("accuracy", "nll", "ece")]
            rows.append(row)
        lines += ["", common.table(
            ["method", "accuracy", "NLL", "ECE", "accuracy - SGD", "NLL - SGD", "ECE - SGD"], rows)]
        beyond = []
        for method in quality["methods"][2:]:
            pairs = {k: _paired(result["per_seed"], method, "SWA", k) for k in ("nll", "ece")}
            beyond.append(f"{method} - SWA: NLL {_mean_se(pairs['nll'], signed=True)}, "
                          f"ECE {_mean_se(pairs['ece'], signed=True)}")
        lines += ["", "Sampling against the average alone (paired, as above): " + "; ".join(beyond) + "."]
    lines += ["", (
        "The reliability diagram below pools the test predictions of all seeds: for each bin of top-class "
        "confidence holding at least 0.5% of them, the mean confidence minus the accuracy (above zero: "
        "overconfident)."
    )]
    return lines


def reliability_plot(quality):
    datasets = list(quality["datasets"])
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for axis, name in zip(axes[0], datasets):
        for method in quality["methods"]:
            bins = quality["datasets"][name]["reliability"][method]
            count = np.asarray(bins["count"])
            kept = count >= 0.005 * count.sum()
            confidence = np.asarray(bins["confidence_sum"])[kept] / count[kept]
            accuracy = np.asarray(bins["correct_sum"])[kept] / count[kept]
            axis.plot(confidence, confidence - accuracy, marker="o", markersize=3, label=method)
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set_title(QUALITY_LABELS.get(name, name), fontsize=10)
        axis.set_xlabel("confidence (top-class probability)")
    axes[0][0].set_ylabel("confidence - accuracy")
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(HERE / "reliability.png", dpi=110)


def main():
    runs = [r for r in (load(f"overhead-{b}") for b in BACKENDS) if r]
    memory, quality, profile = load("memory-tensorflow"), load("quality"), load("profile-tensorflow")
    versions = (runs or [memory or quality])[0]
    lines = [
        "# kerasswa benchmarks",
        "",
        "Made by `make bench` (about 20 minutes on 2 CPU cores); every number below comes from the JSON files in "
        "`bench/results/`, written by `bench/overhead.py`, `bench/snapshot.py`, `bench/kernel_profile.py`, `bench/memory.py` and `bench/quality.py` and turned into "
        "this page by `bench/report.py`.",
        "",
        f"Machine: {versions['machine']['cpus']} CPUs, {versions['machine']['platform']}. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(versions['versions'].items()))}.",
        "",
    ]
    if runs:
        before = before_ratios([r for r in (load(f"{BEFORE}/overhead-{b}") for b in BACKENDS) if r])
        lines += overhead_section(runs, before) + ["", "![overhead ratios](overhead.png)", ""]
        overhead_plot(runs)
    snapshots = [r for r in (load(f"snapshot-{b}") for b in BACKENDS) if r]
    if snapshots:
        lines += snapshot_section(snapshots) + [""]
    if profile:
        lines += profile_section(profile, load(f"{BEFORE}/profile-tensorflow")) + [""]
    if memory:
        lines += memory_section(memory) + [""]
    if quality:
        lines += quality_section(quality) + ["", "![reliability diagram](reliability.png)", ""]
        reliability_plot(quality)
    lines += ["## Commands", ""]
    for run in runs + snapshots + [r for r in (profile, memory, quality) if r]:
        lines.append(f"- `{run['command']}`")
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
