"""What the PyTorch timing scripts beside this file share: a silent stand-in for the authors'
`diffuser.utils` (a progress bar) with their files' folder AUTHORS on the path, the device,
and a timer. Imported by those scripts when run as `python bench/reference/<script>.py`."""
import json
import os
import sys
import time
import types

import torch


class Silent:
    def __init__(self, *a, **k): pass
    def __getattr__(self, name): return lambda *a, **k: None
    def update(self, *a, **k): pass
    def close(self): pass


def stub_authors_package(script_file):
    """Register `diffuser` and `diffuser.utils` (silent) and put AUTHORS (default: the
    script's folder) first on the path."""
    utils = types.ModuleType("diffuser.utils")
    utils.Silent = Silent
    utils.Progress = Silent
    pkg = types.ModuleType("diffuser")
    pkg.utils = utils
    sys.modules["diffuser"] = pkg
    sys.modules["diffuser.utils"] = utils
    sys.path.insert(0, os.environ.get("AUTHORS") or os.path.dirname(os.path.abspath(script_file)))


dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# TORCH_TF32=1: float32 matmuls on TF32 tensor cores, as JAX's default precision does on a GPU
# (torch's default keeps matmuls in float32; its convolutions already allow TF32)
TF32 = os.environ.get("TORCH_TF32") == "1"
if TF32:
    torch.backends.cuda.matmul.allow_tf32 = True


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n=1, reps=3):
    """`n / seconds` of each of `reps` calls of `fn` after a warm-up call."""
    fn()
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(n / (time.perf_counter() - t0))
    return out


def emit(**kw):
    """One JSON line, with torch's version and the device."""
    kw.update(torch=torch.__version__, tf32=TF32,
              device=torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu")
    print(json.dumps(kw), flush=True)
