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


def load(name):
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def overhead_section(runs):
    lines = ["## Cost: step time against the bare inner optimizer", ""]
    lines.append(
        "Median step time of `model.fit` epochs over interleaved repetitions (IQR in brackets), its ratio to "
        "the bare inner optimizer (SGD for the SGD rows and Keras EMA, Adam for the Adam rows), and the same "
        "ratio for process CPU time, which another process on the machine hardly disturbs. Targets: "
        f"SWA with `average_period` >= 10 at most {TARGET_PERIODIC}; SWA averaging every step at most the "
        "ratio of Keras EMA (which also updates an average every step)."
    )
    verdicts = []
    for run in runs:
        backend = run["results"][0]["backend"]
        lines += ["", f"### {backend} backend ({run['reps']} repetitions of {run['steps']} steps)", ""]
        rows = []
        for r in run["results"]:
            rows.append((r["model"], r["jit_compile"], r["variant"], f"{r['step_ms']:.2f} ({r['spread_ms']:.2f})",
                         f"{r['ratio']:.3f} ({r['ratio_spread']:.3f})", f"{r.get('cpu_ratio', float('nan')):.3f}"))
        lines.append(common.table(
            ["model", "jit_compile", "variant", "step ms (IQR)", "ratio (IQR)", "CPU-time ratio"], rows))
        for (model, jit), by_variant in _by_setting(run["results"]).items():
            def pair(variant):
                return by_variant[variant]["ratio"], by_variant[variant].get("cpu_ratio", float("nan"))

            worst = max((k for k in by_variant if k.endswith(" k=10")), key=lambda k: by_variant[k]["ratio"])
            periodic, every, ema = pair(worst), pair("SWA(SGD) k=1"), pair("SGD + Keras EMA")
            noise = max(by_variant[worst]["ratio_spread"], by_variant["SWA(SGD) k=1"]["ratio_spread"]) / 2
            verdicts.append((
                backend, model, jit, worst, f"{periodic[0]:.3f} / {periodic[1]:.3f}",
                _verdict(periodic[0], TARGET_PERIODIC, by_variant[worst]["ratio_spread"] / 2),
                f"{every[0]:.3f} / {every[1]:.3f}", f"{ema[0]:.3f} / {ema[1]:.3f}",
                _verdict(every[0], ema[0], noise),
            ))
    lines += ["", "### Targets, from the timings (wall-time ratio / CPU-time ratio)", ""]
    lines.append(
        "A verdict is 'met' or 'missed' only when the wall-time ratio is further from the bound than half the "
        "interquartile range of its per-repetition ratios; otherwise the machine was too noisy to tell. For "
        "TensorFlow the profiler section below settles what the timings cannot."
    )
    lines += ["", common.table(
        ["backend", "model", "jit_compile", "worst SWA k=10", "its ratio", f"<= {TARGET_PERIODIC}",
         "SWA(SGD) k=1", "Keras EMA", "SWA k=1 <= EMA"], verdicts)]
    lines += ["", (
        "JAX with `jit_compile=False`: Keras runs each step eagerly through `stateless_apply`, and SWA reads "
        "its snapshot decision on the host. JAX's CPU runtime runs queued work in order, so that read waits "
        "for the step queued so far, and Python cannot queue the next step meanwhile: a cost of a few percent "
        "per step whatever the period. Two ways around it were measured (wide-16M, 5 repetitions) and "
        "rejected: a compiled `cond` that donates the averages (k=100: 0.99, but donation deletes arrays that "
        "`stateless_apply` must leave usable), and the same without donation (k=100: 1.17, as every step then "
        "copies the averages). With `jit_compile=True`, the default, the decision stays on the device."
    )]
    return lines


