"""JAX's persistent compilation cache: on for every harness command but a claims run that
includes the backbone claim (`avoid_known_crash`); the tests turn it off (tests/conftest.py).

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


def avoid_known_crash(argv, environ=os.environ) -> None:
    """`claims backbone` (alone or in a run of every claim) segfaults on 2-core AVX2 CPUs with
    jax 0.9.2 unless JAX_ENABLE_COMPILATION_CACHE=false is in the environment before jax is
    imported (measured over two sessions: 9 of 9 runs with the cache on, or switched off
    inside the process, crashed, as did 2 of 2 with synchronous dispatch and 1 of 3 with
    XLA's parallel codegen split count 1; all 3 with the variable passed; README, "Survey
    claims"). Only `python -m bench` is covered: a program calling `bench.cli.main` sets the
    variable itself. Called by
    `python -m bench` before anything imports jax; a value the user set is kept."""
    if argv[:1] != ["claims"]:
        return
    names, rest = [], iter(argv[1:])
    for a in rest:
        if a in ("--runs", "--out"):
            next(rest, None)  # its value
        elif not a.startswith("-"):
            names.append(a)
    if not names or "backbone" in names:
        environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
