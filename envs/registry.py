"""The env ids and what each one fixes.

Reference scores are published per env id: `ref_min_score` is the mean return of the uniform
random policy over 1000 episodes (`python -m bench envs --measure-refs` re-measures it), and
`ref_max_score` the mean return over 100 episodes of the expert behaviour agent that
`python -m bench data build` trains (recipes in `envs/datasets/behaviour.py`; seed 0; the
build logs every snapshot's return). NaN: no expert trained yet. The tests check that the
random policy and the expert datasets still land at about 0 and 100.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from envs.core import Env, EnvError, EnvSpec
from envs import bandit
from envs.maze2d import EPISODE_LENGTH

_EXACT = "exact: the observation is the full state"
_SPRING = ""  # spring integrates maximal coordinates the observation (q, qd) does not fix

# env_id -> (spec, factory)
_REGISTRY: Dict[str, Tuple[EnvSpec, Callable[[EnvSpec], Env]]] = {}


def _register(spec: EnvSpec, factory):
    _REGISTRY[spec.env_id] = (spec, factory)


def _lazy(module: str, factory_name: str):
    """A factory that imports `envs.<module>` only when the id is first made."""
    def factory(spec):
        import importlib

        return getattr(importlib.import_module(f"envs.{module}"), factory_name)(spec)

    return factory


def _gymnax(factory_name):
    return _lazy("gymnax_envs", factory_name)


def _brax(name):
    def factory(spec):
        from envs.brax_envs import make_brax

        return make_brax(spec, name)

    return factory


def _maze(name):
    def factory(spec):
        from envs.maze2d import make_maze2d

        return make_maze2d(spec, name)

    return factory


_register(EnvSpec("Pendulum-v1", "gymnax", "gymnax", 3, 1, -2.0, 2.0, 200,
                  ref_min_score=-1220.8, ref_max_score=-202.3, state_from_obs=_EXACT,
                  description="swing-up; dense reward"), _gymnax("make_pendulum"))
_register(EnvSpec("MountainCarContinuous-v0", "gymnax", "gymnax", 2, 1, -1.0, 1.0, 999,
                  ref_min_score=-33.2, ref_max_score=90.2, state_from_obs=_EXACT,
                  description="sparse +100 at the flag, action cost; terminates at the flag"),
          _gymnax("make_mountain_car"))

_NAN = float("nan")  # no expert trained yet: its PPO recipe is a full-tier (GPU) job
for _name, _backend, _obs, _act, _lo, _hi, _how in [
    ("hopper", "spring", 11, 3, 137.9, 323.6, _SPRING),
    ("halfcheetah", "spring", 17, 6, -70.3, _NAN, _SPRING),
    ("walker2d", "spring", 17, 6, 240.3, _NAN, _SPRING),
    ("ant", "spring", 27, 8, -258.2, _NAN, _SPRING),
    # 1000 = one reward per step for the whole episode: the maximum, reached by any balancer
    ("inverted_pendulum", "generalized", 4, 1, 5.5, 1000.0, _EXACT),
]:
    _register(EnvSpec(_name, "brax", _backend, _obs, _act, -1.0, 1.0, 1000,
                      ref_min_score=_lo, ref_max_score=_hi, state_from_obs=_how,
                      description="Brax locomotion, default reward"), _brax(_name))


# Gymnasium's MuJoCo v5 tasks in MJX (envs/mujoco_envs.py): the physics of Minari's
# mujoco/<env>/*-v0 datasets and of the papers' D4RL tables. Expert reference: Hopper's is its
# SAC agent's best snapshot (250k env steps; envs/datasets/agents/, 100 episodes of its
# stochastic policy, as for every trained agent's env here); Walker2d and HalfCheetah have no
# expert yet (issue 15).
# Random references, 1000 episodes each here, against gymnasium's CPU env (its episodes):
# Hopper 17.46 vs 18.21 +- 0.63 (1000), Walker2d 1.74 vs 1.74 +- 0.20 (1000), HalfCheetah
# -285.73 vs -284.31 +- 8.61 (100); HalfCheetah -285.0 with the solver caps of
# envs/mujoco_envs.py (the same 1000 episodes part after hundreds of steps; Hopper and
# Walker2d unchanged at one decimal).
_CLIPPED = ("exact while every velocity is within the observation's +-10 clip (root x, "
            "which nothing depends on, is set to 0)")
for _name, _obs, _act, _lo, _hi, _how in [
    ("Hopper-v5", 11, 3, 17.5, 3436.7, _CLIPPED),
    ("Walker2d-v5", 17, 6, 1.7, _NAN, _CLIPPED),
    ("HalfCheetah-v5", 17, 6, -285.0, _NAN,
     "exact (root x, which nothing depends on, is set to 0)"),
]:
    _register(EnvSpec(f"mujoco/{_name}", "mujoco", "mjx", _obs, _act, -1.0, 1.0, 1000,
                      ref_min_score=_lo, ref_max_score=_hi, state_from_obs=_how,
                      description=f"gymnasium {_name} (MuJoCo physics in MJX), v5 reward"),
              _lazy("mujoco_envs", "make_locomotion"))

for _layout, _lo, _hi in [("umaze", 43.7, 283.2), ("medium", 19.4, 566.0),
                          ("large", 14.9, 755.5)]:
    _register(EnvSpec(f"maze2d-{_layout}", "maze2d", "jax", 4, 2, -1.0, 1.0,
                      EPISODE_LENGTH[_layout], ref_min_score=_lo, ref_max_score=_hi,
                      state_from_obs=_EXACT,
                      description=f"D4RL {_layout} layout, sparse reward within 0.5 of the goal"),
              _maze(_layout))


# References: uniform random actions (exact, see envs/bandit.py) and the best mode.
_register(EnvSpec("bandit-2d", "bandit", "jax", bandit.OBS_DIM, bandit.ACT_DIM, -1.0, 1.0, 1,
                  ref_min_score=bandit.RANDOM_RETURN, ref_max_score=bandit.BEST_RETURN,
                  state_from_obs=_EXACT,
                  description="Diffusion-QL's 2-D multi-modal bandit: one step, 4 modes"),
          bandit.make_bandit)


def env_ids():
    return list(_REGISTRY)


def spec(env_id: str) -> EnvSpec:
    if env_id not in _REGISTRY:
        raise EnvError(f"unknown env id {env_id!r}; known ids: {', '.join(_REGISTRY)}")
    return _REGISTRY[env_id][0]


_CACHE: Dict[str, Env] = {}


def make(env_id: str) -> Env:
    """The environment for an id (built once per process, then shared)."""
    s = spec(env_id)
    if env_id not in _CACHE:
        _CACHE[env_id] = _REGISTRY[env_id][1](s)
    return _CACHE[env_id]
