"""What the averages bring: test accuracy, NLL and calibration of SWA, SWAG,
exponential moving averages, the power-function EMA and post-hoc EMA,
against plain SGD at the same training budget and against each other on one
trajectory. Writes results/quality.json.

Protocol (fixed before any run; nothing below was tuned on a test set)

- Data sets, one fixed train/validation/test split each:
  (a) `mnist1d`: MNIST-1D (Greydanus 2020), generated offline by
      `mnist1d.data.make_dataset()` with its default arguments (seed 42):
      4000 training sequences of 40 values, of which the last 500 are the
      validation set (3500 left to train on), and 1000 test sequences, 10
      classes;
  (b) `mnist1d-noisy`: the same, with 30% of the 4000 training labels
      (chosen with NumPy seed 0) replaced by a class drawn uniformly from the
      9 others before the split, so the validation labels are as noisy as
      the training labels (a user has no clean ones); test labels clean;
  (c) `digits`: scikit-learn's `load_digits()` (8x8 images / 16), shuffled
      once with NumPy seed 0: 1000 training, 200 validation and 597 test
      images;
  (d) `mnist1d-bn`: the data of (a) with a model that has batch
      normalization.
  Features are standardized with the training mean and deviation.
- Models (fixed per data set): MNIST-1D, an MLP 40-100-100-10 (ReLU, the
  size of mnist1d's own MLP baseline); digits, an MLP 64-64-10 (ReLU);
  `mnist1d-bn`, the MNIST-1D MLP with `BatchNormalization` (Keras's
  defaults, momentum 0.99) between each hidden Dense layer and its ReLU.
  Softmax outputs. (a)-(c) have no batch normalization, so no statistics
  need refreshing.
- Budget: 40 epochs of batches of 128 for every method.
- Recipe, from the SWA paper (Izmailov et al. 2018) and its code
  (timgaripov/swa, `train.py`, also SWAG's wjmaddox/swa_gaussian, which uses
  it with lr_init 0.05, swa_lr 0.01, momentum 0.9, weight decay 5e-4,
  averaging once per epoch from epoch 161 of 300 for VGG-16 on CIFAR): SGD
  with momentum 0.9 and weight decay 5e-4 (Keras's decoupled form); the
  learning rate, a function of the epoch e, is lr_init = 0.05 while
  e / T <= 0.5, falls linearly to r * lr_init at e / T = 0.9 and stays
  there. SGD: T = 40 (the whole budget), r = 0.01. Every average: T = 20,
  the SWA start, r = swa_lr / lr_init = 0.2, so the rate is constant at
  swa_lr = 0.01 from the 19th epoch on. The reference starts at 161/300 =
  54% of its budget; 50% here gives 20 snapshots in 40 epochs.
- Methods. SGD: the last weights of the SGD run. On the averaging
  trajectory (the second schedule), every average of it:
  - SWA: the mean of the weights at the end of each of epochs 21..40 (20
    snapshots, `assign_average_vars`); SWAG-diagonal and SWAG, both
    `swag_predict(num_samples=30, scale=0.5)` on the same
    `SWAG(max_rank=20)` run, with `covariance=False` and `True` (20
    snapshots fill `max_rank = 20`). SWAG-diagonal's Gaussian uses only the
    mean and second moment, which do not depend on `max_rank`: it is
    exactly what `SWAG(max_rank=0)` would fit on the same trajectory. Not
    on `mnist1d-bn`: each sample would need its own pass over the data to
    refresh the statistics, and the question there is the statistics.
  - EMA 0.99 and EMA 0.999: `averaging=0.99` / `0.999`, a fixed decay per
    update from the first update on (the first snapshot copies the
    weights). 0.99 is Keras's `ema_momentum` default, about 100 updates
    long (3.6 epochs of MNIST-1D's 28 updates, 12.5 of digits' 8). 0.999 is
    what a recipe for a ten times longer run would use: 1000 updates, about
    the whole run (MNIST-1D 1120 updates, digits 320), so the weights of
    the first update keep 0.999 ** 1119 = 33% of the final average on
    MNIST-1D and 0.999 ** 319 = 73% on digits.
  - EMA warm-up: `kerasswa.EMA()` with its defaults (decay 0.9999, power
    2/3, inv_gamma 1): the decay warms up to 0.9907 at the last update of
    MNIST-1D (about 110 updates long) and 0.979 on digits (about 50).
  - post-hoc EMA: `PostHocEMA(sigma_rels=(0.05, 0.10))` (EDM2's pair,
    `start_averaging=0`, `average_period=1`), its profiles saved at the end
    of each epoch (`PostHocEMACheckpoint`, 40 saves); after training,
    `posthoc_ema` rebuilds the power EMA of each sigma_rel of the grid
    0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.125, 0.15, 0.20, 0.25
    at the end of training, and the one with the lowest validation NLL is
    the method's model (chosen per seed; the test set is never looked at).
    `posthoc_ema_error` for this schedule is at most 0.027 over the grid
    (at its ends, 0.02 and 0.25; at most 0.005 from 0.04 to 0.20).
  - power EMA: `SWA(averaging=PowerEMA(sigma_rel=<the chosen one>))` with
    the same snapshots, trained directly: the post-hoc choice without the
    reconstruction (it must agree within the reconstruction error).
  On `mnist1d-bn` (SWA, power EMA and post-hoc EMA only) each average but
  post-hoc EMA comes twice from one run: with its batch-norm statistics
  averaged by the same rule at the same snapshots
  (`SWACallback(average_non_trainable=True)`), and recomputed for the
  averaged weights by `update_bn` over the training inputs (one pass, in
  batches of 500). Post-hoc EMA rebuilds only trainable weights: its
  candidates are scored with recomputed statistics, and it is also shown
  with the statistics the last training step left ("last BN"), the mistake
  of forgetting `update_bn`. The EMAs of fixed decay and with warm-up are
  left out there for time: `SWACallback` averages the statistics eagerly
  after each batch, which on JAX here makes a run that snapshots every
  update about four times as long (4.6 s against 1.2 s).
- One trajectory, several runs. An SWA-family optimizer keeps one average
  (PostHocEMA one per profile), and a model has one optimizer, so each
  average above comes from its own run. The runs of one seed start from the
  same weights and draw the same batches, and an average never changes the
  training weights, so they follow one trajectory: the script checks that
  their training weights end bit for bit equal (on JAX; the largest
  difference is written to the results). The other way, one PostHocEMA run
  whose saves feed everything, cannot give SWA or a fixed-decay EMA (their
  profiles are not power profiles, nor combinations of them), and
  recording the raw weights at every update to average them in NumPy would
  test NumPy, not kerasswa, and cost a device-to-host copy per update. A
  run costs about a second here.
- Seeds 0..9 (initialisation, batch order, SWAG samples); the SGD and
  averaging runs of a seed start from the same weights. Metrics on the
  test set: accuracy, NLL (mean -log p(true class)), ECE with 15
  equal-width bins of the top-class confidence; and the NLL on the
  validation set. Reported: each method's mean over seeds and paired
  differences per seed, mean ± standard error (sd / sqrt(10)).
- The reliability diagram pools the 10 seeds' test predictions of SGD, SWA
  and SWAG per data set (a)-(c).
- Backend: JAX, whatever `KERAS_BACKEND` says (`--backend` picks another).
  The study fits 250 small models, rebuilds 520 post-hoc EMAs and draws
  1800 SWAG samples, in about 5 minutes on 2 CPU cores; there TensorFlow
  spends about 0.25 s of fixed cost in each `model.predict` call and 0.15 s
  in each eager `sample_vars`, so one `swag_predict(num_samples=30)` takes
  12 s against 1.8 s on JAX, and the study would take far longer. JAX compiles each new model's
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

from kerasswa import (  # noqa: E402
    EMA,
    SWA,
    SWAG,
    PostHocEMA,
    PostHocEMACheckpoint,
    PowerEMA,
    SWACallback,
    posthoc_ema,
    posthoc_ema_error,
    swag_predict,
    update_bn,
)

LR_INIT, SWA_LR, FINAL_RATIO, MOMENTUM, WEIGHT_DECAY = 0.05, 0.01, 0.01, 0.9, 5e-4
BATCH, NOISE, BINS, SAMPLES, SCALE, MAX_RANK = 128, 0.3, 15, 30, 0.5, 20
VALIDATION = {"mnist1d": 500, "digits": 200}
DIGITS_TRAIN = 1200
HIDDEN = {"mnist1d": (100, 100), "mnist1d-noisy": (100, 100), "digits": (64,), "mnist1d-bn": (100, 100)}
BATCH_NORM = ("mnist1d-bn",)
BN_BATCH = 500  # update_bn's batches: 7 eager calls over the 3500 inputs, not 28
SIGMA_RELS = (0.05, 0.10)
GRID = (0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.125, 0.15, 0.20, 0.25)
EMA_DECAYS = (0.99, 0.999)
# The methods of the SGD-against-SWA(G) comparison and its reliability diagram.
METHODS = ("SGD", "SWA", "SWAG-diagonal", "SWAG")
METRICS = ("accuracy", "nll", "ece")
# Averaged and recomputed batch-norm statistics, as the method names say.
AVERAGED_BN, RECOMPUTED_BN, LAST_BN = ", averaged BN", ", recomputed BN", ", last BN"


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
    """`{name: (x_train, y_train, x_val, y_val, x_test, y_test)}` and the
    fraction of labels flipped."""
    from mnist1d.data import get_dataset_args, make_dataset
    from sklearn import datasets

    mnist = make_dataset(get_dataset_args())  # generated here: no download
    noisy_labels = mnist["y"].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(noisy_labels), int(NOISE * len(noisy_labels)), replace=False)
    # A uniformly drawn *other* class: shift by 1..9 modulo 10.
    noisy_labels[flipped] = (noisy_labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    digits = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    x, y = digits.data[order] / 16.0, digits.target[order]
    clean = (mnist["x"], mnist["y"], mnist["x_test"], mnist["y_test"])
    data = {
        "mnist1d": clean,
        "mnist1d-noisy": (mnist["x"], noisy_labels, mnist["x_test"], mnist["y_test"]),
        "digits": (x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], x[DIGITS_TRAIN:], y[DIGITS_TRAIN:]),
        "mnist1d-bn": clean,
    }
    standardized = {}
    for name, (x_all, y_all, x_test, y_test) in data.items():
        held = VALIDATION["digits" if name == "digits" else "mnist1d"]
        x_train, y_train, x_val, y_val = x_all[:-held], y_all[:-held], x_all[-held:], y_all[-held:]
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        standardized[name] = tuple(
            part.astype(kind) if kind == "int64" else ((part - mean) / std).astype(kind)
            for part, kind in zip((x_train, y_train, x_val, y_val, x_test, y_test),
                                  ("float32", "int64") * 3)
        )
    return standardized, float((noisy_labels != mnist["y"]).mean())


def make_model(name, features):
    layers = [keras.Input((features,))]
    for width in HIDDEN[name]:
        if name in BATCH_NORM:
            layers += [keras.layers.Dense(width), keras.layers.BatchNormalization(), keras.layers.ReLU()]
        else:
            layers.append(keras.layers.Dense(width, activation="relu"))
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


def nll(probabilities, labels):
    return scores(probabilities, labels)["nll"]


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


class _TrainingWeights(keras.callbacks.Callback):
    """Keeps the model's weights at the end of `fit`, before any callback
    after it in the list puts averages in their place."""

    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()


class Study:
    """The runs of one data set and seed."""

    def __init__(self, name, seed, split, epochs):
        self.name, self.seed, self.epochs = name, seed, epochs
        self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test = split
        self.per_epoch = math.ceil(len(self.x_train) / BATCH)
        self.swa_start = epochs // 2
        self.batch_norm = name in BATCH_NORM
        self.trajectory = []  # the training weights each averaging run ended with
        self.probabilities = {}  # method: test probabilities
        self.validation_nll = {}  # method: validation NLL

    def inner(self, sgd=False):
        """SGD with the schedule of the SGD baseline or of the averages."""
        if sgd:
            schedule = PaperSchedule(LR_INIT, FINAL_RATIO, self.epochs, self.per_epoch)
        else:
            schedule = PaperSchedule(LR_INIT, SWA_LR / LR_INIT, self.swa_start, self.per_epoch)
        return keras.optimizers.SGD(schedule, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def fit(self, optimizer, callbacks=()):
        """A model trained from the seed's initial weights; an averaging
        run's training weights join `self.trajectory`."""
        keras.utils.set_random_seed(self.seed)
        model = make_model(self.name, self.x_train.shape[1])
        model.compile(optimizer, "sparse_categorical_crossentropy")
        recorder = _TrainingWeights()
        model.fit(self.x_train, self.y_train, batch_size=BATCH, epochs=self.epochs, verbose=0,
                  callbacks=[recorder, *callbacks])
        if isinstance(optimizer, SWA):
            self.trajectory.append(recorder.weights)
        return model

    def predict(self, model):
        """The model's validation NLL and test probabilities (one call)."""
        both = np.concatenate([self.x_val, self.x_test])
        probabilities = model.predict(both, batch_size=len(both), verbose=0)
        return nll(probabilities[: len(self.x_val)], self.y_val), probabilities[len(self.x_val):]

    def score(self, method, model, predicted=None):
        """Records the model's (or the `predict` result's) validation NLL
        and test probabilities as those of `method`."""
        self.validation_nll[method], self.probabilities[method] = predicted or self.predict(model)

    def recompute_bn(self, model):
        update_bn(model, self.x_train, batch_size=BN_BATCH)

    def averaged(self, method, optimizer):
        """Trains with an SWA-family optimizer and scores its average (twice
        with batch norm: averaged statistics, then recomputed)."""
        if not self.batch_norm:
            model = self.fit(optimizer)
            optimizer.assign_average_vars(model.variables)
            self.score(method, model)
            return model
        model = self.fit(optimizer, [SWACallback(average_non_trainable=True)])
        self.score(method + AVERAGED_BN, model)
        self.recompute_bn(model)
        self.score(method + RECOMPUTED_BN, model)
        return model

    def every_update(self, averaging):
        return SWA(self.inner(), start_averaging=0, average_period=1, averaging=averaging)

    def run(self):
        """Every method; returns the post-hoc sweep of this seed."""
        self.score("SGD", self.fit(self.inner(sgd=True)))

        # Update t (from 0) ends epoch (t + 1) / per_epoch: a snapshot at the
        # end of each epoch after the first `swa_start`.
        swa = dict(start_averaging=(self.swa_start + 1) * self.per_epoch - 1, average_period=self.per_epoch)
        if self.batch_norm:
            self.averaged("SWA", SWA(self.inner(), **swa))
        else:
            optimizer = SWAG(self.inner(), max_rank=MAX_RANK, **swa)
            model = self.fit(optimizer)
            assert optimizer.snapshot_count == self.epochs - self.swa_start, optimizer.snapshot_count
            for method, covariance in (("SWAG-diagonal", False), ("SWAG", True)):
                self.probabilities[method] = swag_predict(
                    model, self.x_test, num_samples=SAMPLES, scale=SCALE, covariance=covariance,
                    batch_size=len(self.x_test), seed=self.seed)
            optimizer.assign_average_vars(model.variables)
            self.score("SWA", model)
            for decay in EMA_DECAYS:
                self.averaged(f"EMA {decay}", self.every_update(decay))
            self.averaged("EMA warm-up", self.every_update(EMA()))

        sweep = self.posthoc()
        model = self.averaged("power EMA", self.every_update(PowerEMA(sigma_rel=sweep["chosen"])))
        direct = [ops.convert_to_numpy(v) for v in model.trainable_variables]
        rebuilt = sweep.pop("weights")
        sweep["direct_difference"] = float(
            math.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(direct, rebuilt)))
            / math.sqrt(sum((a ** 2).sum() for a in direct))
        )
        first = self.trajectory[0]
        sweep["trajectory_difference"] = float(max(
            np.abs(a - b).max() for weights in self.trajectory[1:] for a, b in zip(first, weights)
        ))
        return sweep

    def posthoc(self):
        """The post-hoc EMA run and its sweep over `GRID`."""
        with tempfile.TemporaryDirectory() as folder:
            model = self.fit(PostHocEMA(self.inner(), sigma_rels=SIGMA_RELS), [PostHocEMACheckpoint(folder)])
            last_statistics = [ops.copy(v) for v in model.non_trainable_variables]
            errors, predicted = [], []
            for sigma_rel in GRID:
                errors.append(posthoc_ema(model, folder, sigma_rel=sigma_rel))
                if self.batch_norm:
                    self.recompute_bn(model)
                predicted.append(self.predict(model))
            validation = [validation_nll for validation_nll, _ in predicted]
            best = int(np.argmin(validation))
            chosen = GRID[best]
            self.score("post-hoc EMA" + (RECOMPUTED_BN if self.batch_norm else ""), model, predicted[best])
            posthoc_ema(model, folder, sigma_rel=chosen)
            weights = [ops.convert_to_numpy(v) for v in model.trainable_variables]
            if self.batch_norm:
                for variable, value in zip(model.non_trainable_variables, last_statistics):
                    variable.assign(value)
                self.score("post-hoc EMA" + LAST_BN, model)
        return dict(chosen=chosen, error=errors[best], weights=weights, validation_nll=validation,
                    test_nll=[nll(p, self.y_test) for _, p in predicted], errors=errors)


