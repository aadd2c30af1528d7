"""What each training feature costs, and what the native engine gains over the layer path.

    python bench/engine_features.py [--workloads tabular_small mnist_mlp] [--reps 3]
                                    [--variants plain dropout ...]

For each BENCHMARKS.md workload (its data and batch size, Adam 1e-3), variants of its model
train one epoch with fit(engine="native") and fit(engine="layers"), alternating; samples/s is
the median over --reps epochs (each on a fresh model, so the first includes no warm-up of the
other). Variants: plain; dropout 0.2 after each hidden layer; input dropout 0.1 (of the
inputs only); BatchNormalization, LayerNormalization or RMSNormalization before each hidden
activation (Dense without bias); L2 1e-4 on every kernel; class weights (classifiers only);
metrics that the engine does not compute itself (precision + AUC, or RMSE + R2).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import pynn
from workloads import WORKLOADS, make_data


def build(w, variant):
    pynn.set_seed(0)
    layers = [pynn.Input((w.layers[0],))]
    if variant == "input dropout":
        layers.append(pynn.Dropout(0.1))
    for h in w.layers[1:-1]:
        reg = pynn.regularizers.L2(1e-4) if variant == "l2" else None
        norm = {"batchnorm": pynn.BatchNormalization, "layernorm": pynn.LayerNormalization,
                "rmsnorm": pynn.RMSNormalization}.get(variant)
        if norm is not None:
            layers += [pynn.Dense(h, use_bias=False), norm(), pynn.Activation("relu")]
        else:
            layers.append(pynn.Dense(h, activation="relu", kernel_regularizer=reg))
        if variant == "dropout":
            layers.append(pynn.Dropout(0.2))
    xent = w.loss == "xent"
    layers.append(pynn.Dense(w.layers[-1], activation="softmax" if xent else None))
    model = pynn.Sequential(layers)
    metrics = []
    if variant == "stateful metrics":
        metrics = ["precision", "auc"] if xent else ["rmse", "r2"]
    model.compile(optimizer=pynn.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy" if xent else "mse", metrics=metrics)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", nargs="+", default=["tabular_small", "mnist_mlp"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=None, help="default: all")
    args = ap.parse_args()
    print("| workload | variant | native samples/s | layers samples/s | native / layers |")
    print("|---|---|---|---|---|")
    for name in args.workloads:
        w = WORKLOADS[name]
        x, y = make_data(w)
        variants = ["plain", "dropout", "input dropout", "batchnorm", "layernorm", "rmsnorm",
                    "l2", "stateful metrics"]
        if w.loss == "xent":
            variants.insert(5, "class weights")
        if args.variants:
            variants = [v for v in variants if v in args.variants]
        for variant in variants:
            kw = {"class_weight": {c: 1.0 + c / 10 for c in range(w.layers[-1])}} \
                if variant == "class weights" else {}
            rates = {"native": [], "layers": []}
            for _ in range(args.reps):
                for engine in rates:
                    model = build(w, variant)
                    time.sleep(0.3)
                    t0 = time.perf_counter()
                    model.fit(x, y, batch_size=w.batch, epochs=1, verbose=0, engine=engine, **kw)
                    rates[engine].append(w.samples / (time.perf_counter() - t0))
            nat, lay = (statistics.median(rates[e]) for e in ("native", "layers"))
            print(f"| {name} | {variant} | {nat:,.0f} | {lay:,.0f} | {nat / lay:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
