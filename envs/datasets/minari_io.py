"""Reading and writing offline datasets as real Minari datasets (hdf5).

Writes are atomic: a dataset is created under a staging folder inside the datasets root and
renamed into place only once complete, so an interrupted build never leaves a half-written
dataset where `load` or `list` would see it. Every dataset we write carries a content hash of
its arrays in its metadata; `read` recomputes it and refuses a dataset whose data changed.

Reading Minari's HDF5 costs 1.5-2 ms an episode whatever its length (one HDF5 group and five
arrays each: 9 s for the bandit's 4,000 one-step episodes, about 100 s for a 45k-episode hopper
random level), so `read` keeps the episodes a second time beside the data, in one numpy file
(`.diffrl-episodes.npz`: each field concatenated, plus lengths). It is only a cache: it names
the HDF5 file's size, mtime, ctime and inode it was made from and is ignored (and remade) when
any differs; for our datasets the content hash is checked on it as on the HDF5 data, and a
mismatch falls back to the HDF5 file, whose check decides.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np

FIELDS = ("observations", "actions", "rewards", "terminations", "truncations")


class DatasetError(ValueError):
    """A dataset id that does not exist, or a dataset file that cannot be trusted."""


def datasets_root() -> Path:
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def dataset_path(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def exists(dataset_id: str) -> bool:
    return (dataset_path(dataset_id) / "data").is_dir()


@contextlib.contextmanager
def _minari_root(path: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def hash_arrays(named) -> str:
    """SHA-256 over `(name, array)` pairs: each name, dtype, shape and the bytes."""
    h = hashlib.sha256()
    for name, a in named:
        a = np.ascontiguousarray(a)
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def content_hash(episodes: List[Dict[str, np.ndarray]]) -> str:
    return hash_arrays((f, ep[f]) for ep in episodes for f in FIELDS)


def write(dataset_id: str, episodes: List[Dict[str, np.ndarray]], *, obs_low, obs_high,
          act_low, act_high, ref_min_score: float, ref_max_score: float,
          algorithm_name: str, description: str, extra_metadata: dict,
          replace: bool = False) -> Path:
    """Write a Minari dataset atomically; returns its folder. With `replace`, an existing
    dataset of that id is swapped out only once the new one is complete, so a failed or
    interrupted rebuild leaves the old one in place."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    root = datasets_root()
    final = root / dataset_id
    if final.exists() and not replace:
        raise DatasetError(f"dataset {dataset_id} already exists at {final}")
    clean_staging(root)
    staging = root / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    obs_dim, act_dim = episodes[0]["observations"].shape[1], episodes[0]["actions"].shape[1]
    obs_space = gym.spaces.Box(np.full(obs_dim, obs_low, np.float32),
                               np.full(obs_dim, obs_high, np.float32), dtype=np.float32)
    act_space = gym.spaces.Box(np.full(act_dim, act_low, np.float32),
                               np.full(act_dim, act_high, np.float32), dtype=np.float32)
    try:
        with _minari_root(staging), warnings.catch_warnings():
            # Minari warns about the fields an env-less dataset cannot have (env spec,
            # permalink, e-mail); the metadata below says what generated the data instead.
            warnings.simplefilter("ignore", UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id, [EpisodeBuffer(id=i, **{f: ep[f] for f in FIELDS})
                             for i, ep in enumerate(episodes)], env=None,
                observation_space=obs_space, action_space=act_space,
                algorithm_name=algorithm_name, author="diffrl-bench",
                ref_min_score=float(ref_min_score), ref_max_score=float(ref_max_score),
                description=description)
            meta = dict(extra_metadata, content_hash=content_hash(episodes))
            # Without a Gymnasium env spec Minari drops the reference scores: set them here.
            _update_metadata(staging / dataset_id, {
                "ref_min_score": float(ref_min_score), "ref_max_score": float(ref_max_score),
                "diffrl": json.dumps(meta, sort_keys=True)})
        final.parent.mkdir(parents=True, exist_ok=True)
        _copy_namespaces(staging, root, dataset_id)
        stamp = _stamp(staging / dataset_id)  # a rename keeps the file's size, times, inode
        if final.exists():  # replace: move the old one aside (a rename), then the new in
            os.replace(final, staging / "replaced")
        os.replace(staging / dataset_id, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_episodes_cache(final, episodes, stamp)
    return final


EPISODES_CACHE = ".diffrl-episodes.npz"


def _as_read(ep: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """An episode with the dtypes `read` gives."""
    return {"observations": np.asarray(ep["observations"], np.float32),
            "actions": np.asarray(ep["actions"], np.float32),
            "rewards": np.asarray(ep["rewards"], np.float32),
            "terminations": np.asarray(ep["terminations"], bool),
            "truncations": np.asarray(ep["truncations"], bool)}


def _stamp(path: Path):
    """Size, mtime, ctime and inode of the dataset's HDF5 file; None when it has none (a
    layout we do not cache)."""
    files = sorted((path / "data").glob("*.hdf5"))
    if len(files) != 1:
        return None
    s = files[0].stat()
    return np.array([s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino], np.int64)


def _write_episodes_cache(path: Path, episodes, stamp) -> None:
    """Keep `episodes` (converted as `read` returns them), read from the HDF5 file whose stamp
    was `stamp` before the read, beside the dataset at `path`. Nothing is kept when the file
    has changed since (a rebuild raced the read). Best effort: a folder we cannot write to,
    or too little memory, just goes without (every read then takes the HDF5 path)."""
    staging = None
    try:
        if stamp is None or not np.array_equal(_stamp(path), stamp):
            return
        episodes = [_as_read(ep) for ep in episodes]
        arrays = {"stamp": stamp}
        for f in FIELDS:
            arrays[f] = np.concatenate([ep[f] for ep in episodes])
            arrays[f"len_{f}"] = np.array([len(ep[f]) for ep in episodes], np.int64)
        # written in a staging folder of the datasets root, which `clean_staging` empties
        # when a process dies mid-write, then renamed into place
        staging = datasets_root() / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        with open(staging / EPISODES_CACHE, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(staging / EPISODES_CACHE, path / EPISODES_CACHE)
    except Exception:  # noqa: BLE001 - unwritable, out of memory, no episodes: no cache
        pass
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _read_episodes_cache(path: Path):
    """The cached episodes of the dataset at `path`, or None when there is no cache, it cannot
    be read, its arrays do not add up, or it was made from another HDF5 file than the one
    there now."""
    try:
        stamp = _stamp(path)
        with np.load(path / EPISODES_CACHE) as z:
            if stamp is None or not np.array_equal(z["stamp"], stamp):
                return None
            split = {}
            for f in FIELDS:
                lengths, data = z[f"len_{f}"], z[f]
                if lengths.sum() != len(data) or len(lengths) != len(z["len_actions"]):
                    return None
                split[f] = np.split(data, np.cumsum(lengths)[:-1])
    except Exception:  # noqa: BLE001 - absent, truncated or foreign: read the HDF5 instead
        return None
    return [dict(zip(FIELDS, arrays)) for arrays in zip(*(split[f] for f in FIELDS))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_staging(root: Path = None) -> List[Path]:
    """Remove the staging folders of builds whose process is gone (killed mid-write); a build
    still running keeps its own. Returns what was removed."""
    staging = Path(root or datasets_root()) / ".staging"
    removed = []
    for d in sorted(staging.glob("*")) if staging.is_dir() else ():
        pid = d.name.split("-", 1)[0]
        if not (pid.isdigit() and _alive(int(pid))):  # unnamed: written before pids were kept
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def check_readable(dataset_id: str) -> None:
    """A cheap check that a local dataset's file opens and holds its episodes (no data read):
    a `DatasetError` naming the file otherwise."""
    import h5py

    path = dataset_path(dataset_id)
    f = _data_file(path)
    try:
        with h5py.File(f, "r") as h5:
            n = len(h5.keys())
    except Exception as e:  # noqa: BLE001 - h5py raises many kinds on a bad file
        raise DatasetError(f"{f} cannot be read ({type(e).__name__}); delete {path} and "
                           "rebuild it") from None
    want = read_metadata(dataset_id).get("total_episodes")
    if want is not None and n != want:
        raise DatasetError(f"{f} holds {n} episodes where its metadata says {want}; delete "
                           f"{path} and rebuild it")


def _update_metadata(path: Path, meta: dict):
    from minari.dataset.minari_storage import MinariStorage

    MinariStorage.read(path / "data").update_metadata(meta)


def _copy_namespaces(staging: Path, root: Path, dataset_id: str):
    # Minari keeps a namespace_metadata.json in each namespace folder; carry them over.
    parts = dataset_id.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        src = staging.joinpath(*parts[:i], "namespace_metadata.json")
        dst = root.joinpath(*parts[:i], "namespace_metadata.json")
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)


def read_metadata(dataset_id: str) -> dict:
    """Minari's metadata plus ours (under `diffrl`), without reading the data."""
    from minari.dataset.minari_storage import MinariStorage

    path = dataset_path(dataset_id) / "data"
    try:
        meta = dict(MinariStorage.read_raw_metadata(path))
        if "diffrl" in meta:
            meta["diffrl"] = json.loads(meta["diffrl"])
            if not (isinstance(meta["diffrl"], dict)
                    and isinstance(meta["diffrl"].get("content_hash", ""), str)):
                raise ValueError("our metadata is not a table with a string content hash")
    except Exception as e:  # noqa: BLE001 - any failure here means an unreadable dataset
        raise DatasetError(f"cannot read the metadata of dataset {dataset_id} at {path} "
                           f"({type(e).__name__}); delete the folder and rebuild it") from None
    return meta


def read(dataset_id: str, verify: bool = True, use_cache: bool = True):
    """All episodes of a local dataset as numpy dicts, plus its metadata. `use_cache=False`
    reads the HDF5 file even when the episodes cache is current (`bench data list
    --verify`)."""
    import minari

    path = dataset_path(dataset_id)
    meta = read_metadata(dataset_id)
    ours = meta.get("diffrl")
    episodes = _read_episodes_cache(path) if use_cache else None
    if episodes is not None and not (verify and ours and
                                     ours.get("content_hash") != content_hash(episodes)):
        return episodes, meta
    stamp = _stamp(path)  # before the read: the cache names the file it was read from
    try:
        with _minari_root(datasets_root()):
            ds = minari.load_dataset(dataset_id)
            episodes = [_as_read({f: getattr(ep, f) for f in FIELDS})
                        for ep in ds.iterate_episodes()]
    except Exception as e:  # noqa: BLE001 - h5py/minari raise many kinds on a bad file
        raise DatasetError(f"dataset {dataset_id} is corrupted or truncated: cannot read "
                           f"{_data_file(path)} ({type(e).__name__}: {e}); delete the folder "
                           f"{path} and rebuild it") from None
    if verify and ours and ours.get("content_hash") != content_hash(episodes):
        raise DatasetError(f"dataset {dataset_id} is corrupted: the data in "
                           f"{_data_file(path)} does not match its content hash; delete the "
                           f"folder {path} and rebuild it")
    _write_episodes_cache(path, episodes, stamp)
    return episodes, meta


def _data_file(path: Path) -> Path:
    files = sorted((path / "data").glob("*.hdf5"))
    return files[0] if files else path / "data"