def profile_section(profile):
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
    rows = [
        (r["model"], r["jit_compile"], r["variant"], f"{r['kernel_ms']:.2f}", f"{r['added_ms']:.3f}",
         f"{r['ratio']:.3f}", ", ".join(f"`{_short(name)}` {ms:.2f}" for name, ms in list(r["added"].items())[:2]))
        for r in profile["results"]
    ]
    lines += ["", common.table(
        ["model", "jit_compile", "variant", "kernel ms/step", "added ms/step", "kernel-time ratio",
         "largest added kernels (ms/step)"], rows)]
    verdicts = []
    for (model, jit), by_variant in _by_setting(profile["results"]).items():
        ratio = {variant: r["ratio"] for variant, r in by_variant.items()}
        verdicts.append((
            model, jit, f"{ratio['SWA(SGD) k=1'] - 1:.3f}",
            f"{ratio['SWA(SGD) k=10']:.3f}", "met" if ratio["SWA(SGD) k=10"] <= TARGET_PERIODIC else "missed",
            f"{ratio['SWA(SGD) k=100']:.3f}", f"{ratio['SWA(SGD) k=1']:.3f}", f"{ratio['SGD + Keras EMA']:.3f}",
            "met" if ratio["SWA(SGD) k=1"] <= ratio["SGD + Keras EMA"] else "missed",
        ))
    lines += ["", "### Targets, from the profiler (TensorFlow, kernel-time ratios)", ""]
    lines.append(
        "A snapshot costs one pass over the weights and their averages: one fused kernel under XLA, three ops "
        "without (subtract, divide, add), about what SGD's own update of those weights costs, and what Keras's "
        "EMA pays on every step. Averaging every `k` steps adds a `k`-th of that to each step. The second column "
        "is that cost in bare SGD steps (measured with `k` = 1, so it includes any fixed cost per step): where it "
        f"exceeds 0.1, an average updated in its own pass cannot stay within {TARGET_PERIODIC} at `k` = 10, and "
        "`k` must be at least a hundred times that column."
    )
    lines.append(
        " Under XLA (`jit_compile=True`) the profiler also finds `copy` kernels on every step, SWA's fixed cost "
        "on mlp-3M: the `cond` around the averaging makes XLA's copy insertion copy the weight matrices of "
        "every layer but the first (the XLA dump shows `copy(arg)` of the two 1024x1024 weights). Returning "
        "values from the `cond` instead of assigning inside it, and `sequential_update=False`, keep them. The "
        "same model's XLA program under JAX copies those matrices for bare SGD already, so there they cost SWA "
        "nothing."
    )
    lines += ["", common.table(
        ["model", "jit_compile", "one snapshot, in bare steps", "SWA k=10", f"<= {TARGET_PERIODIC}", "SWA k=100",
         "SWA k=1", "Keras EMA", "SWA k=1 <= EMA"], verdicts)]
    return lines


def _by_setting(results):
    """`{(model, jit_compile): {variant: result}}`, in the order of `results`."""
    groups = {}
    for r in results:
        groups.setdefault((r["model"], r["jit_compile"]), {})[r["variant"]] = r
    return groups


def _short(name):
    """The op of a TensorFlow kernel name without its scopes."""
    return name.split("/")[-1].split(":")[0] if "/" in name else name


def _verdict(value, bound, noise):
    if abs(value - bound) <= noise:
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
    runs = [r for r in (load(f"overhead-{b}") for b in ("tensorflow", "jax", "torch")) if r]
    memory, quality, profile = load("memory-tensorflow"), load("quality"), load("profile-tensorflow")
    versions = (runs or [memory or quality])[0]
    lines = [
        "# kerasswa benchmarks",
        "",
        "Made by `make bench` (about 15 minutes on 2 CPU cores); every number below comes from the JSON files in "
        "`bench/results/`, written by `bench/overhead.py`, `bench/kernel_profile.py`, `bench/memory.py` and `bench/quality.py` and turned into "
        "this page by `bench/report.py`.",
        "",
        f"Machine: {versions['machine']['cpus']} CPUs, {versions['machine']['platform']}. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(versions['versions'].items()))}.",
        "",
    ]
    if runs:
        lines += overhead_section(runs) + ["", "![overhead ratios](overhead.png)", ""]
        overhead_plot(runs)
    if profile:
        lines += profile_section(profile) + [""]
    if memory:
        lines += memory_section(memory) + [""]
    if quality:
        lines += quality_section(quality) + ["", "![reliability diagram](reliability.png)", ""]
        reliability_plot(quality)
    lines += ["## Commands", ""]
    for run in runs + [r for r in (profile, memory, quality) if r]:
        lines.append(f"- `{run['command']}`")
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
