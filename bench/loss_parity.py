"""pynn's and PyTorch's training losses on the BENCHMARKS.md workloads with the same sample
order: issue 4's loss check without the shuffle's noise.

    python bench/loss_parity.py [--workloads ...] [--orders 3] [--epochs 3]

compare_peers.py lets each library shuffle its own way; on wide_mlp the third epoch's loss
then moves by +-8% with the shuffle's seed alone (PyTorch 0.142-0.163, pynn 0.139-0.160 over
three seeds, 2026-12-05), so a gap there says little about the arithmetic. Here both start
from pynn's initial weights with the same Adam (peers.py) and see the same batches in the same
order (pynn's fit with shuffle=False on the reordered data; PyTorch's loop over the same
order), for --orders random orders. Untimed: needs PyTorch.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from peers import available, pynn_model, torch_trainer
from workloads import WORKLOADS, make_data


def pynn_losses(w, x, y, orders):
    model = pynn_model(w)
    return [model.fit(x[o], y[o], batch_size=w.batch, epochs=1, shuffle=False,
                      verbose=0).history["loss"][-1] for o in orders]


def torch_losses(w, x, y, orders):
    trainer = torch_trainer(w, x, y)
    return [trainer.epoch(o) for o in orders]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    p.add_argument("--orders", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    if not available("torch"):
        sys.exit("loss_parity.py compares with PyTorch, which is not installed (pip install "
                 "torch)")
    print("| workload | order | pynn loss per epoch | PyTorch loss per epoch | final: pynn vs "
          "PyTorch |")
    print("|---|---|---|---|---|")
    for name in args.workloads:
        w = WORKLOADS[name]
        x, y = make_data(w)
        for seed in range(args.orders):
            rng = np.random.default_rng(seed)
            orders = [rng.permutation(len(x)) for _ in range(args.epochs)]
            ours, theirs = pynn_losses(w, x, y, orders), torch_losses(w, x, y, orders)
            print(f"| {name} | {seed} | {', '.join(f'{v:.4f}' for v in ours)} | "
                  f"{', '.join(f'{v:.4f}' for v in theirs)} | "
                  f"{100 * (ours[-1] / theirs[-1] - 1):+.2f}% |", flush=True)


if __name__ == "__main__":
    main()
