"""Saving and restoring training state with orbax, so an interrupted run resumes.

A checkpoint is any pytree of arrays (a `TrainState`, possibly with a leading seed axis, plus
whatever the caller keeps beside it). `restore` needs a template of the same structure, e.g.
the freshly initialised state: orbax then restores the exact dtypes and shapes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple

import orbax.checkpoint as ocp


def _manager(directory) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(Path(directory).resolve(),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))


def save(directory, step: int, tree: Any) -> None:
    """Write `tree` as checkpoint `step` (older ones are removed once it is complete)."""
    with _manager(directory) as mgr:
        mgr.save(int(step), args=ocp.args.StandardSave(tree), force=True)
        mgr.wait_until_finished()


def latest_step(directory) -> Optional[int]:
    if not Path(directory).exists():
        return None
    with _manager(directory) as mgr:
        return mgr.latest_step()


def restore(directory, template: Any) -> Optional[Tuple[int, Any]]:
    """`(step, tree)` of the latest complete checkpoint in `directory`, or None."""
    if not Path(directory).exists():
        return None
    with _manager(directory) as mgr:
        step = mgr.latest_step()
        if step is None:
            return None
        return step, mgr.restore(step, args=ocp.args.StandardRestore(template))
