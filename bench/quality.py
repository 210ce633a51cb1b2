"""What SWA and SWAG bring: test accuracy, NLL and calibration against plain
SGD at the same training budget. Writes results/quality.json.

Protocol (fixed before any run; nothing below was tuned on a test set)

- Data sets, one fixed train/test split each:
  (a) `mnist1d`: MNIST-1D (Greydanus 2020), generated offline by
      `mnist1d.data.make_dataset()` with its default arguments (seed 42):
      4000 training and 1000 test sequences of 40 values, 10 classes;
  (b) `mnist1d-noisy`: the same, with 30% of the training labels (chosen with
      NumPy seed 0) replaced by a class drawn uniformly from the 9 others;
      test labels clean;
  (c) `digits`: scikit-learn's `load_digits()` (8x8 images / 16), 1200
      training and 597 test images, split once with NumPy seed 0.
  Features are standardized with the training mean and deviation.
- Models (fixed per data set, no batch normalization, so no statistics need
  refreshing): MNIST-1D, an MLP 40-100-100-10 (ReLU, the size of mnist1d's
  own MLP baseline); digits, an MLP 64-64-10 (ReLU). Softmax outputs.
- Budget: 40 epochs of batches of 128 for every method. All methods but SGD
  come from one training run per seed (SWA does not change the trajectory).
- Recipe, from the SWA paper (Izmailov et al. 2018) and its code
  (timgaripov/swa, `train.py`, also SWAG's wjmaddox/swa_gaussian, which uses
  it with lr_init 0.05, swa_lr 0.01, momentum 0.9, weight decay 5e-4,
  averaging once per epoch from epoch 161 of 300 for VGG-16 on CIFAR): SGD
  with momentum 0.9 and weight decay 5e-4 (Keras's decoupled form); the
  learning rate, a function of the epoch e, is lr_init = 0.05 while
  e / T <= 0.5, falls linearly to r * lr_init at e / T = 0.9 and stays
  there. SGD: T = 40 (the whole budget), r = 0.01. SWA/SWAG: T = 20, the
  averaging start, r = swa_lr / lr_init = 0.2, so the rate is constant at
  swa_lr = 0.01 from the 19th epoch on; a snapshot at the end of each of epochs
  21..40 (20 snapshots, which fill `max_rank = 20`). The reference starts at
  161/300 = 54% of its budget; 50% here gives 20 snapshots in 40 epochs.
- Methods: SGD (the last weights of the SGD run); SWA (the average of the
  snapshots, `assign_average_vars`); SWAG-diagonal and SWAG, both
  `swag_predict(num_samples=30, scale=0.5)` on the same `SWAG(max_rank=20)`
  run, with `covariance=False` and `True`. SWAG-diagonal's Gaussian uses only
  the mean and second moment, which do not depend on `max_rank`: it is
  exactly what `SWAG(max_rank=0)` would fit on the same trajectory.
- Seeds 0..9 (initialisation, batch order, SWAG samples); the SGD and SWAG
  runs of a seed start from the same weights. Metrics on the test set:
  accuracy, NLL (mean -log p(true class)), ECE with 15 equal-width bins of
  the top-class confidence. Reported: each method's mean over seeds and its
  paired difference to SGD per seed, mean ± standard error (sd / sqrt(10)).
- The reliability diagram pools the 10 seeds' test predictions per method.
- Backend: JAX, whatever `KERAS_BACKEND` says (`--backend` picks another).
  The study fits 60 small models and draws 1800 SWAG samples; on 2 CPU
  cores TensorFlow spends about 0.25 s of fixed cost in each
  `model.predict` call and 0.15 s in each eager `sample_vars`, so one
  `swag_predict(num_samples=30)` takes 12 s there against 1.8 s on JAX,
  and the study would take over half an hour. JAX compiles each new model's
  training step: a compilation cache (in the temporary directory) lets the
  models after the first reuse it.

    python bench/quality.py [--seeds 10] [--epochs 40] [--backend jax]
"""

import argparse
import math
import os
import sys
import tempfile
import time


def _backend_from_arguments(default="jax"):
    """The value of `--backend` (parsed fully in `main`), set before Keras
    is imported."""
    for i, argument in enumerate(sys.argv):
        if argument.startswith("--backend="):
            return argument.split("=", 1)[1]
        if argument == "--backend" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return default


