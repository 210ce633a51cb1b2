"""Turns the JSON files of results/ into RESULTS.md and its two plots.

    python bench/report.py
"""

import json
import pathlib

import common
import matplotlib

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


def memory_section(memory):
    lines = ["## Memory", ""]
    weights = memory["weights_bytes"]
    lines.append(
        f"One Dense 4096x4096 layer: {weights / 2**20:.2f} MiB of trainable weights. The rule: SWA's state is "
        "the inner optimizer's plus one copy of the weights plus O(1) (the last column, in bytes: the snapshot "
        "count, and the step counter and learning rate every Keras optimizer creates)."
    )
    lines += ["", common.table(
        ["variant", "optimizer state MiB", "inner state MiB", "beyond the rule (bytes)"],
        [(r["variant"], f"{r['state_bytes'] / 2**20:.2f}", f"{r.get('inner_bytes', r['state_bytes']) / 2**20:.2f}",
          r.get("beyond_rule_bytes", "")) for r in memory["state"]])]
    lines += ["", "How far resident memory rises while a process builds the model and trains 3 steps, at its "
              "peak and once training is done (measured from after the imports; the peak comes from "
              "tracing and compilation temporaries, which later allocations reuse):", ""]
    lines.append(common.table(
        ["variant", "peak RSS growth MiB", "over SGD MiB", "RSS growth after training MiB", "over SGD MiB"],
        [(r["variant"], f"{r['peak_rss'] / 2**20:.1f}", f"{r['over_sgd_bytes'] / 2**20:.1f}",
          f"{r['rss'] / 2**20:.1f}", f"{r['rss_over_sgd_bytes'] / 2**20:.1f}") for r in memory["peak"]]))
    return lines


def quality_section(quality):
    lines = ["## Benefit: SWA against SGD at the same budget", ""]
    lines.append((
        f"{quality['seeds']} seeds (initialisation and batch order; one fixed train/test split). Baseline: SGD with "
        "momentum 0.9 and a cosine learning rate decaying over the whole budget. SWA: the paper's recipe, "
        f"the learning rate decaying to `swa_lr` over the first {quality['swa_start']:.0%} of the budget, then "
        "constant while the weights are averaged once per epoch, batch norm recomputed at the end. "
        "'SWA - SGD' is the mean paired difference and its standard error. PyTorch's "
        "`torch.optim.swa_utils` runs the same recipe on the same data and architecture as the reference."
    ))
    for task, result in quality["tasks"].items():
        spec = result["spec"]
        lines += ["", f"### {task}: {result['metric']} ({'higher' if task == 'digits' else 'lower'} is better)", ""]
        lines.append(
            f"MLP with {spec['hidden']} hidden units{' and batch norm' if spec['batch_norm'] else ''}, "
            f"{spec['epochs']} epochs of batches of {spec['batch']}, lr {spec['lr']}, swa_lr {spec['swa_lr']}."
        )
        rows = []
        for name, label in (("keras", "kerasswa (Keras 3, TensorFlow)"), ("torch", "torch.optim.swa_utils")):
            s = result[f"{name}_summary"]
            rows.append((label, *(f"{s[k][0]:.4f} ± {s[k][1]:.4f}" for k in ("sgd", "swa_iterate", "swa")),
                         f"{s['swa_minus_sgd'][0]:+.4f} ± {s['swa_minus_sgd'][1]:.4f}"))
        lines += ["", common.table(["implementation", "SGD", "SWA run, last iterate", "SWA average", "SWA - SGD"], rows)]
    return lines


def quality_plot(quality):
    curves = quality["tasks"]["digits"]["keras"][0]["curves"]
    figure, axis = plt.subplots(figsize=(7, 4))
    epochs = range(1, len(curves["sgd"]) + 1)
    axis.plot(epochs, curves["sgd"], label="SGD baseline (cosine decay)")
    axis.plot(epochs, curves["swa_iterate"], label="SWA run: training weights")
    axis.plot(epochs, curves["swa"], marker="o", markersize=3, label="SWA run: averaged weights")
    axis.set_xlabel("epoch")
    axis.set_ylabel("test accuracy")
    axis.set_title("digits, seed 0")
    values = [v for c in curves.values() for v in c if v == v]
    axis.set_ylim(max(min(values), 0.8), 1.0)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(HERE / "accuracy.png", dpi=110)


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
        lines += quality_section(quality) + ["", "![test accuracy per epoch](accuracy.png)", ""]
        quality_plot(quality)
    lines += ["## Commands", ""]
    for run in runs + [r for r in (profile, memory, quality) if r]:
        lines.append(f"- `{run['command']}`")
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
