"""What produced a result: hardware, package versions, and atomic file writes."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import tempfile
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The CPU's vector extensions that change XLA's floats on CPU (which kernels it emits and how
# it orders a reduction): results compare bit for bit only between machines with the same set.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16",
                "amx_tile", "asimd", "sve", "sve2")


def cpu_flags() -> list:
    """The host CPU's vector extensions among `VECTOR_FLAGS`, in that order."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in VECTOR_FLAGS if f in have]
    except OSError:
        pass
    return []


def hardware() -> dict:
    """The device JAX runs on (platform, kind, count), and the host CPU with its vector
    extensions and the cores this process may use: enough to say why floats differ."""
    import jax

    dev = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": dev.platform, "device": dev.device_kind, "device_count": jax.device_count(),
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": cores}


def widest_vector(flags) -> str:
    """The widest vector extension among a CPU's `flags` (e.g. "avx512f"), "?" if none known:
    on CPU, what decides whether two results can agree bit for bit."""
    return next((f for f in ("avx512f", "avx2", "avx", "sve", "asimd") if f in flags), "?")


def available_memory() -> tuple:
    """(bytes, where) that a run may still use: the accelerator's free memory, or on CPU the
    host's MemAvailable; (None, where) when unknown."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{dev.device_kind} memory"
        return None, f"{dev.device_kind} memory"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "host memory (MemAvailable)"
    except OSError:
        pass
    return None, "host memory"


def code_version(root: Path = Path(__file__).resolve().parent.parent) -> dict:
    """The git commit of the code that ran, and whether tracked files outside `results/`
    differed from it, or untracked files not ignored appeared (results written from modified
    code say so; the results folder itself is what the runs write, so it does not count);
    `{"commit": None, "dirty": None}` where the code is not a git checkout."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", ".", ":(exclude)results"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def hardware_line(hw: dict | None = None) -> str:
    hw = hardware() if hw is None else hw
    ext = hw.get("cpu_flags")
    widest = widest_vector(ext) if ext else None
    host = f"{hw['cpu']}, {hw['cores']} cores" + (f", {widest}" if widest else "")
    if hw["platform"] == "cpu":
        return f"{host}, no accelerator (JAX on CPU)"
    return f"{hw['device_count']} x {hw['device']} ({hw['platform']}); host {host}"


def versions(packages=("jax", "jaxlib", "flax", "optax", "chex", "numpy")) -> dict:
    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old file
    or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure (tight layout, 110 dpi) atomically, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
