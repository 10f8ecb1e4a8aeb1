"""Saving and restoring training state with orbax, so an interrupted run resumes.

A checkpoint is any pytree of arrays (a `TrainState`, possibly with a leading seed axis, plus
whatever the caller keeps beside it). `restore` needs a template of the same structure, e.g.
the freshly initialised state: orbax then restores the exact dtypes and shapes.

Every checkpoint is written with a SHA-256 digest of its arrays (`digest-<step>.json`, written
before orbax's own files, so a complete checkpoint always has one). `restore` recomputes it:
a truncated or altered checkpoint, or one whose structure is not the template's (written by
other code under the same name), is a `CheckpointError` naming the folder and the fix, never
a resumed run with garbage in it. `lock` keeps two processes off one checkpoint folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted, or a folder another process is using."""


def _manager(directory) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(Path(directory).resolve(),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))


def host_copy(tree: Any) -> Any:
    """The whole tree on this host; across hosts every process gathers all shards."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def digest(tree: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(host_copy(tree))[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _is_empty(leaf) -> bool:
    return getattr(leaf, "size", None) == 0 and hasattr(leaf, "dtype")


def _fill_empty(tree: Any) -> Any:
    """`tree` with every zero-size array replaced by a one-element placeholder: orbax refuses
    zero-size arrays, and MJX's state holds some (`act` of a model without activations). The
    template holds all there is of such an array (its shape and dtype), so `restore` takes it
    from there."""
    return jax.tree.map(lambda x: np.zeros((1,), x.dtype) if _is_empty(x) else x, tree)


def _digest_file(directory, step: int) -> Path:
    return Path(directory) / f"digest-{int(step)}.json"


def save(directory, step: int, tree: Any) -> None:
    """Write `tree` as checkpoint `step` (older ones are removed once it is complete)."""
    from bench.sysinfo import atomic_write_text

    directory = Path(directory)
    sha = digest(tree)  # every process takes part in the gather; the first one writes
    if jax.process_index() == 0:
        atomic_write_text(_digest_file(directory, step), json.dumps({"sha256": sha}))
    with _manager(directory) as mgr:
        if int(step) in mgr.all_steps():   # a --force rerun replaces the old step
            mgr.delete(int(step))
        mgr.save(int(step), args=ocp.args.StandardSave(_fill_empty(tree)), force=True)
        mgr.wait_until_finished()
        keep = set(mgr.all_steps())
    for f in directory.glob("digest-*.json") if jax.process_index() == 0 else ():
        if int(f.stem.split("-")[1]) not in keep:
            f.unlink(missing_ok=True)


def saved_digest(directory, step: int) -> Optional[str]:
    """The SHA-256 written with checkpoint `step` (`restore` checks the arrays against it), or
    None when there is none: what identifies one training's saved state, its metrics and wall
    times included, so two trainings never share it."""
    try:
        return json.loads(_digest_file(directory, step).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_step(directory) -> Optional[int]:
    if not Path(directory).exists():
        return None
    with _manager(directory) as mgr:
        return mgr.latest_step()


def restore(directory, template: Any) -> Optional[Tuple[int, Any]]:
    """`(step, tree)` of the latest complete checkpoint in `directory`, or None when there is
    none; a `CheckpointError` when it cannot be read or its arrays fail their digest."""
    directory = Path(directory)
    if not directory.exists():
        return None
    fix = f"delete {directory} to start the run over, or rerun with --force"
    try:
        with _manager(directory) as mgr:
            step = mgr.latest_step()
            if step is None:
                return None
            tree = mgr.restore(step, args=ocp.args.StandardRestore(_fill_empty(template)))
        tree = jax.tree.map(lambda t, r: t if _is_empty(t) else r, template, tree)
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds on a bad file
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise CheckpointError(f"the checkpoint in {directory} cannot be restored "
                              f"({type(e).__name__}: {msg}); {fix}") from None
    f = _digest_file(directory, step)
    try:
        want = json.loads(f.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"the checkpoint in {directory} has no readable digest {f.name}, "
                              f"so it cannot be checked; {fix}") from None
    if digest(tree) != want:
        raise CheckpointError(f"the checkpoint in {directory} (step {step}) does not match its "
                              f"digest: it was altered or damaged; {fix}")
    return step, jax.tree.map(_uncommitted, tree)


def _uncommitted(x):
    """Orbax hands back arrays committed to their device, where a jitted function returns
    uncommitted ones; jit keys its compiled programs on that, so a program called on fresh
    state and then on restored state in one process compiled twice (26 s for a Maze2D
    Diffuser period on 2 cores; the harness's AOT-compiled runs never did). One-device
    arrays come back as a jitted function would return them, each of orbax's freed as soon as
    it is copied (zero-size leaves are the caller's template: kept); sharded ones keep their
    sharding."""
    if isinstance(x, jax.Array) and len(x.sharding.device_set) == 1:
        y = jax.device_put(np.asarray(x))
        if x.size:
            x.delete()
        return y
    return x


@contextlib.contextmanager
def lock(directory, what: str):
    """Hold an exclusive lock on `directory` for this process (released when it exits, even
    when killed); a second process gets a `CheckpointError` saying `what` is already running."""
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise CheckpointError(f"{what} is already running (process {pid} holds "
                                  f"{directory / '.lock'}); wait for it to finish, then rerun "
                                  "to reuse its results") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