def summarize(per_seed, methods):
    """Each method's mean over seeds and its paired difference to SGD:
    `{method: {metric: [mean, standard error]}}` (the validation NLL where
    the method has one)."""
    def mean_se(values):
        mean, sd = common.mean_sd(values)
        return [mean, sd / math.sqrt(len(values))]

    def keys(method):
        return [k for k in METRICS + ("val_nll",) if k in per_seed[0][method]]

    means = {m: {k: mean_se([r[m][k] for r in per_seed]) for k in keys(m)} for m in methods}
    differences = {
        m: {k: mean_se([r[m][k] - r["SGD"][k] for r in per_seed]) for k in keys(m)} for m in methods[1:]
    }
    return means, differences


def study_data_set(name, split, seeds, epochs):
    """The results of every seed on one data set."""
    started = time.perf_counter()
    per_seed, sweeps, pooled = [], [], {m: np.zeros((3, BINS)) for m in METHODS}
    for seed in range(seeds):
        study = Study(name, seed, split, epochs)
        sweeps.append(study.run())
        result = {}
        for method, probabilities in study.probabilities.items():
            result[method] = scores(probabilities, study.y_test)
            if method in study.validation_nll:
                result[method]["val_nll"] = study.validation_nll[method]
            if method in pooled:
                pooled[method] += reliability(np.asarray(probabilities, "float64"), study.y_test)
        per_seed.append(result)
    methods = list(per_seed[0])
    means, differences = summarize(per_seed, methods)
    updates = epochs * math.ceil(len(split[0]) / BATCH)
    return dict(
        train=len(split[0]), validation=len(split[2]), test=len(split[4]), hidden=list(HIDDEN[name]),
        batch_norm=name in BATCH_NORM, methods=methods, per_seed=per_seed, means=means,
        differences=differences, updates=updates,
        reliability={m: dict(zip(("count", "confidence_sum", "correct_sum"), b.tolist()))
                     for m, b in pooled.items() if m in methods},
        sweep=dict(
            per_seed=sweeps,
            planned_error=[posthoc_ema_error(s, updates, updates // epochs, sigma_rels=SIGMA_RELS) for s in GRID],
        ),
        runtime_s=time.perf_counter() - started,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--backend", default="jax", choices=("jax", "tensorflow", "torch"))
    parser.add_argument("--datasets", nargs="+", default=list(HIDDEN), choices=list(HIDDEN))
    arguments = parser.parse_args()
    started = time.perf_counter()
    data, noise_rate = load_all()
    results = {}
    for name in arguments.datasets:
        result = results[name] = study_data_set(name, data[name], arguments.seeds, arguments.epochs)
        print(f"{name} ({result['runtime_s']:.0f} s):", flush=True)
        for m in result["methods"]:
            means = result["means"][m]
            line = ", ".join(f"{k} {means[k][0]:.4f}" for k in means)
            print(f"  {m}: {line}", flush=True)
        sweeps = result["sweep"]["per_seed"]
        print(f"  chosen sigma_rel {[s['chosen'] for s in sweeps]}; post-hoc vs direct, relative weight "
              f"difference <= {max(s['direct_difference'] for s in sweeps):.2e}; training weights of the "
              f"averaging runs differ by <= {max(s['trajectory_difference'] for s in sweeps):.1e}", flush=True)
    runtime = time.perf_counter() - started
    print(f"total {runtime:.0f} s")
    common.write("quality", dict(
        datasets=results, seeds=arguments.seeds, epochs=arguments.epochs, swa_start=arguments.epochs // 2,
        batch=BATCH, lr_init=LR_INIT, swa_lr=SWA_LR, final_ratio=FINAL_RATIO, momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY, label_noise=noise_rate, bins=BINS, num_samples=SAMPLES, scale=SCALE,
        max_rank=MAX_RANK, methods=list(METHODS), grid=list(GRID), sigma_rels=list(SIGMA_RELS),
        ema_decays=list(EMA_DECAYS), runtime_s=runtime,
    ))


if __name__ == "__main__":
    main()