os.environ["KERAS_BACKEND"] = _backend_from_arguments()
if os.environ["KERAS_BACKEND"] == "jax":
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "kerasswa-bench-jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import common  # noqa: E402, F401  (sets the environment first)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from kerasswa import SWAG, swag_predict  # noqa: E402

LR_INIT, SWA_LR, FINAL_RATIO, MOMENTUM, WEIGHT_DECAY = 0.05, 0.01, 0.01, 0.9, 5e-4
BATCH, NOISE, BINS, SAMPLES, SCALE, MAX_RANK = 128, 0.3, 15, 30, 0.5, 20
HIDDEN = {"mnist1d": (100, 100), "mnist1d-noisy": (100, 100), "digits": (64,)}
METHODS = ("SGD", "SWA", "SWAG-diagonal", "SWAG")
METRICS = ("accuracy", "nll", "ece")


class PaperSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of the SWA paper's code, by epoch: `lr_init` for
    the first half of `epochs`, then linearly down to `ratio * lr_init` at
    90% of them, then constant."""

    def __init__(self, lr_init, ratio, epochs, steps_per_epoch):
        self.lr_init, self.ratio, self.epochs, self.steps_per_epoch = lr_init, ratio, epochs, steps_per_epoch

    def __call__(self, step):
        t = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch) / self.epochs
        falling = 1.0 - (1.0 - self.ratio) * (t - 0.5) / 0.4
        factor = ops.where(t <= 0.5, 1.0, ops.where(t <= 0.9, falling, self.ratio))
        return self.lr_init * factor

    def get_config(self):
        return dict(lr_init=self.lr_init, ratio=self.ratio, epochs=self.epochs,
                    steps_per_epoch=self.steps_per_epoch)


def load_all():
    from mnist1d.data import get_dataset_args, make_dataset
    from sklearn import datasets

    mnist = make_dataset(get_dataset_args())  # generated here: no download
    clean = (mnist["x"], mnist["y"], mnist["x_test"], mnist["y_test"])
    noisy_labels = mnist["y"].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(noisy_labels), int(NOISE * len(noisy_labels)), replace=False)
    # A uniformly drawn *other* class: shift by 1..9 modulo 10.
    noisy_labels[flipped] = (noisy_labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    digits = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    x, y = digits.data[order] / 16.0, digits.target[order]
    data = {
        "mnist1d": clean,
        "mnist1d-noisy": (mnist["x"], noisy_labels, mnist["x_test"], mnist["y_test"]),
        "digits": (x[:1200], y[:1200], x[1200:], y[1200:]),
    }
    standardized = {}
    for name, (x_train, y_train, x_test, y_test) in data.items():
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        standardized[name] = (
            ((x_train - mean) / std).astype("float32"), y_train.astype("int64"),
            ((x_test - mean) / std).astype("float32"), y_test.astype("int64"),
        )
    return standardized, float((noisy_labels != mnist["y"]).mean())


def make_model(name, features):
    layers = [keras.Input((features,))]
    layers += [keras.layers.Dense(width, activation="relu") for width in HIDDEN[name]]
    return keras.Sequential(layers + [keras.layers.Dense(10, activation="softmax")])


def scores(probabilities, labels):
    """Accuracy, NLL and 15-bin ECE of class probabilities."""
    probabilities = np.asarray(probabilities, "float64")
    confidence, predicted = probabilities.max(1), probabilities.argmax(1)
    correct = predicted == labels
    nll = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None)).mean()
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    ece = sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
        for b in range(BINS) if (bins == b).any()
    )
    return dict(accuracy=float(correct.mean()), nll=float(nll), ece=float(ece))


def reliability(probabilities, labels):
    """Per confidence bin: count, summed confidence, number correct."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    bins = np.minimum((confidence * BINS).astype(int), BINS - 1)
    return np.stack([
        np.bincount(bins, minlength=BINS),
        np.bincount(bins, weights=confidence, minlength=BINS),
        np.bincount(bins, weights=correct, minlength=BINS),
    ])


