"""Global settings: the default float type and the random seed.

`set_seed(n)` makes a run reproducible: weight initialisation, shuffling and Dropout's
default seeds all draw from one generator seeded here.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

_FLOATX = "float32"
_CHECK_FINITE = True
_rng = np.random.default_rng()
_local = threading.local()  # a thread's scratch generator inside rng_untouched


def epsilon() -> float:
    """Keras' fuzz factor (keras.config.epsilon), 1e-7: the default epsilon of pynn's
    optimizers and losses too."""
    return 1e-7


def floatx() -> str:
    """The float type of new weights and converted inputs ('float32' by default)."""
    return _FLOATX


def set_floatx(dtype: str) -> None:
    """'float32' (default, every backend) or 'float64' (gradient checks, reference runs:
    the numpy reference code computes, on the numpy and cpu backends; the native engine is
    float32 only). Existing models convert at their next use."""
    global _FLOATX
    if dtype not in ("float32", "float64"):
        raise ValueError(f"floatx must be 'float32' or 'float64', got {dtype!r}")
    _FLOATX = dtype


def set_seed(seed: int) -> None:
    """Seed pynn's random generator (initializers, shuffling, Dropout's default seeds) for
    reproducible runs."""
    global _rng
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))
    if getattr(_local, "rng", None) is not None:  # inside rng_untouched: this thread too
        _local.rng = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    """The generator every random draw in pynn uses."""
    scratch = getattr(_local, "rng", None)
    return _rng if scratch is None else scratch


def rng_untouched():
    """Draws inside leave the generator as they found it (loading a model initialises
    weights it then overwrites; a seeded run must not depend on whether it loaded one): this
    thread draws from a copy meanwhile, so other threads' draws are neither repeated nor
    undone (restoring the state afterwards did both)."""
    scratch = np.random.Generator(type(_rng.bit_generator)())
    scratch.bit_generator.state = rng().bit_generator.state
    return _thread_draws_from(scratch)


def seeded(seed: int):
    """Draws in this thread come meanwhile from a generator seeded with `seed`; pynn's global
    generator and other threads' draws are left alone (scikit-learn's random_state: fits in
    concurrent threads stay reproducible, and a user's set_seed stream is not reset).
    `with pynn.config.seeded(i): build, compile and fit model i` in each of several threads
    makes each model's run reproducible, whatever the threads' interleaving."""
    return _thread_draws_from(np.random.default_rng(int(seed)))


@contextlib.contextmanager
def _thread_setting(name, value):
    """This thread's setting `name` is `value` meanwhile (then what it was, or unset)."""
    previous = getattr(_local, name, None)
    setattr(_local, name, value)
    try:
        yield
    finally:
        setattr(_local, name, previous)


def _thread_draws_from(generator):
    """This thread's draws (rng()) come from `generator` meanwhile."""
    return _thread_setting("rng", generator)


def loading_weights():
    """Layers built in this thread meanwhile are rebuilt from a file (load_model, save's
    check that a model loads back): their weights, which the file's replace, start as zeros
    instead of draws (Layer.initial_values), so a crafted file's huge declared layers cost no
    memory (calloc'd pages) before its arrays are found not to match."""
    return _thread_setting("loading", True)


def loading_weights_now() -> bool:
    """Whether this thread is inside loading_weights()."""
    return bool(getattr(_local, "loading", None))


# Bumped whenever something a native training engine is built from may have changed (a
# layer's trainable flag, activation, rate, seed or regularizer, a weight array replaced, a
# regularizer's factor, the model's optimizer or loss): fit compares it after callbacks ran
# and only then re-reads the model (engine.NativeEngine.matches).
_settings_version = 0
_settings_lock = threading.Lock()  # += is not atomic on free-threaded builds


def settings_changed() -> None:
    """Note that something a native engine is built from changed (layers call this)."""
    global _settings_version
    with _settings_lock:
        _settings_version += 1


def settings_version() -> int:
    """A number that changes whenever settings_changed() was called since."""
    return _settings_version


def check_finite() -> bool:
    """Whether inputs and targets are checked for NaN/inf (True by default)."""
    return _CHECK_FINITE


def set_check_finite(enabled: bool) -> None:
    """Opt out of (or back into) the NaN/inf check of inputs and targets: with it off, a
    non-finite value trains or predicts as NaN instead of raising."""
    global _CHECK_FINITE
    _CHECK_FINITE = bool(enabled)


__all__ = ["check_finite", "epsilon", "floatx", "rng", "seeded",
           "set_check_finite", "set_floatx", "set_seed"]
