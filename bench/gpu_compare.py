"""pynn on the GPU against PyTorch CUDA (eager), and against pynn's CPU and NumPy backends.

    python bench/gpu_compare.py                       # GEMM table and the three workloads
    python bench/gpu_compare.py --workloads mnist_mlp --libs pynn-cuda torch-cuda
    python bench/gpu_compare.py --no-gemm --dropout 0.2   # a Dropout after each hidden layer

Training (pynn-cuda: the CUDA engine, whole steps from C++; pynn-cuda-layers: the same
backend layer by layer from Python): each library trains the BENCHMARKS.md workload for
--epochs epochs (Adam 1e-3, epsilon 1e-7, the same batch, float32, from pynn's initial
weights); the first epoch is the warm-up, the later ones are timed, alternating between
libraries. The data sits on the device before timing for the GPU libraries (CuPy arrays for
pynn, CUDA tensors for PyTorch), and the PyTorch loop is written for speed: indexing instead
of a DataLoader, the epoch's loss summed on the device and read once. Prints samples/s, each
library's ratio to PyTorch CUDA and the final training loss.

GEMM: pynn.ops.gemm on the cuda backend (cuBLAS through CuPy, pynn's bias + activation
kernel after it) against cupy.matmul and torch.matmul / torch.addmm + relu, float32 without
TF32, microseconds per call including the launch (the device synchronised after each batch
of calls), medians of interleaved rounds.

--torch-device cpu and --libs without the GPU ones run the script on a machine without a
GPU (a dry run of the code, not a GPU result).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import machine_line
from peers import pynn_model, torch_model
from workloads import WORKLOADS, make_data

LIBS = ("pynn-cuda", "pynn-cuda-layers", "pynn-cupy", "torch-cuda", "pynn-cpu", "pynn-numpy")
GEMM_SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096),
               (8192, 8192, 8192), (32, 64, 64), (128, 784, 256), (256, 1024, 1024)]


def _cupy():
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception as e:  # no CuPy, no driver or no device
        print(f"(no GPU through CuPy: {e})")
        return None


def pynn_trainer(backend, engine="auto", dropout=0.0):
    def make(w, x, y):
        model = pynn_model(w, backend=backend, dropout=dropout)
        model.shuffle_seed = 0  # every pynn backend sees the same batches (the final losses
        # of the first H200 run differed by up to 15% between backends: the seeds drawn)
        if backend in ("cuda", "cupy"):
            import cupy
            x, y = cupy.asarray(x), cupy.asarray(y)

        class T:
            def epoch(self):
                h = model.fit(x, y, batch_size=w.batch, epochs=1, verbose=0, engine=engine)
                return h.history["loss"][-1]
        return T()
    return make


def torch_trainer(device, dropout=0.0):
    def make(w, x, y):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False  # float32 as pynn computes it
        model, opt, loss_fn = torch_model(w, device, dropout)
        model.train()
        X, Y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        n = len(x)

        class T:
            def epoch(self):
                perm = torch.randperm(n, device=device)
                total = torch.zeros((), device=device)
                for i in range(0, n, w.batch):
                    idx = perm[i:i + w.batch]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(X[idx]), Y[idx])
                    loss.backward()
                    opt.step()
                    total += loss.detach() * len(idx)
                return total.item() / n
        return T()
    return make


def trainers(torch_device, dropout=0.0):
    return {"pynn-cuda": pynn_trainer("cuda", "native", dropout),
            "pynn-cuda-layers": pynn_trainer("cuda", "layers", dropout),
            "pynn-cupy": pynn_trainer("cupy", dropout=dropout),
            "torch-cuda": torch_trainer(torch_device, dropout),
            "pynn-cpu": pynn_trainer("cpu", dropout=dropout),
            "pynn-numpy": pynn_trainer("numpy", dropout=dropout)}


def train_table(names, libs, epochs, torch_device, dropout=0.0):
    makers = trainers(torch_device, dropout)
    print("\n| workload | library | samples/s | x torch-cuda | final loss |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        w = WORKLOADS[name]
        x, y = make_data(w)
        runs, failed = {}, {}
        for lib in libs:
            try:
                runs[lib] = makers[lib](w, x, y)
            except Exception as exc:  # noqa: BLE001 - a row saying why, and the others go on
                failed[lib] = exc
        times = {lib: [] for lib in runs}
        losses = {}
        for epoch in range(epochs):
            for lib, t in list(runs.items()):
                t0 = time.perf_counter()
                try:
                    losses[lib] = t.epoch()
                except Exception as exc:  # noqa: BLE001 - (a lent GPU's time is short)
                    failed[lib] = exc
                    del runs[lib]
                    continue
                if epoch > 0:
                    times[lib].append(time.perf_counter() - t0)
        for lib, exc in failed.items():
            print(f"| {name} | {lib} | failed: {type(exc).__name__}: {str(exc)[:200]} | - | - |",
                  flush=True)
        rate = {lib: w.samples / statistics.median(times[lib]) for lib in runs}
        for lib in runs:
            ratio = f"{rate[lib] / rate['torch-cuda']:.2f}" if "torch-cuda" in rate else "-"
            print(f"| {name} | {lib} | {rate[lib]:,.0f} | {ratio} | {losses[lib]:.4f} |",
                  flush=True)


def _timed(fn, sync, reps):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


def gemm_table(cupy, rounds=5):
    import pynn
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    pynn.set_backend("cuda")
    rng = np.random.default_rng()
    print("\n| M, K, N | pynn us | cupy us | torch us | pynn TFLOP/s | pynn x torch "
          "| fused bias+relu: pynn us | torch us | x torch | pynn rel. error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, k, n in GEMM_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        bias = rng.standard_normal(n, dtype=np.float32)
        ca, cb, cbias = cupy.asarray(a), cupy.asarray(b), cupy.asarray(bias)
        ta, tb, tbias = (torch.from_numpy(v).cuda() for v in (a, b, bias))
        got = cupy.asnumpy(pynn.ops.gemm(ca, cb, bias=cbias, activation="relu"))
        err = float("nan")  # against float64 on the host, where that takes under a second
        if m * k * n <= 4096**3:
            ref = np.maximum(a.astype(np.float64) @ b + bias, 0)
            err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        reps = max(3, int(2e11 / (2 * m * k * n)))  # ~0.2 TFLOP of work per timing
        fns = {"pynn": (lambda: pynn.ops.gemm(ca, cb), cupy.cuda.Device().synchronize),
               "cupy": (lambda: cupy.matmul(ca, cb), cupy.cuda.Device().synchronize),
               "torch": (lambda: torch.matmul(ta, tb), torch.cuda.synchronize),
               "pynn-fused": (lambda: pynn.ops.gemm(ca, cb, bias=cbias, activation="relu"),
                              cupy.cuda.Device().synchronize),
               "torch-fused": (lambda: torch.relu(torch.addmm(tbias, ta, tb)),
                               torch.cuda.synchronize)}
        samples = {key: [] for key in fns}
        for _ in range(rounds):
            for key, (fn, sync) in fns.items():
                samples[key].append(_timed(fn, sync, min(reps, 2000)))
        us = {key: 1e6 * statistics.median(s) for key, s in samples.items()}
        tflops = 2 * m * k * n / us["pynn"] / 1e6
        print(f"| {m}, {k}, {n} | {us['pynn']:.1f} | {us['cupy']:.1f} | {us['torch']:.1f} "
              f"| {tflops:.1f} | {us['torch'] / us['pynn']:.2f} | {us['pynn-fused']:.1f} "
              f"| {us['torch-fused']:.1f} | {us['torch-fused'] / us['pynn-fused']:.2f} "
              f"| {err:.1e} |",
              flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--torch-device", default="cuda")
    p.add_argument("--no-gemm", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="a Dropout of this rate after each hidden layer (every library)")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first is the warm-up)")

    import pynn

    cupy = _cupy()
    print(f"machine: {machine_line()}; pynn {pynn.__version__}, backends "
          f"{pynn.info()['backends']}")
    if cupy is not None:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"GPU: {name}, {props['multiProcessorCount']} SMs; "
              f"CuPy {cupy.__version__}")
    libs = [lib for lib in args.libs if cupy is not None or lib in ("pynn-cpu", "pynn-numpy")
            or (lib == "torch-cuda" and args.torch_device != "cuda")]
    if cupy is not None and not args.no_gemm:
        gemm_table(cupy)
    if args.dropout:
        # The CUDA engine's dropout waits for its first GPU run (pynn/cuda_engine.py): on for
        # this timing, so pynn-cuda measures the engine (its tests say whether it is right).
        import pynn.cuda_engine

        pynn.cuda_engine.DROPOUT_RUN_ON_A_GPU = True
        print(f"dropout {args.dropout} after each hidden layer; the CUDA engine's dropout on")
    train_table(args.workloads, libs, args.epochs, args.torch_device, args.dropout)


if __name__ == "__main__":
    main()