def run_seed(name, seed, data, epochs):
    """The test probabilities of each method for one seed."""
    x_train, y_train, x_test, y_test = data
    per_epoch = math.ceil(len(x_train) / BATCH)
    swa_start = epochs // 2
    fit = dict(batch_size=BATCH, epochs=epochs, verbose=0)
    predict = lambda m: m.predict(x_test, batch_size=len(x_test), verbose=0)  # noqa: E731

    keras.utils.set_random_seed(seed)
    baseline = make_model(name, x_train.shape[1])
    schedule = PaperSchedule(LR_INIT, FINAL_RATIO, epochs, per_epoch)
    baseline.compile(keras.optimizers.SGD(schedule, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
                     "sparse_categorical_crossentropy")
    baseline.fit(x_train, y_train, **fit)

    keras.utils.set_random_seed(seed)
    model = make_model(name, x_train.shape[1])
    schedule = PaperSchedule(LR_INIT, SWA_LR / LR_INIT, swa_start, per_epoch)
    optimizer = SWAG(
        keras.optimizers.SGD(schedule, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
        # Update t (from 0) ends epoch (t + 1) / per_epoch: a snapshot at the
        # end of each epoch after the first `swa_start`.
        start_averaging=(swa_start + 1) * per_epoch - 1, average_period=per_epoch, max_rank=MAX_RANK,
    )
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, **fit)
    assert optimizer.snapshot_count == epochs - swa_start, optimizer.snapshot_count

    probabilities = {"SGD": predict(baseline)}
    for method, covariance in (("SWAG-diagonal", False), ("SWAG", True)):
        probabilities[method] = swag_predict(
            model, x_test, num_samples=SAMPLES, scale=SCALE, covariance=covariance,
            batch_size=len(x_test), seed=seed)
    optimizer.assign_average_vars(model.variables)
    probabilities["SWA"] = predict(model)
    return probabilities


def summarize(per_seed):
    """Each method's mean over seeds and its paired difference to SGD:
    `{method: {metric: [mean, standard error]}}`."""
    def mean_se(values):
        mean, sd = common.mean_sd(values)
        return [mean, sd / math.sqrt(len(values))]

    means = {m: {k: mean_se([r[m][k] for r in per_seed]) for k in METRICS} for m in METHODS}
    differences = {
        m: {k: mean_se([r[m][k] - r["SGD"][k] for r in per_seed]) for k in METRICS} for m in METHODS[1:]
    }
    return means, differences


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--backend", default="jax", choices=("jax", "tensorflow", "torch"))
    arguments = parser.parse_args()
    started = time.perf_counter()
    data, noise_rate = load_all()
    results = {}
    for name, split in data.items():
        per_seed, pooled = [], {m: np.zeros((3, BINS)) for m in METHODS}
        for seed in range(arguments.seeds):
            probabilities = run_seed(name, seed, split, arguments.epochs)
            per_seed.append({m: scores(p, split[3]) for m, p in probabilities.items()})
            for m, p in probabilities.items():
                pooled[m] += reliability(np.asarray(p, "float64"), split[3])
        means, differences = summarize(per_seed)
        results[name] = dict(
            train=len(split[0]), test=len(split[2]), hidden=list(HIDDEN[name]),
            per_seed=per_seed, means=means, differences=differences,
            reliability={m: dict(zip(("count", "confidence_sum", "correct_sum"), b.tolist()))
                         for m, b in pooled.items()},
        )
        print(f"{name} ({time.perf_counter() - started:.0f} s):", flush=True)
        for m in METHODS:
            line = ", ".join(f"{k} {means[m][k][0]:.4f}" for k in METRICS)
            if m in differences:
                line += "; - SGD: " + ", ".join(
                    f"{k} {differences[m][k][0]:+.4f} ± {differences[m][k][1]:.4f}" for k in METRICS)
            print(f"  {m}: {line}", flush=True)
    runtime = time.perf_counter() - started
    print(f"total {runtime:.0f} s")
    common.write("quality", dict(
        datasets=results, seeds=arguments.seeds, epochs=arguments.epochs, swa_start=arguments.epochs // 2,
        batch=BATCH, lr_init=LR_INIT, swa_lr=SWA_LR, final_ratio=FINAL_RATIO, momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY, label_noise=noise_rate, bins=BINS, num_samples=SAMPLES, scale=SCALE,
        max_rank=MAX_RANK, methods=list(METHODS), runtime_s=runtime,
    ))


if __name__ == "__main__":
    main()
