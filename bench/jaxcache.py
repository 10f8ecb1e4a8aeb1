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
def off():
    """The persistent cache off for the compiles inside, back as it was after. Computing the
    cache key of some executables (jax serialises the whole module to hash it) overflows a
    stack inside libjax_common.so: measured with the claims' plan measurements
    (`bench/claims/guidance.py`) on jax 0.9.2, a segfault at one address every time the cache
    was on (with its writes skipped too, and under `ulimit -s 65536`), never with it off. The
    tests turn the cache off for what is likely the same crash (tests/conftest.py)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()        # jax memoises whether the cache is used
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", was)
        compilation_cache.reset_cache()
