"""Turns the JSON files of results/ into RESULTS.md and its three plots.

    python bench/report.py
"""

import math
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


load = common.load


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
    "mnist1d-bn": "MNIST-1D, MLP with batch normalization",
}


def _mean_se(pair, digits=4, signed=False):
    return f"{pair[0]:{'+' if signed else ''}.{digits}f} ± {pair[1]:.{digits}f}"


def _paired(per_seed, method, baseline, metric):
    """Mean and standard error over seeds of `method - baseline`."""
    differences = [r[method][metric] - r[baseline][metric] for r in per_seed]
    mean, sd = common.mean_sd(differences)
    return mean, sd / len(differences) ** 0.5


def _with_methods(quality, methods):
    """The data sets whose results hold every method of `methods`."""
    return {name: r for name, r in quality["datasets"].items() if set(methods) <= set(r["means"])}


def _data_line(result):
    hidden = "-".join(str(h) for h in result["hidden"])
    kind = "ReLU and batch normalization" if result.get("batch_norm") else "ReLU"
    validation = f", {result['validation']} validation" if "validation" in result else ""
    return (f"{result['train']} training{validation} and {result['test']} test examples; MLP with hidden layers "
            f"{hidden} ({kind}).")


def quality_section(quality):
    lines = ["## Benefit: SWA and SWAG against SGD at the same budget", ""]
    lines.append((
        f"{quality['seeds']} seeds (initialisation, batch order and SWAG samples; one fixed train/validation/test "
        "split per data set, the validation set used only to choose post-hoc EMA's width in the next section); "
        f"the same budget for every method: {quality['epochs']} epochs of batches of {quality['batch']}. "
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
    for name, result in _with_methods(quality, quality["methods"]).items():
        lines += ["", f"### {QUALITY_LABELS.get(name, name)}", ""]
        lines.append(_data_line(result))
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


# A change of validation NLL smaller than this between neighbouring widths
# counts as none.
FLAT_NLL = 0.001
AVERAGES_BASELINE = {False: "SWA", True: "SWA, recomputed BN"}
# Paired comparisons of the verdict table: (label, method, reference), each
# kept where a data set has both.
COMPARISONS = (
    ("post-hoc EMA against SWA", "post-hoc EMA", "SWA"),
    ("post-hoc EMA against EMA warm-up", "post-hoc EMA", "EMA warm-up"),
    ("post-hoc EMA against SGD", "post-hoc EMA", "SGD"),
    ("EMA warm-up against EMA 0.999", "EMA warm-up", "EMA 0.999"),
    ("EMA warm-up against EMA 0.99", "EMA warm-up", "EMA 0.99"),
    ("EMA 0.99 against SWA", "EMA 0.99", "SWA"),
    ("power EMA trained directly against post-hoc EMA (the reconstruction's cost)", "power EMA", "post-hoc EMA"),
    ("post-hoc EMA against SWA", "post-hoc EMA, recomputed BN", "SWA, recomputed BN"),
    ("post-hoc EMA against SGD", "post-hoc EMA, recomputed BN", "SGD"),
    ("SWA: averaged against recomputed BN statistics", "SWA, averaged BN", "SWA, recomputed BN"),
    ("power EMA: averaged against recomputed BN statistics", "power EMA, averaged BN", "power EMA, recomputed BN"),
    ("post-hoc EMA: the last step's BN statistics against recomputed", "post-hoc EMA, last BN",
     "post-hoc EMA, recomputed BN"),
    ("power EMA trained directly against post-hoc EMA (the reconstruction's cost)", "power EMA, recomputed BN",
     "post-hoc EMA, recomputed BN"),
)


def _verdict_of(mean, se, lower_is_better=True):
    """'better', 'worse' or 'no difference' for a paired difference, by
    whether it lies more than two standard errors from zero."""
    if abs(mean) <= 2 * se:
        return "no difference"
    return "better" if (mean < 0) == lower_is_better else "worse"


def _trajectory_sentence(difference):
    if difference == 0.0:
        return "The averaging runs of each seed ended with identical training weights: one trajectory."
    return (f"The training weights of the averaging runs of a seed differed by up to {difference:.1e}: "
            "not quite one trajectory.")


def averages_section(quality):
    grid = quality["grid"]
    lines = ["## Which average: SWA, EMA, power EMA and post-hoc EMA on one trajectory", ""]
    lines.append((
        "More averages of the trajectory that gives SWA, beside SWA and the SGD baseline, on the data, models, "
        "seeds and budget of the comparison of SWA and SWAG with SGD; one more data set puts batch "
        "normalization in the MNIST-1D MLP. All averages of one seed come from one "
        "trajectory: the SWA schedule's run, repeated once per average (an optimizer keeps one average) from "
        "the same weights and batches, and the script checks that every repeat ends with the same training "
        "weights, bit for bit. Averaged on it: SWA (the mean of the last "
        f"{quality['epochs'] - quality['swa_start']} epoch ends); EMA 0.99 and EMA 0.999 (`averaging=0.99`, "
        "`0.999`: a fixed decay per update from the first update; 0.99 is Keras's `ema_momentum` default, 0.999 "
        "a decay sized for a run ten times this long); EMA warm-up (`kerasswa.EMA()`, its defaults); post-hoc "
        f"EMA (`PostHocEMA(sigma_rels={tuple(quality['sigma_rels'])})`, saved at each epoch end; `posthoc_ema` "
        f"rebuilds the power EMA of each sigma_rel in {', '.join(f'{g:g}' for g in grid)} at the end of "
        "training, and the one with the lowest validation NLL is kept, per seed); power EMA (the chosen "
        "sigma_rel trained directly, `SWA(averaging=PowerEMA(sigma_rel=...))`). With batch normalization, "
        "each average's statistics are either averaged by its own rule (`SWACallback(average_non_trainable="
        "TRUE)`) or recomputed for its weights (`update_bn`, one pass over the training inputs); post-hoc EMA "
        "rebuilds only weights, so it is scored with recomputed statistics, and beside that with the last "
        "training step's statistics, what forgetting `update_bn` gives. Test metrics, mean ± standard error "
        "over the seeds; 'val NLL' is the validation NLL; the last columns are paired differences to SWA "
        "(with recomputed statistics where there are statistics)."
    ).replace("TRUE", "True"))
    for name, result in quality["datasets"].items():
        methods = [m for m in result["methods"] if not m.startswith("SWAG")]
        baseline = AVERAGES_BASELINE[bool(result.get("batch_norm"))]
        lines += ["", f"### {QUALITY_LABELS.get(name, name)}", "", _data_line(result), ""]
        rows = []
        for method in methods:
            means = result["means"][method]
            row = [method] + [_mean_se(means[k]) for k in ("accuracy", "nll", "ece")]
            row.append(f"{means['val_nll'][0]:.4f}" if "val_nll" in means else "")
            row += ([""] * 3 if method == baseline else [
                _mean_se(_paired(result["per_seed"], method, baseline, k), signed=True)
                for k in ("accuracy", "nll", "ece")])
            rows.append(row)
        lines.append(common.table(
            ["method", "accuracy", "NLL", "ECE", "val NLL", f"accuracy - {baseline}", f"NLL - {baseline}",
             f"ECE - {baseline}"], rows))
        sweeps = result["sweep"]["per_seed"]
        chosen = [s["chosen"] for s in sweeps]
        counts = {g: chosen.count(g) for g in grid if g in chosen}
        lines += ["", (
            "Post-hoc EMA chose sigma_rel "
            + ", ".join(f"{g:g} ({n} seed{'s' if n > 1 else ''})" for g, n in counts.items())
            + f"; the reconstruction error that `posthoc_ema` reported there was at most "
            f"{max(s['error'] for s in sweeps):.4f}, and the rebuilt weights differ from those of the power EMA "
            f"trained directly by at most {max(s['direct_difference'] for s in sweeps):.2e} (relative L2). "
            + _trajectory_sentence(max(s["trajectory_difference"] for s in sweeps))
        )]
        for end, inner, which in ((0, 1, "narrowest"), (-1, -2, "widest")):
            if chosen.count(grid[end]) > len(chosen) / 2:
                step = [s["validation_nll"][inner] - s["validation_nll"][end] for s in sweeps]
                mean, sd = common.mean_sd(step)
                slope = (f"the validation NLL still falls there ({mean:.4f} ± {sd / len(step) ** 0.5:.4f} below "
                         "its neighbour's), so a width beyond the grid might do better"
                         if mean > max(2 * sd / len(step) ** 0.5, FLAT_NLL) else
                         f"the validation NLL is flat there (within {FLAT_NLL} of its neighbour's), so widths "
                         "beyond the grid would change little")
                lines[-1] += f" Most seeds chose the {which} width of the grid, {grid[end]:g}: {slope}."
    lines += ["", "### What helps and what does not", ""]
    lines.append(
        "Each paired difference in test NLL and accuracy (first named minus second, mean ± standard error over "
        "the seeds), and a verdict: 'better' or 'worse' where the difference lies more than two standard "
        "errors from zero, otherwise 'no difference'. Lower NLL and higher accuracy are better. The verdict "
        "is statistical only: a paired difference can be sure and still too small to matter (0.002 in NLL, "
        "say)."
    )
    rows = []
    for label, method, reference in COMPARISONS:
        for name, result in quality["datasets"].items():
            if method not in result["means"] or reference not in result["means"]:
                continue
            nll = _paired(result["per_seed"], method, reference, "nll")
            accuracy = _paired(result["per_seed"], method, reference, "accuracy")
            rows.append((label, QUALITY_LABELS.get(name, name), _mean_se(nll, signed=True), _verdict_of(*nll),
                         _mean_se(accuracy, signed=True), _verdict_of(*accuracy, lower_is_better=False)))
    lines += ["", common.table(["comparison", "data set", "NLL difference", "NLL", "accuracy difference",
                                "accuracy"], rows)]
    lines += ["", (
        "The validation NLL of post-hoc EMA's candidates against sigma_rel, minus SWA's on the same seed (below "
        "zero: better than SWA): mean over the seeds, the band one standard error of that paired difference; "
        "with batch normalization, statistics recomputed. The green line is EMA warm-up, the same way; the "
        "dotted lines mark the widths PostHocEMA kept."
    )]
    return lines


def sweep_plot(quality):
    """Post-hoc EMA's validation NLL against sigma_rel, as the paired
    difference to SWA's of the same seed (so the band shows how surely one
    width beats another, not how much the seeds differ)."""
    datasets = quality["datasets"]
    grid = np.asarray(quality["grid"])
    rows = math.ceil(len(datasets) / 2)
    figure, axes = plt.subplots(rows, 2, figsize=(9, 3.4 * rows), squeeze=False)
    for axis in axes.flat[len(datasets):]:
        axis.set_visible(False)
    for axis, (name, result) in zip(axes.flat, datasets.items()):
        baseline = AVERAGES_BASELINE[bool(result.get("batch_norm"))]
        reference = np.array([r[baseline]["val_nll"] for r in result["per_seed"]])
        curves = np.array([s["validation_nll"] for s in result["sweep"]["per_seed"]]) - reference[:, None]
        mean, se = curves.mean(0), curves.std(0, ddof=1) / np.sqrt(len(curves))
        axis.plot(grid, mean, marker="o", markersize=3, color="#47a", label="post-hoc EMA")
        axis.fill_between(grid, mean - se, mean + se, color="#47a", alpha=0.25)
        axis.axhline(0.0, color="#c44", linestyle="--", linewidth=1,
                     label=f"{baseline} (val NLL {reference.mean():.3f})")
        method = next((m for m in ("EMA warm-up", "EMA warm-up, recomputed BN") if m in result["means"]), None)
        if method is not None:
            other = np.array([r[method]["val_nll"] for r in result["per_seed"]]) - reference
            axis.axhline(other.mean(), color="#4a4", linestyle="--", linewidth=1, label=method)
        for width in quality["sigma_rels"]:
            axis.axvline(width, color="gray", linestyle=":", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xticks(grid[::2], [f"{g:g}" for g in grid[::2]])
        axis.minorticks_off()
        axis.set_title(QUALITY_LABELS.get(name, name), fontsize=9)
        axis.set_xlabel("sigma_rel")
        axis.set_ylabel(f"validation NLL - {baseline.split(',')[0]}'s")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(HERE / "posthoc_sweep.png", dpi=110)


def reliability_plot(quality):
    datasets = list(_with_methods(quality, quality["methods"]))
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


TARGET_WALL = 1.01  # a step with no snapshot due, in wall time over bare SGD's


def step_wall_section(runs):
    """bench/step_wall.py: the wall time of steps with no snapshot due."""
    launch = {run["results"][0]["backend"]: run.get("launch_us_per_variable", math.nan) for run in runs}
    lines = [
        "## A step with no snapshot due, in wall time",
        "",
        "`bench/step_wall.py`: compiled steps (TensorFlow with XLA, JAX `jit`) under `fit`, each variant's block of "
        "steps divided by bare SGD's block of the same round, over "
        + ", ".join(f"{spec['rounds']} rounds of {spec['steps']} steps ({name}, in {spec['sessions']} set(s) of builds)"
                    for name, spec in runs[0]["models"].items())
        + " in shuffled order; "
        "the median of those paired ratios with its 95% interval (distribution-free), the median step time, and "
        "the ratio of process CPU time. `SWA never due` is `start_averaging=None`: SWA present, no snapshot code "
        "in the step. 'cost seen' says whether the whole interval lies above 1; the target of the issue that asked "
        f"for this table is a median within {TARGET_WALL - 1:.0%} of bare SGD.",
        "",
        common.table(
            ["backend", "model", "variant", "step ms", "ratio to SGD (95% interval)", "CPU-time ratio",
             f"median <= {TARGET_WALL}", "cost seen"],
            [
                (run_row["backend"], run_row["model"], run_row["variant"], f"{run_row['step_ms']:.2f}",
                 f"{run_row['ratio']:.3f} ({run_row['low']:.3f}-{run_row['high']:.3f})",
                 f"{run_row['cpu_ratio']:.3f}",
                 "" if run_row["variant"] == "SGD" else ("met" if run_row["ratio"] <= TARGET_WALL else "missed"),
                 "" if run_row["variant"] == "SGD" else ("yes" if run_row["low"] > 1.0 else "no"))
                for run in runs
                for run_row in run["results"]
            ],
        ),
        "",
        "What the rows show. "
        + (
            "On mlp-3M and wide-16M the interval of SWA k=100 holds 1 on both backends: no cost of a step "
            "with no snapshot due is seen at this resolution (the intervals' half-width, a percent or two; "
            "the median itself moves by about as much from one run of `make bench` to the next, so a median "
            "a little above 1.01 in one run is not a cost), "
            if all(row["low"] <= 1.0 <= row["high"] for run in runs for row in run["results"]
                   if row["variant"] == "SWA k=100" and row["model"] in ("mlp-3M", "wide-16M"))
            else "On mlp-3M or wide-16M an interval of SWA k=100 lies above 1: a cost is seen there, "
        )
        + "where an earlier run had measured 1.05 for SWA k=100 under XLA on mlp-3M "
        "(see below for what changed and what did not). deep-120 (sixty Dense layers of 64: 120 variables, "
        "steps of 1 to 3 ms) shows the one cost that remains, a cost per variable of optimizer state, not per "
        "parameter: each step hands every state variable to the compiled program and takes it back. A compiled "
        "call that writes 120 variables of 64 x 64 costs, per variable, "
        f"{launch.get('tensorflow', math.nan):.1f} microseconds more than one that writes one on TensorFlow "
        f"(XLA's launch) and {launch.get('jax', math.nan):.1f} on JAX (its dispatch of donated arrays), "
        "the small update included. SWA's snapshot sits in the step, so its averages are such variables (SWAG's "
        "averages, means of squares and deviations: three per weight); with `start_averaging=None` they are "
        "not, and the cost is gone. TensorFlow pays it in wall time (SWA k=100 on deep-120: 0.6 ms a step); "
        "JAX, whose dispatch runs ahead of the device, pays it in CPU time (1.2 times) and hides it from the "
        "wall time unless the state is large against the step (SWAG on deep-120). It is the cost of one more "
        "optimizer slot per weight, the cost Adam pays for its two; a model of a few hundred variables whose "
        "steps take tens of milliseconds does not see it. By that measure SWA k=100 adds to mlp-3M's step its "
        "nine state variables' launch, "
        f"{9 * launch.get('tensorflow', math.nan) / 1e3:.2f} ms on TensorFlow, and a hundredth of a snapshot "
        "(the snapshot section above), both below this table's resolution.",
        "",
        "What a TensorFlow XLA step with no snapshot due does, with the evidence (looked for where the earlier "
        "run's 5% could go; none of it is 5% on mlp-3M, and this table does not show that 5%): the optimized "
        "HLO of the step holds no copy of an "
        "average and, outside the snapshot loop, no weight-sized operation that bare SGD's step lacks "
        "(`tests/python/test_compiled_step.py`); TensorFlow's XLA launch donates every state buffer to the "
        "program (its `xla_launch_util` log at level 3: `donate_buffer=true` for every average), so nothing is "
        "copied around the launch either. SWAG's step did compute something: XLA hoisted `square(w)`, invariant "
        "in the snapshot loop, out of the loop into every step, a weight-sized pass (mlp-3M, SWAG never due: "
        "1.055 of SGD's wall time, 1.040 of its CPU time); SWAG's mean of squares is now computed as "
        "`m * (1 - f) + (f * w) * w`, as PyTorch's kernel computes it, which has nothing to hoist (1.018 and "
        "1.008 in the same measurement). The kernel profiler of the section above sees kernels only, so it "
        "sees neither the launch's work per variable nor the wall time.",
    ]
    return lines


def main():
    runs = [r for r in (load(f"overhead-{b}") for b in BACKENDS) if r]
    memory, quality, profile = load("memory-tensorflow"), load("quality"), load("profile-tensorflow")
    versions = (runs or [memory or quality])[0]
    lines = [
        "# kerasswa benchmarks",
        "",
        "Made by `make bench` (about 50 minutes on 2 CPU cores); every number below comes from the JSON files in "
        "`bench/results/`, written by `bench/overhead.py`, `bench/snapshot.py`, `bench/step_wall.py`, `bench/kernel_profile.py`, `bench/memory.py` and `bench/quality.py` and turned into "
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
    step_wall = [r for r in (load(f"step-wall-{b}") for b in ("tensorflow", "jax")) if r]
    if step_wall:
        lines += step_wall_section(step_wall) + [""]
    if profile:
        lines += profile_section(profile, load(f"{BEFORE}/profile-tensorflow")) + [""]
    if memory:
        lines += memory_section(memory) + [""]
    if quality:
        lines += quality_section(quality) + ["", "![reliability diagram](reliability.png)", ""]
        reliability_plot(quality)
        if "grid" in quality:
            lines += averages_section(quality) + ["", "![post-hoc EMA sweep](posthoc_sweep.png)", ""]
            sweep_plot(quality)
    lines += ["## Commands", ""]
    for run in runs + snapshots + step_wall + [r for r in (profile, memory, quality) if r]:
        for command in run.get("earlier_commands", []) + [run["command"]]:
            lines.append(f"- `{command}`")
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
