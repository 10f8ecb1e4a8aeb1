"""JAX's persistent compilation cache, on for every harness command and the tests.

Compilation dominates short runs on a 2-core CPU; the cache makes a second run cheap.
"""
import contextlib
import os
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "jax"


def enable(path=None):
    import jax

    path = Path(path or os.environ.get("DIFFRL_JAX_CACHE", DEFAULT_DIR))
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@contextlib.contextmanager
def not_written():
    """Compiles inside are not written to the persistent cache. Writing some executables
    segfaults inside jax's `compilation_cache.put_executable_and_time` (a stack overflow in
    libjax_common.so, the same address every time: measured with the claims' plan measurements
    of `bench/claims/guidance.py` on jax 0.9.2; raising `ulimit -s` does not help); the
    tests turn the cache off for the same reason (tests/conftest.py)."""
    import jax

    was = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
    try:
        yield
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", was)
