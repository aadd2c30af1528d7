"""Hidden activations: the element-wise kernels and a training epoch, pynn against PyTorch.

    env -u OPENBLAS_CORETYPE python bench/activations.py [--rows 20000] [--reps 5]

Kernel: y = f(z) on a (128, 256) float32 array (one hidden layer's outputs at batch 128),
pynn's cpu backend (its vectorised loops: PYNN_ISA picks SSE2 or AVX2) against torch and
numpy. Training: one epoch of a 20-256-256-1 binary classifier, batch 128, Adam, each hidden
activation, pynn's native engine against a plain PyTorch loop on the same data (gelu exact
in both, gelu_tanh torch's approximate='tanh'). Medians of --reps interleaved measurements;
ratios < 1: pynn takes less time.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import pynn
from common import interleaved, machine_line, timed_rounds, torch_bce_epoch

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "gelu_tanh", "silu", "softplus",
               "softsign", "selu", "relu6", "hard_sigmoid", "hard_silu", "mish")


def _torch_functions(torch):
    """PyTorch's function for each activation."""
    F = torch.nn.functional
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "elu": F.elu,
            "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
            "silu": F.silu,
            "softplus": F.softplus, "softsign": F.softsign, "selu": F.selu, "relu6": F.relu6,
            "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish, "mish": F.mish}


def kernel_table(reps):
    b = pynn.get_backend("cpu")
    z = np.random.default_rng(0).normal(size=(128, 256)).astype(np.float32)
    try:
        import torch
        torch.set_num_threads(pynn.get_num_threads())
        zt = torch.from_numpy(z)
        torch_fns = _torch_functions(torch)
    except ImportError:
        torch_fns = {}
    numpy_b = pynn.get_backend("numpy")
    print("| activation | pynn ns/element | numpy | torch | pynn / torch |")
    print("|---|---|---|---|---|")
    for act in ACTIVATIONS:
        fns = {"pynn": lambda: b.activation_forward(act, z, 1.0),
               "numpy": lambda: numpy_b.activation_forward(act, z, 1.0)}
        if torch_fns:
            fns["torch"] = lambda: torch_fns[act](zt)
        t = interleaved(fns, repeats=reps, min_time=0.02, settle=0.05)
        per = {k: v / z.size * 1e9 for k, v in t.items()}
        ratio = f"{t['pynn'] / t['torch']:.2f}" if "torch" in t else "-"
        print(f"| {act} | {per['pynn']:.2f} | {per['numpy']:.2f} | "
              f"{per.get('torch', float('nan')):.2f} | {ratio} |")


def training_table(rows, reps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    try:
        import torch
    except ImportError:
        print("(torch not installed: no training comparison)")
        return
    torch.set_num_threads(pynn.get_num_threads())
    tx, ty = torch.from_numpy(x), torch.from_numpy(y).reshape(-1, 1)
    functions = _torch_functions(torch)

    class Act(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, t):
            return self.fn(t)
    print("\n| activation | pynn epoch (ms) | torch epoch (ms) | pynn / torch |")
    print("|---|---|---|---|")
    for act in ACTIVATIONS:
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(256, activation=act),
                                 pynn.Dense(256, activation=act),
                                 pynn.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        net = torch.nn.Sequential(torch.nn.Linear(20, 256), Act(functions[act]),
                                  torch.nn.Linear(256, 256), Act(functions[act]),
                                  torch.nn.Linear(256, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        samples = timed_rounds(
            {"pynn": lambda: model.fit(x, y, epochs=1, batch_size=128, verbose=0),
             "torch": torch_bce_epoch(torch, net, opt, tx, ty)}, reps)
        assert model.engine_reason is None, model.engine_reason
        p, t = (statistics.median(samples[k][1:]) for k in ("pynn", "torch"))
        print(f"| {act} | {p * 1e3:.1f} | {t * 1e3:.1f} | {p / t:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.reps < 2:  # the training table drops each library's first (warm-up) epoch
        parser.error("--reps must be at least 2")
    print(f"{machine_line()}; pynn ISA {pynn.info()['cpu']['isa']}, "
          f"{pynn.get_num_threads()} threads\n")
    kernel_table(args.reps)
    training_table(args.rows, args.reps)


if __name__ == "__main__":
    main()
