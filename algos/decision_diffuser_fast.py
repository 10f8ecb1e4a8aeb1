"""Decision Diffuser's fast preset (issue 13): everything of `algos.decision_diffuser` but a
horizon of 32, a DiT-style transformer backbone (`nets.DiTDenoiser`, width 128, 4 blocks, 4
heads) instead of the U-Net, and DDIM over 20 of the T=200 steps instead of all 200 DDPM steps
(at low temperature, only the initial noise is scaled: DDIM with eta 0 adds none).

Not a configuration of the authors' code: a cheaper planner beside the original preset, so the
leaderboard has both (one `--set` away from each other).
"""
from __future__ import annotations

import dataclasses

from algos.decision_diffuser import (ACTING, CDF, InverseDynamics, State,  # noqa: F401
                                     make_planner, make_policy, make_train, prepare_windows,
                                     task_defaults)
from algos.decision_diffuser import Config as _Original
from algos.diffusion_spec import DiffusionSpec

LABEL = "Decision Diffuser (fast)"
ORDER = 76
KIND = "planner"
TINY = {"horizon": "8", "diffusion.T": "4", "diffusion.steps": "2", "diffusion.width": "16",
        "diffusion.depth": "1", "inv_hidden": "16"}


@dataclasses.dataclass(frozen=True)
class Config(_Original):
    diffusion: DiffusionSpec = DiffusionSpec(
        schedule="cosine", T=200, parameterization="eps", sampler="ddim", steps=20,
        clip_x0=1.0, backbone="dit", width=128, depth=4, heads=4)
    horizon: int = 32
