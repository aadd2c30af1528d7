"""pynn.info(): what this installation can do and why not, in one dict (and printable)."""

from __future__ import annotations

import os
import platform

from . import backend as backend_mod


def info() -> dict:
    """What pynn has and uses here, as a dict: version, python, machine; backend (in use;
    None and backend_error when PYNN_BACKEND names one that cannot run) and backends
    (available); cpu (the C++ extension's build flags, the GEMM's instruction set,
    threads, which ISAs the CPU supports; or error); cuda (compiled architectures, CUDA
    version, devices; or error); env (those of the variables pynn reads that are set: PYNN_BACKEND, PYNN_ISA,
    PYNN_NUM_THREADS, OMP_NUM_THREADS, PYNN_GEMM_BLOCKING, PYNN_MATMUL_PRECISION). `pynn info` prints
    it."""
    from . import __version__

    result = {"version": __version__, "python": platform.python_version(),
              "machine": platform.machine()}
    try:
        result["backend"] = backend_mod.get_backend().name
    except (ValueError, RuntimeError) as exc:  # PYNN_BACKEND names one that cannot run here
        result["backend"], result["backend_error"] = None, str(exc)
    result["backends"] = backend_mod.available_backends()
    try:
        from . import _C

        result["cpu"] = {"build": dict(_C.build_info), "isa": _C.gemm_isa(),
                         "threads": _C.running_threads(),
                         "matmul_precision": _C.matmul_precision(), "amx": _C.amx_available(),
                         "isa_supported": {i: _C.cpu_supports_isa(i)
                                           for i in ("generic", "avx2", "avx512")}}
    except ImportError as exc:
        result["cpu"] = {"error": str(exc)}
    try:
        from . import _cuda

        result["cuda"] = {"architectures": _cuda.architectures,
                          "built_with": _cuda.cuda_version, **_cuda.devices()}
    except ImportError as exc:
        result["cuda"] = {"error": f"pynn._cuda not built or not importable ({exc})"}
    result["env"] = {k: os.environ[k] for k in ("PYNN_BACKEND", "PYNN_ISA", "PYNN_NUM_THREADS",
                                                "OMP_NUM_THREADS", "PYNN_GEMM_BLOCKING",
                                                "PYNN_MATMUL_PRECISION")
                     if k in os.environ}
    return result


def format_info(d=None) -> str:
    """info() (or the dict d) as the text `pynn info` prints."""
    d = d or info()
    lines = [f"pynn {d['version']} (Python {d['python']}, {d['machine']})",
             f"backend in use: {d['backend'] or 'none: ' + d.get('backend_error', '')}",
             "backends:"]
    for name, why in d["backends"].items():
        lines.append(f"  {name:6s} {'available' if why is None else 'unavailable: ' + why}")
    cpu = d["cpu"]
    if "error" in cpu:
        lines.append(f"cpu kernels: {cpu['error']}")
    else:
        supported = ", ".join(k for k, v in cpu["isa_supported"].items() if v)
        lines.append(f"cpu kernels: ISA {cpu['isa']} (CPU supports {supported}), "
                     f"{cpu['threads']} threads, {cpu['build']['compiler']}")
        lines.append(f"matmul precision: {cpu['matmul_precision']} (AMX for 'high': "
                     f"{'yes' if cpu['amx'] else 'no'})")
    cuda = d["cuda"]
    if "architectures" in cuda:
        devs = ", ".join(f"{x['name']} (sm {x['compute_capability']})" for x in cuda["devices"])
        lines.append(f"cuda: built for {cuda['architectures']} with CUDA {cuda['built_with']}; "
                     + (f"devices: {devs}" if devs else f"no device: {cuda['error']}"))
    else:
        lines.append(f"cuda: {cuda['error']}")
    if d["env"]:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in d["env"].items()))
    return "\n".join(lines)
