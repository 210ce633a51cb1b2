"""The benefit of SWA: the averaged model against plain SGD at the same
training budget, on data shipped with scikit-learn, over several seeds, with
PyTorch's torch.optim.swa_utils on the same data and architecture as the
reference implementation. Writes results/quality.json.

Recipe (SWA paper, Izmailov et al. 2018): the learning rate decays (cosine)
from `lr` to `swa_lr` over the first 75% of the budget, then stays at
`swa_lr` while the weights are averaged once per epoch; batch-norm statistics
are recomputed for the average at the end. The baseline is SGD with the same
momentum whose learning rate decays (cosine) over the whole budget to
`lr / 100`.

    KERAS_BACKEND=tensorflow python bench/quality.py [--seeds 5]
"""

import argparse
import math

import common  # noqa: F401  (sets the environment first)
import keras
import numpy as np
from sklearn import datasets

from kerasswa import SWA, SWACallback, SWALearningRateSchedule, update_bn

TASKS = {
    # Classification: an MLP with batch norm, test accuracy (higher is better).
    "digits": dict(epochs=40, batch=32, lr=0.05, swa_lr=0.01, hidden=64, batch_norm=True),
    # Regression: an MLP without batch norm, test MSE in standard units (lower is better).
    "diabetes": dict(epochs=100, batch=32, lr=0.01, swa_lr=0.005, hidden=32, batch_norm=False),
}
SWA_START = 0.75


def load(task):
    if task == "digits":
        bunch = datasets.load_digits()
        x, y = (bunch.data / 16.0).astype("float32"), bunch.target.astype("int64")
        n_train = 1200
    else:
        bunch = datasets.load_diabetes()
        x, y = bunch.data.astype("float32"), bunch.target.astype("float32")[:, None]
        n_train = 300
    order = np.random.default_rng(0).permutation(len(x))  # one split for every seed
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    if task == "diabetes":
        mean, std = x_train.mean(0), x_train.std(0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return x_train, y_train, x_test, y_test


def steps_of(task, n_train):
    spec = TASKS[task]
    per_epoch = math.ceil(n_train / spec["batch"])
    return per_epoch, per_epoch * spec["epochs"], int(SWA_START * spec["epochs"]) * per_epoch


def keras_model(task, features):
    spec = TASKS[task]
    layers = [keras.Input((features,)), keras.layers.Dense(spec["hidden"])]
    if spec["batch_norm"]:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.Dense(10 if task == "digits" else 1)]
    return keras.Sequential(layers)


def keras_runs(task, seed, data, curves=False):
    """Test metrics of the SGD baseline, of the SWA run's last iterate and of
    its average; with `curves`, also their values after every epoch."""
    spec = TASKS[task]
    x_train, y_train, x_test, y_test = data
    per_epoch, total, start = steps_of(task, len(x_train))
    if task == "digits":
        loss, metric = keras.losses.SparseCategoricalCrossentropy(from_logits=True), "accuracy"
    else:
        loss, metric = "mse", "mse"
    fit = dict(batch_size=spec["batch"], epochs=spec["epochs"], verbose=0)
    if curves:
        fit["validation_data"] = (x_test, y_test)

    keras.utils.set_random_seed(seed)
    baseline = keras_model(task, x_train.shape[1])
    schedule = keras.optimizers.schedules.CosineDecay(spec["lr"], total, alpha=0.01)
    baseline.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9), loss=loss, metrics=[metric])
    sgd_history = baseline.fit(x_train, y_train, **fit).history

    keras.utils.set_random_seed(seed)
    model = keras_model(task, x_train.shape[1])
    decay = keras.optimizers.schedules.CosineDecay(spec["lr"], start, alpha=spec["swa_lr"] / spec["lr"])
    schedule = SWALearningRateSchedule(decay, spec["swa_lr"], start_averaging=start)
    optimizer = SWA(keras.optimizers.SGD(schedule, momentum=0.9), start_averaging=start, average_period=per_epoch)
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    score = lambda m: m.evaluate(x_test, y_test, verbose=0, return_dict=True)[metric]  # noqa: E731
    result = dict(sgd=score(baseline))
    bn_data = x_train if spec["batch_norm"] else None
    if curves:
        # The callback scores the average after every epoch and leaves it in the model.
        callback = SWACallback(bn_data=bn_data, validation_data=(x_test, y_test))
        swa_history = model.fit(x_train, y_train, callbacks=[callback], **fit).history
        result.update(swa_iterate=swa_history[f"val_{metric}"][-1], swa=score(model))
        result["curves"] = dict(
            sgd=sgd_history[f"val_{metric}"],
            swa_iterate=swa_history[f"val_{metric}"],
            swa=swa_history[f"val_swa_{metric}"],
        )
    else:
        model.fit(x_train, y_train, **fit)
        result["swa_iterate"] = score(model)
        optimizer.assign_average_vars(model.variables)
        if bn_data is not None:
            update_bn(model, bn_data)
        result["swa"] = score(model)
    return result


