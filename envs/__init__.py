"""Environments behind one functional API, evaluation rollouts and offline datasets.

    env = envs.make("hopper")
    obs, state = env.reset(key)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action)
"""
from envs.core import Env, EnvError, EnvSpec, EnvState
from envs.evaluation import evaluate, normalized_score
from envs.registry import env_ids, make, spec

__all__ = ["Env", "EnvError", "EnvSpec", "EnvState", "env_ids", "evaluate", "make",
           "normalized_score", "spec"]
