"""Memory of SWA and SWAG: bytes of optimizer state per variant, checked
against the rule "inner optimizer state + one copy of the trainable weights
(SWAG: 2 + max_rank copies) + O(1)", and
the growth of peak process memory while a model is built and trained for a
few steps, per variant, each in its own process (the high-water mark is reset
after the imports, whose own peak would hide everything else; Linux only).
Writes results/memory-<backend>.json.

    KERAS_BACKEND=tensorflow python bench/memory.py
"""

import json
import os
import subprocess
import sys

import common  # noqa: F401  (sets the environment first)
import keras
import numpy as np

from kerasswa import SWA, SWAG

VARIANTS = {
    "SGD": lambda: keras.optimizers.SGD(0.01),
    "SWA(SGD)": lambda: SWA(keras.optimizers.SGD(0.01), average_period=1),
    "Adam": lambda: keras.optimizers.Adam(1e-4),
    "SWA(Adam)": lambda: SWA(keras.optimizers.Adam(1e-4), average_period=1),
    "SGD + Keras EMA": lambda: keras.optimizers.SGD(0.01, use_ema=True),
    "SWAG(SGD) max_rank=0": lambda: SWAG(keras.optimizers.SGD(0.01), average_period=1, max_rank=0),
    "SWAG(SGD) max_rank=20": lambda: SWAG(keras.optimizers.SGD(0.01), average_period=1, max_rank=20),
}
WIDTH, BATCH = 4096, 8  # one 4096x4096 Dense layer: 16.8M parameters, 67 MB


def nbytes(variables):
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def train(make_optimizer, steps=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((WIDTH,)), keras.layers.Dense(WIDTH)])
    optimizer = make_optimizer()
    model.compile(optimizer=optimizer, loss="mse")
    x = np.ones((BATCH * steps, WIDTH), "float32")
    model.fit(x, x, batch_size=BATCH, verbose=0)
    return model, optimizer


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(name):
    """Runs one variant; prints how far its peak and its final resident
    memory rose above the memory in use before the model was built, in bytes."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets the peak (VmHWM) to the current RSS
    before = _status_bytes("VmRSS")
    train(VARIANTS[name])
    print(json.dumps({"peak_rss": _status_bytes("VmHWM") - before, "rss": _status_bytes("VmRSS") - before}))


def copies_by_rule(optimizer):
    """Copies of the trainable weights the rule allows beside the inner state."""
    return 2 + optimizer.max_rank if isinstance(optimizer, SWAG) else 1


def state_sizes():
    rows = []
    for name, make in VARIANTS.items():
        model, optimizer = train(make, steps=1)
        weights = nbytes(model.trainable_variables)
        state = nbytes(optimizer.variables)
        row = dict(variant=name, weights_bytes=weights, state_bytes=state)
        if isinstance(optimizer, SWA):
            inner = nbytes(optimizer.inner_optimizer.variables)
            copies = copies_by_rule(optimizer)
            row.update(inner_bytes=inner, copies=copies, copies_measured=(state - inner) / weights,
                       beyond_rule_bytes=state - inner - copies * weights)
        rows.append(row)
        del model, optimizer
    return rows


def peak_memory():
    rows = []
    for name in VARIANTS:
        finished = subprocess.run(
            [sys.executable, __file__, "--child", name], capture_output=True, text=True, env=dict(os.environ)
        )
        if finished.returncode:
            raise SystemExit(finished.stderr[-3000:])
        rows.append(dict(variant=name, **json.loads(finished.stdout.strip().splitlines()[-1])))
    for row in rows:
        row["over_sgd_bytes"] = row["peak_rss"] - rows[0]["peak_rss"]
        row["rss_over_sgd_bytes"] = row["rss"] - rows[0]["rss"]
    return rows


def main():
    backend = keras.config.backend()
    sizes, peaks = state_sizes(), peak_memory()
    mb = lambda n: f"{n / 2**20:.2f}"  # noqa: E731
    print(common.table(
        ["variant", "optimizer state MiB", "inner state MiB", "(state - inner) / weights", "rule: copies",
         "state - inner - copies * weights (bytes)"],
        [(r["variant"], mb(r["state_bytes"]), mb(r.get("inner_bytes", r["state_bytes"])),
          f"{r['copies_measured']:.4f}" if "copies" in r else "", r.get("copies", ""),
          r.get("beyond_rule_bytes", "")) for r in sizes],
    ))
    print(common.table(
        ["variant", "peak RSS growth MiB", "over SGD MiB", "RSS growth after training MiB", "over SGD MiB"],
        [(r["variant"], mb(r["peak_rss"]), mb(r["over_sgd_bytes"]), mb(r["rss"]), mb(r["rss_over_sgd_bytes"]))
         for r in peaks],
    ))
    common.write(f"memory-{backend}", dict(state=sizes, peak=peaks, weights_bytes=sizes[0]["weights_bytes"]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
