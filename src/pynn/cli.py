"""The command line: `python -m pynn info|demo` (also installed as `pynn`)."""

from __future__ import annotations

import argparse
import json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pynn", description="pynn neural networks")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, backends, CPU ISA, threads, GPU")
    p_info.add_argument("--json", action="store_true", help="print as JSON")
    p_demo = sub.add_parser("demo", help="train an MLP on scikit-learn's digits, save, reload")
    p_demo.add_argument("--epochs", type=int, default=40)
    p_demo.add_argument("--backend", default=None, help="cpu, numpy, cuda or cupy")
    p_demo.add_argument("--out", default="pynn_digits.npz", help="where to save the weights")
    p_demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "info":
        from .info import format_info, info

        print(json.dumps(info(), indent=2, default=str) if args.json else format_info())
        return 0
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(epochs=args.epochs, backend=args.backend, out=args.out, seed=args.seed)
    return 2
