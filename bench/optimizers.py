"""Optimizer updates: the fused kernels and a training epoch, pynn against PyTorch.

    env -u OPENBLAS_CORETYPE python bench/optimizers.py [--params 200960] [--reps 5]

Kernel: one update step of --params float32 weights (default: mnist_mlp's first layer,
784 x 256 + 256) with each optimizer, pynn's cpu backend (its AVX2 + FMA loops, or the
portable ones with PYNN_ISA=generic) against PyTorch's optimizer step on one tensor (its
default implementation: foreach) and the NumPy reference. Training: one epoch of a
20-256-256-1 binary classifier, batch 128, each optimizer at Keras' defaults, pynn's native
engine against a plain PyTorch loop. Medians of --reps interleaved measurements; ratios < 1:
pynn takes less time. PyTorch has no Lion: its columns say "-".
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import pynn
from common import interleaved, machine_line, timed_rounds, torch_bce_epoch

# pynn optimizer, its slots, the torch.optim class and keyword arguments with the same math
OPTIMIZERS = {
    "sgd_momentum": (lambda: pynn.optimizers.SGD(0.01, momentum=0.9), "SGD",
                     {"lr": 0.01, "momentum": 0.9}),
    "adam": (lambda: pynn.optimizers.Adam(), "Adam", {"lr": 1e-3, "eps": 1e-7}),
    "adamw": (lambda: pynn.optimizers.AdamW(), "AdamW",
              {"lr": 1e-3, "eps": 1e-7, "weight_decay": 0.004}),
    "adam_amsgrad": (lambda: pynn.optimizers.Adam(amsgrad=True), "Adam",
                     {"lr": 1e-3, "eps": 1e-7, "amsgrad": True}),
    "nadam": (lambda: pynn.optimizers.Nadam(), "NAdam", {"lr": 1e-3, "eps": 1e-7}),
    "adamax": (lambda: pynn.optimizers.Adamax(), "Adamax", {"lr": 1e-3, "eps": 1e-7}),
    "lion": (lambda: pynn.optimizers.Lion(), None, {}),
    "adadelta": (lambda: pynn.optimizers.Adadelta(), "Adadelta",
                 {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}),
    "rmsprop": (lambda: pynn.optimizers.RMSprop(), "RMSprop",
                {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}),
    "adagrad": (lambda: pynn.optimizers.Adagrad(), "Adagrad",
                {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7}),
}


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(pynn.get_num_threads())
    return torch


def kernel_table(n, reps):
    torch = _torch()
    rng = np.random.default_rng(0)
    g = rng.normal(size=n).astype(np.float32) * 0.01
    print("| optimizer | pynn ns/param | numpy | torch | pynn / torch |")
    print("|---|---|---|---|---|")
    for name, (make, torch_name, torch_kwargs) in OPTIMIZERS.items():
        fns = {}
        for backend in ("cpu", "numpy"):
            b = pynn.get_backend(backend)
            p = pynn.layers.Parameter("w", b.asarray(rng.normal(size=n), np.float32), b)
            p.grad = b.asarray(g, np.float32)
            opt = make()
            opt.apply([p])  # slots allocated before timing
            fns["pynn" if backend == "cpu" else "numpy"] = lambda o=opt, q=p: o.apply([q])
        if torch is not None and torch_name is not None:
            w = torch.nn.Parameter(torch.from_numpy(rng.normal(size=n).astype(np.float32)))
            w.grad = torch.from_numpy(g.copy())
            topt = getattr(torch.optim, torch_name)([w], **torch_kwargs)
            topt.step()
            fns["torch"] = topt.step
        t = interleaved(fns, repeats=reps, min_time=0.02, settle=0.05)
        per = {k: v / n * 1e9 for k, v in t.items()}
        ratio = f"{t['pynn'] / t['torch']:.2f}" if "torch" in t else "-"
        torch_ns = f"{per['torch']:.2f}" if "torch" in per else "-"
        print(f"| {name} | {per['pynn']:.2f} | {per['numpy']:.2f} | {torch_ns} | {ratio} |")


def training_table(rows, reps):
    torch = _torch()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    print("\n| optimizer | pynn epoch (ms) | torch epoch (ms) | pynn / torch |")
    print("|---|---|---|---|")
    runs, models = {}, {}  # (optimizer, library): one epoch
    for name, (make, torch_name, torch_kwargs) in OPTIMIZERS.items():
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(256, activation="relu"),
                                 pynn.Dense(256, activation="relu"),
                                 pynn.Dense(1, activation="sigmoid")])
        model.compile(optimizer=make(), loss="binary_crossentropy")
        runs[name, "pynn"] = lambda m=model: m.fit(x, y, epochs=1, batch_size=128, verbose=0)
        models[name] = model
        if torch is not None and torch_name is not None:
            tx, ty = torch.from_numpy(x), torch.from_numpy(y).reshape(-1, 1)
            net = torch.nn.Sequential(torch.nn.Linear(20, 256), torch.nn.ReLU(),
                                      torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                      torch.nn.Linear(256, 1))
            topt = getattr(torch.optim, torch_name)(net.parameters(), **torch_kwargs)
            runs[name, "torch"] = torch_bce_epoch(torch, net, topt, tx, ty)
    # rounds over every (optimizer, library): the machine's slow spells (its first epochs
    # here run up to 2x slower) fall on all of them alike
    samples = timed_rounds(runs, reps + 1)
    for name, model in models.items():
        assert model.engine_reason is None, model.engine_reason
        p = statistics.median(samples[name, "pynn"][1:])
        if (name, "torch") in samples:
            t = statistics.median(samples[name, "torch"][1:])
            print(f"| {name} | {p * 1e3:.1f} | {t * 1e3:.1f} | {p / t:.2f} |")
        else:
            print(f"| {name} | {p * 1e3:.1f} | - | - |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=784 * 256 + 256)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    print(f"{machine_line()}; pynn ISA {pynn.info()['cpu']['isa']}, "
          f"{pynn.get_num_threads()} threads\n")
    kernel_table(args.params, args.reps)
    training_table(args.rows, args.reps)


if __name__ == "__main__":
    main()