def torch_runs(task, seed, data):
    """The same recipe with torch.optim.swa_utils (AveragedModel, SWALR-free
    schedule identical to the Keras one, update_bn)."""
    import torch
    from torch.optim import swa_utils

    spec = TASKS[task]
    x_train, y_train, x_test, y_test = (torch.from_numpy(np.asarray(a)) for a in data)
    per_epoch, total, start = steps_of(task, len(x_train))
    classify = task == "digits"

    def model():
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(x_train.shape[1], spec["hidden"])]
        if spec["batch_norm"]:
            layers.append(torch.nn.BatchNorm1d(spec["hidden"], momentum=0.01, eps=1e-3))
        layers += [torch.nn.ReLU(), torch.nn.Linear(spec["hidden"], 10 if classify else 1)]
        return torch.nn.Sequential(*layers)

    loss_fn = torch.nn.CrossEntropyLoss() if classify else torch.nn.MSELoss()

    def score(net):
        net.eval()
        with torch.no_grad():
            out = net(x_test)
        net.train()
        return float((out.argmax(1) == y_test).float().mean()) if classify else float(loss_fn(out, y_test))

    def cosine(step, length, initial, final):
        progress = min(step, length) / length
        return final + (initial - final) * (1 + math.cos(math.pi * progress)) / 2

    def train(net, lr_at, averaged=None):
        optimizer = torch.optim.SGD(net.parameters(), lr=spec["lr"], momentum=0.9)
        generator = torch.Generator().manual_seed(seed)
        step = 0
        for epoch in range(spec["epochs"]):
            for batch in torch.randperm(len(x_train), generator=generator).split(spec["batch"]):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                optimizer.zero_grad()
                loss_fn(net(x_train[batch]), y_train[batch]).backward()
                optimizer.step()
                step += 1
            if averaged is not None and step > start:
                averaged.update_parameters(net)
        return net

    baseline = train(model(), lambda s: cosine(s, total, spec["lr"], spec["lr"] / 100))
    net = model()
    averaged = swa_utils.AveragedModel(net)
    train(net, lambda s: cosine(s, start, spec["lr"], spec["swa_lr"]) if s < start else spec["swa_lr"], averaged)
    if spec["batch_norm"]:
        swa_utils.update_bn(torch.utils.data.DataLoader(x_train, batch_size=spec["batch"]), averaged)
    return dict(sgd=score(baseline), swa_iterate=score(net), swa=score(averaged))


def summarize(per_seed):
    swa, sgd = [r["swa"] for r in per_seed], [r["sgd"] for r in per_seed]
    differences = [a - b for a, b in zip(swa, sgd)]
    summary = {name: common.mean_sd([r[name] for r in per_seed]) for name in ("sgd", "swa_iterate", "swa")}
    mean, sd = common.mean_sd(differences)
    summary["swa_minus_sgd"] = (mean, sd / math.sqrt(len(differences)))
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    arguments = parser.parse_args()
    results = {}
    for task in TASKS:
        data = load(task)
        keras_results = [keras_runs(task, seed, data, curves=seed == 0) for seed in range(arguments.seeds)]
        torch_results = [torch_runs(task, seed, data) for seed in range(arguments.seeds)]
        results[task] = dict(
            metric="test accuracy" if task == "digits" else "test MSE (standardized)",
            keras=keras_results, torch=torch_results,
            keras_summary=summarize(keras_results), torch_summary=summarize(torch_results),
            spec=TASKS[task],
        )
        for name in ("keras", "torch"):
            s = results[task][f"{name}_summary"]
            print(
                f"{task} {name}: SGD {s['sgd'][0]:.4f} ± {s['sgd'][1]:.4f}, SWA run's last iterate "
                f"{s['swa_iterate'][0]:.4f} ± {s['swa_iterate'][1]:.4f}, SWA average {s['swa'][0]:.4f} "
                f"± {s['swa'][1]:.4f}, SWA - SGD {s['swa_minus_sgd'][0]:+.4f} (SE {s['swa_minus_sgd'][1]:.4f})",
                flush=True,
            )
    common.write("quality", dict(tasks=results, seeds=arguments.seeds, swa_start=SWA_START))


if __name__ == "__main__":
    main()
