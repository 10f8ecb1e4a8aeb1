"""Derived datasets: transitions made from a local dataset (SynthER's generated ones, noise-
perturbed copies), under their own dataset id, so every algorithm, sweep and table uses them
as it uses any dataset:

    jaxrl/pendulum/medium-replay-synther-1a2b3c4d-v0

They live in Minari's folder layout (`<root>/<id>/data/`) with Minari's `metadata.json`
(spaces, reference scores, sizes; `total_episodes` 0), which `bench data list` and
`minari_io.read_metadata` read. The arrays are one `transitions.npz`, not Minari's HDF5:
generated transitions are independent rows, not episodes, and Minari stores each episode as
its own HDF5 group. Measured on this machine (2-core EPYC, minari 0.5.4): 20,000 one-step
episodes take 271 MB, 11.7 s to write and 9.2 s to read, 13.5 KB per transition of 36 bytes,
which puts SynthER's 5M transitions at 68 GB. `data_format` says `diffrl-transitions`, so
`minari.load_dataset` refuses such a folder instead of misreading it.

Writes are atomic (staging folder, then a rename), and the metadata holds a content hash of
the arrays that `read` checks, as for every dataset we write.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict

import numpy as np

from envs.datasets import minari_io
from envs.datasets.minari_io import DatasetError, dataset_path, datasets_root

FORMAT = "diffrl-transitions"
FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
DTYPES = {"obs": np.float32, "action": np.float32, "reward": np.float32,
          "next_obs": np.float32, "terminated": bool, "truncated": bool}
FILE = "transitions.npz"


def is_derived(meta: dict) -> bool:
    return meta.get("data_format") == FORMAT


def made_from(meta: dict) -> dict:
    """What a subset or derived dataset's metadata records about its source (`source_id`,
    `source_content_hash`, the method...); `{}` for a dataset built from an env."""
    return (meta.get("diffrl") or {}).get("derived") or {}


def _beside(source_id: str, tag: str) -> str:
    """`ns/env/level-<tag>-v0` beside `ns/env/level-v0` (a source without a version: v0)."""
    head, _, name = source_id.rpartition("/")
    stem, dash, version = name.rpartition("-")
    if not (dash and version.startswith("v") and version[1:].isdigit()):
        stem, version = name, "v0"
    return f"{head}/{stem}-{tag}-{version}" if head else f"{stem}-{tag}-{version}"


def derived_id(source_id: str, method: str, key: str) -> str:
    """`ns/env/level-<method>-<key>-v0` beside `ns/env/level-v0`."""
    return _beside(source_id, f"{method}-{key}")


def content_hash(arrays: Dict[str, np.ndarray]) -> str:
    return minari_io.hash_arrays((f, arrays[f]) for f in FIELDS)


def _checked(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    missing = [f for f in FIELDS if f not in arrays]
    if missing:
        raise ValueError(f"transition arrays lack {', '.join(missing)}")
    out = {f: np.asarray(arrays[f], DTYPES[f]) for f in FIELDS}
    n = {len(a) for a in out.values()}
    if len(n) != 1:
        raise ValueError(f"transition arrays differ in length: {sorted(n)}")
    return out


def write(dataset_id: str, arrays: Dict[str, np.ndarray], *, source_meta: dict,
          algorithm_name: str, description: str, extra_metadata: dict,
          replace: bool = False) -> Path:
    """Write transitions as a derived dataset (atomically); `source_meta` (the source's
    `read_metadata`) gives the spaces and reference scores. Returns the folder."""
    import minari

    arrays = _checked(arrays)
    root = datasets_root()
    final = root / dataset_id
    if final.exists() and not replace:
        raise DatasetError(f"dataset {dataset_id} already exists at {final}")
    minari_io.clean_staging(root)
    staging = root / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
    new = staging / "new"
    data = new / "data"
    data.mkdir(parents=True)
    try:
        with open(data / FILE, "wb") as f:
            np.savez(f, **arrays)
        ours = dict(extra_metadata, content_hash=content_hash(arrays))
        meta = {"total_episodes": 0, "total_steps": int(len(arrays["obs"])),
                "data_format": FORMAT,
                "observation_space": source_meta.get("observation_space"),
                "action_space": source_meta.get("action_space"),
                "dataset_id": dataset_id, "author": ["diffrl-bench"],
                "algorithm_name": algorithm_name, "description": description,
                "minari_version": minari.__version__,
                "dataset_size": round((data / FILE).stat().st_size / 1e6, 1),
                "ref_min_score": source_meta.get("ref_min_score"),
                "ref_max_score": source_meta.get("ref_max_score"),
                "diffrl": json.dumps(ours, sort_keys=True, default=str)}
        (data / "metadata.json").write_text(json.dumps(meta))
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # replace: move the old one aside (a rename), then the new in
            os.replace(final, staging / "replaced")
        os.replace(new, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def check_readable(dataset_id: str, meta: dict) -> None:
    """The npz opens and holds `total_steps` rows (no data read beyond its header)."""
    f = dataset_path(dataset_id) / "data" / FILE
    try:
        with np.load(f) as z:
            n = z["reward"].shape[0] if "reward" in z.files else None
    except Exception as e:  # noqa: BLE001 - numpy/zipfile raise many kinds on a bad file
        raise DatasetError(f"{f} cannot be read ({type(e).__name__}); delete "
                           f"{dataset_path(dataset_id)} and rebuild it") from None
    if n != meta.get("total_steps"):
        raise DatasetError(f"{f} holds {n} transitions where its metadata says "
                           f"{meta.get('total_steps')}; delete {dataset_path(dataset_id)} and "
                           "rebuild it")


def read(dataset_id: str, meta: dict, verify: bool = True) -> Dict[str, np.ndarray]:
    path = dataset_path(dataset_id)
    f = path / "data" / FILE
    try:
        with np.load(f) as z:
            arrays = _checked({k: z[k] for k in z.files})
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"dataset {dataset_id} is corrupted or truncated: cannot read {f} "
                           f"({type(e).__name__}); delete the folder {path} and rebuild it") \
            from None
    want = (meta.get("diffrl") or {}).get("content_hash")
    if verify and want != content_hash(arrays):
        raise DatasetError(f"dataset {dataset_id} is corrupted: the data in {f} does not "
                           f"match its content hash; delete the folder {path} and rebuild it")
    return arrays


def subset_id(source_id: str, fraction: float, seed: int = 0) -> str:
    """`ns/env/level-5pct-v0` beside `ns/env/level-v0` (`-s<seed>` for seeds other than 0)."""
    pct = f"{fraction * 100:g}".replace(".", "p") + "pct" + (f"-s{seed}" if seed else "")
    return _beside(source_id, pct)


def choose_episodes(lengths, fraction: float, seed: int = 0):
    """Indices of whole episodes, in a seeded random order, until they hold at least
    `fraction` of the transitions (at least one episode); sorted."""
    lengths = np.asarray(lengths)
    order = np.random.default_rng(seed).permutation(len(lengths))
    need = fraction * lengths.sum()
    k = int(np.searchsorted(np.cumsum(lengths[order]), need) + 1)
    return np.sort(order[:min(max(k, 1), len(lengths))])
