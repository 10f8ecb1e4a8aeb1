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


def hardware() -> dict:
    """The device JAX runs on, and the host CPU with the cores this process may use."""
    import jax

    dev = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": dev.platform, "device": dev.device_kind, "device_count": jax.device_count(),
            "cpu": cpu_model(), "cores": cores}


def hardware_line(hw: dict | None = None) -> str:
    hw = hw or hardware()
    host = f"{hw['cpu']}, {hw['cores']} cores"
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
