"""Peak resident memory of training mnist_mlp (2 epochs), for one library per process.

    python bench/peak_rss.py save                 # writes the data set to /tmp/pynn_rss_*.npy
    /usr/bin/time -v python bench/peak_rss.py pynn-base    # interpreter + pynn + data loaded
    /usr/bin/time -v python bench/peak_rss.py pynn         # ... + two training epochs
    /usr/bin/time -v python bench/peak_rss.py torch-base / torch

Compare "Maximum resident set size" lines: training should add little over the data (fit
gathers one batch at a time, never a copy of the data set).
"""

from __future__ import annotations

import sys

import numpy as np

from peers import TRAINERS
from workloads import WORKLOADS, make_data

X_PATH, Y_PATH = "/tmp/pynn_rss_x.npy", "/tmp/pynn_rss_y.npy"


def main(what):
    w = WORKLOADS["mnist_mlp"]
    if what == "save":
        x, y = make_data(w)
        np.save(X_PATH, x)
        np.save(Y_PATH, y)
        return
    if what.startswith("torch"):
        import torch  # noqa: F401
    else:
        import pynn  # noqa: F401
    x, y = np.load(X_PATH), np.load(Y_PATH)
    lib = what.removesuffix("-base")
    if lib != what:
        return
    trainer = TRAINERS[lib](w, x, y)
    trainer.epoch()
    trainer.epoch()


if __name__ == "__main__":
    main(sys.argv[1])
