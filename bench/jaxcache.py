"""JAX's persistent compilation cache, on for every harness command and the tests.

Compilation dominates short runs on a 2-core CPU; the cache makes a second run cheap.
"""
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
