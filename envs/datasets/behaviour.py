"""Behaviour agents the offline datasets are generated from.

- Brax, Gymnax and MJX (`mujoco/*`) envs: a trained agent, one recipe per env id (`RECIPES`):
  - brax.training's PPO (`PPO_RECIPES`, a well-kept library). Gymnax and MJX envs enter PPO
    through `_as_brax_env`, a thin adapter to Brax's `Env` interface. Every PPO evaluation
    point leaves a snapshot of the policy parameters.
  - our SAC (`SAC_RECIPES`, `algos/sac.py`; MJX Hopper-v5, where it reaches an expert on the
    CPU), trained by the harness's own program, its actor kept every `snapshot_every` env
    steps; the training resumes from its checkpoint when interrupted.
  Each snapshot is then scored in *our* env with *our* evaluation (stochastic policy, 100
  episodes), which is the behaviour return the datasets report.
- MountainCarContinuous: PPO settles in the do-nothing local optimum (measured: best snapshot
  return -1.1, the flag never reached, random -33), so its behaviour agent is the classic
  energy-pumping controller (push along the velocity), and its "learning curve" is that
  controller mixed with uniform random actions at rates 1.0, 0.9, ..., 0.0 (`ScriptedAgent`).
- Maze2D: D4RL's waypoint controller (`envs.maze2d.waypoint_action`).

Where a trained agent comes from, keyed by env id, recipe (`recipe_hash`) and seed:
1. `envs/datasets/agents/` in the repository: agents trained once and committed (numpy arrays
   with every snapshot's return, the recipe and a SHA-256; PPO's every snapshot, a few hundred
   kB; SAC's the actors its levels roll out, 280 kB each), so a fresh clone builds the same
   datasets without depending on a training trajectory, which moves with the CPU's floats.
   `python -m bench data agent --env ENV_ID [--retrain]` (re)writes one there.
2. `<datasets root>/.behaviour/`: agents this datasets root trained itself (another seed or
   recipe), so `MINARI_DATASETS_PATH` roots never share agents silently.
3. Otherwise the agent trains now and is saved in 2, so the `medium`, `expert`,
   `medium-replay` and `medium-expert` datasets of one env train once, and an interrupted build
   does not train again.
A stored agent whose arrays do not match its SHA-256 is an error naming the file.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import Env
from envs.datasets.minari_io import datasets_root


@dataclasses.dataclass(frozen=True)
class PPORecipe:
    num_timesteps: int
    num_envs: int = 512
    batch_size: int = 256
    num_minibatches: int = 16
    unroll_length: int = 20
    num_updates_per_batch: int = 4
    discounting: float = 0.97
    learning_rate: float = 3e-4
    entropy_cost: float = 1e-2
    reward_scaling: float = 10.0
    num_evals: int = 11
    hidden: tuple = (64, 64)


# One recipe per env id, tuned once on 2 CPU cores (see the notes of issue 2).
PPO_RECIPES = {
    "Pendulum-v1": PPORecipe(num_timesteps=2_000_000, num_envs=256, discounting=0.9,
                             reward_scaling=0.1, entropy_cost=0.0, learning_rate=1e-3,
                             num_minibatches=8, num_updates_per_batch=10, unroll_length=16),
    "hopper": PPORecipe(num_timesteps=4_000_000),
    "halfcheetah": PPORecipe(num_timesteps=20_000_000, discounting=0.95, reward_scaling=1.0,
                             entropy_cost=1e-3),
    "walker2d": PPORecipe(num_timesteps=20_000_000),
    "ant": PPORecipe(num_timesteps=20_000_000, reward_scaling=10.0),
    "inverted_pendulum": PPORecipe(num_timesteps=500_000),
    # Gymnasium's MuJoCo v5 tasks in MJX (envs/mujoco_envs.py): meant for a GPU, where MJX
    # runs thousands of envs at once (this CPU steps 2.8k-7.7k env-steps/s at batch 256; no
    # agent trained yet, see issue 15). Brax's halfcheetah PPO config (2048 envs, batch 512,
    # 32 minibatches, unroll 20, 8 updates per batch, discount 0.95, reward scale 1, entropy
    # 1e-3) at num_timesteps 20M instead of its 50M; Walker2d reuses it with 4 updates per batch,
    # discount 0.97 and reward scale 10 (Brax's notebook trains it with SAC) and 21
    # evaluations, each leaving a snapshot (brax rounds their interval up to whole training
    # steps: one every 1,310,720 env steps, 26.2M in all); 128x128 networks. On one H100 it
    # trains at about 19k env-steps/s (results/speed/gpu-mjx.md): `bash bench/reference/
    # device_mujoco.sh Walker2d` there. Hopper-v5's agent is our SAC (`SAC_RECIPES`), which
    # reaches an expert on the CPU.
    "mujoco/Walker2d-v5": PPORecipe(num_timesteps=20_000_000, num_envs=2048, batch_size=512,
                                    num_minibatches=32, entropy_cost=1e-3, num_evals=21,
                                    hidden=(128, 128)),
    "mujoco/HalfCheetah-v5": PPORecipe(num_timesteps=20_000_000, num_envs=2048,
                                       batch_size=512, num_minibatches=32,
                                       num_updates_per_batch=8, discounting=0.95,
                                       reward_scaling=1.0, entropy_cost=1e-3,
                                       hidden=(128, 128)),
}


@dataclasses.dataclass(frozen=True)
class SACRecipe:
    """Our SAC (`algos/sac.py`, REDQ's settings) for `num_timesteps` env steps with these
    `algos.sac.Config` overrides; the actor is kept every `snapshot_every` env steps."""
    num_timesteps: int
    snapshot_every: int = 25_000
    overrides: tuple = ()  # ((Config field, value), ...)

    def config(self):
        from algos import sac

        return sac.Config(steps=self.num_timesteps, eval_every=self.snapshot_every,
                          eval_episodes=10, **dict(self.overrides))


# MJX Hopper-v5: measured, 300k env steps reach a return of 3,309 (best evaluation 3,451) in
# 25 minutes on 2 CPU cores (results/experts/README.md).
SAC_RECIPES = {"mujoco/Hopper-v5": SACRecipe(num_timesteps=300_000)}

# Every env's trained behaviour agent: a PPO or a SAC recipe.
RECIPES = {**PPO_RECIPES, **SAC_RECIPES}


def algo_name(recipe) -> str:
    """'ppo' or 'sac': the file-name tag of an agent of `recipe`."""
    return "sac" if isinstance(recipe, SACRecipe) else "ppo"


def algo_label(recipe) -> str:
    return ("SAC (algos/sac.py)" if isinstance(recipe, SACRecipe)
            else "brax.training PPO")


# Envs whose behaviour agent is a scripted controller mixed with random actions at these rates.
# (Finer near 1: measured, the pumping controller still reaches the flag with 90% random
# actions, at normalised score ~60.)
SCRIPTED_RANDOM_RATES = (1.0, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.9, 0.8, 0.6, 0.4,
                         0.2, 0.0)


def _pump(env: Env, obs):
    """Energy pumping on MountainCar: full force along the velocity."""
    return jnp.where(obs[1:2] >= 0, 1.0, -1.0) * jnp.ones(env.spec.act_dim)


SCRIPTED = {"MountainCarContinuous-v0": _pump}


def make_scripted_act(env: Env):
    """`act(rate, obs, key)`: the env's controller, replaced by a random action w.p. `rate`."""
    controller = SCRIPTED[env.env_id]

    def act(rate, obs, key):
        k_mix, k_rand = jax.random.split(key)
        return jnp.where(jax.random.uniform(k_mix) < rate, env.random_action(k_rand),
                         controller(env, obs))

    return act


def scripted_agent(env: Env, seed: int) -> "TrainedAgent":
    from envs.evaluation import make_evaluate

    t0 = time.time()
    run = jax.jit(make_evaluate(make_scripted_act(env), env, 100, stateful=True))
    key = jax.random.PRNGKey(seed + 1)
    returns = [float(run(jnp.float32(r), key)[0].mean()) for r in SCRIPTED_RANDOM_RATES]
    return TrainedAgent(env.env_id, list(SCRIPTED_RANDOM_RATES),
                        [np.float32(r) for r in SCRIPTED_RANDOM_RATES], returns,
                        time.time() - t0)


REPO_AGENTS = Path(__file__).resolve().parent / "agents"
# The packages whose versions an agent's JSON records, where it trained and where it was scored.
AGENT_PACKAGES = ("jax", "jaxlib", "brax", "mujoco-mjx")


def behaviour_root() -> Path:
    """Agents trained for this datasets root (never shared with another root)."""
    return datasets_root() / ".behaviour"


def _as_brax_env(env: Env):
    """Our functional env seen through Brax's `Env` interface, for brax.training's agents.

    Actions come in [-1, 1] (PPO's tanh) and are scaled to the env's bounds.
    """
    from brax.envs.base import Env as BraxEnv, State

    class Adapter(BraxEnv):
        def reset(self, rng):
            rng, k = jax.random.split(rng)
            obs, inner = env.raw_reset(k)
            return State(pipeline_state=inner, obs=obs.astype(jnp.float32),
                         reward=jnp.zeros(()), done=jnp.zeros(()), metrics={},
                         info={"rng": rng})

        def step(self, state, action):
            rng, k = jax.random.split(state.info["rng"])
            obs, inner, reward, term = env.raw_step(
                k, state.pipeline_state, to_env_action(env, action))
            return state.replace(pipeline_state=inner, obs=obs.astype(jnp.float32),
                                 reward=jnp.asarray(reward, jnp.float32),
                                 done=jnp.asarray(term, jnp.float32),
                                 info={**state.info, "rng": rng})

        @property
        def observation_size(self):
            return env.spec.obs_dim

        @property
        def action_size(self):
            return env.spec.act_dim

        @property
        def backend(self):
            return env.spec.backend

    return Adapter()


def to_env_action(env: Env, unit_action):
    lo, hi = env.spec.action_low, env.spec.action_high
    return lo + (jnp.clip(unit_action, -1.0, 1.0) + 1.0) * 0.5 * (hi - lo)


def _ppo_networks(env: Env, recipe: PPORecipe):
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks as ppo_networks

    return ppo_networks.make_ppo_networks(
        env.spec.obs_dim, env.spec.act_dim,
        preprocess_observations_fn=running_statistics.normalize,
        policy_hidden_layer_sizes=recipe.hidden, value_hidden_layer_sizes=recipe.hidden)


def make_ppo_act(env: Env, recipe: PPORecipe, deterministic: bool = False):
    """`act(params, obs, key) -> action` (env units) for PPO parameters `params`."""
    from brax.training.agents.ppo import networks as ppo_networks

    make_policy = ppo_networks.make_inference_fn(_ppo_networks(env, recipe))

    def act(params, obs, key):
        action, _ = make_policy(params, deterministic=deterministic)(obs, key)
        return to_env_action(env, action)

    return act


def make_sac_act(env: Env, recipe: SACRecipe):
    """`act(actor_params, obs, key) -> action` (env units): the SAC actor's tanh-Gaussian
    sample, as it acts while collecting its own data."""
    from algos import sac
    from algos.nets import tanh_gaussian_sample

    actor, _ = sac._nets(recipe.config(), env.spec.act_dim)

    def act(params, obs, key):
        mean, log_std = actor.apply(params, obs)
        a, _ = tanh_gaussian_sample(key, mean, log_std)
        return sac._to_env(env.spec, a)

    return act


def make_agent_act(env: Env, recipe):
    """The behaviour policy `act(params, obs, key)` of an agent of `recipe` (stochastic)."""
    if isinstance(recipe, SACRecipe):
        return make_sac_act(env, recipe)
    return make_ppo_act(env, recipe)


@dataclasses.dataclass
class TrainedAgent:
    env_id: str
    steps: List[float]         # each snapshot's label: env steps, or scripted random rate
    params: List[Any]          # per snapshot: PPO (normalizer, policy, value), SAC's actor;
                               # None where a stored SAC agent keeps no snapshot
    returns: List[float]       # our evaluation of each snapshot: mean return, 100 episodes
    train_seconds: float
    sha256: Optional[str] = None   # of the stored arrays (trained agents)
    source: str = ""               # where it came from: the repo, a datasets root, trained now
    trained: Optional[dict] = None  # hardware and versions it trained with (None: here)
    scored: Optional[dict] = None   # ... it was scored with, where not where it trained


def _brax_env(env: Env):
    if env.spec.source == "brax":
        from brax import envs as brax_envs

        return brax_envs.get_environment(env.spec.env_id, backend=env.spec.backend)
    return _as_brax_env(env)


def trained_agent(env: Env, seed: int, log: Callable[[str], None] = print) -> TrainedAgent:
    """The env's PPO or SAC agent for `seed`: committed in the repo, saved in this datasets
    root, or trained now (and saved there)."""
    recipe = RECIPES[env.env_id]
    for folder in (REPO_AGENTS, behaviour_root()):
        saved = load_agent(folder, env.env_id, seed, recipe)
        if saved is not None and not np.isfinite(saved.returns).all():
            from envs.datasets.minari_io import DatasetError

            raise DatasetError(
                f"behaviour agent {agent_path(folder, env.env_id, seed, recipe)} is unscored "
                "(trained with --unscored-to); score it here with `python -m bench data agent "
                f"--env {env.env_id} --seed {seed} --score-from DIR`, DIR its folder elsewhere")
        if saved is not None:
            log(f"  {env.env_id}: {algo_name(recipe).upper()} agent {saved.source} "
                f"(sha256 {saved.sha256[:12]})")
            return saved
    agent = train_agent(env, seed, log)
    save_agent(behaviour_root(), agent, seed, recipe)
    discard_training_state(env.env_id, seed)
    return load_agent(behaviour_root(), env.env_id, seed, recipe)


def train_agent(env: Env, seed: int, log: Callable[[str], None] = print,
                restart: bool = False) -> TrainedAgent:
    """Train the env's recipe (PPO or SAC) and score its snapshots; saved nowhere (a SAC
    training resumes from its checkpoint unless `restart`)."""
    if isinstance(RECIPES[env.env_id], SACRecipe):
        return train_sac(env, seed, log, restart)
    return train_ppo(env, seed, log)


def sac_checkpoint(env_id: str, seed: int) -> Path:
    """Where a SAC agent's training keeps its resumable state (deleted once it is saved)."""
    return agent_path(behaviour_root(), env_id, seed, RECIPES[env_id]).with_suffix(".ckpt")


def discard_training_state(env_id: str, seed: int) -> None:
    """Delete a SAC agent's training checkpoint once the agent is saved (PPO keeps none)."""
    if isinstance(RECIPES[env_id], SACRecipe):
        shutil.rmtree(sac_checkpoint(env_id, seed), ignore_errors=True)


def train_ppo(env: Env, seed: int, log: Callable[[str], None] = print,
              unscored_to: Optional[Path] = None) -> TrainedAgent:
    """Train the env's PPO recipe and score every snapshot in our env; saved nowhere.

    With `unscored_to`, nothing is scored: the agent's files are written to that folder
    after every snapshot (returns NaN), so a training cut short keeps the snapshots it
    reached. A GPU machine trains this way, and `score_agent` scores the snapshots on the
    machine whose floats the datasets are built with."""
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo

    recipe = PPO_RECIPES[env.env_id]
    snapshots = []
    t0 = time.time()

    def progress(step, metrics):
        r = metrics.get("eval/episode_reward")
        log(f"  {env.env_id} PPO: {step:>9,d} env steps, {time.time() - t0:6.0f}s"
            + (f", brax eval return {float(r):.1f}" if r is not None else ""))

    def keep(step, make_policy, params):
        snapshots.append((int(step), jax.device_get(params)))
        if unscored_to is not None:
            save_agent(unscored_to, TrainedAgent(
                env.env_id, [s for s, _ in snapshots], [p for _, p in snapshots],
                [float("nan")] * len(snapshots), time.time() - t0), seed, recipe)

    ppo.train(
        _brax_env(env), num_timesteps=recipe.num_timesteps, num_evals=recipe.num_evals,
        episode_length=env.spec.episode_length, num_envs=recipe.num_envs,
        batch_size=recipe.batch_size, num_minibatches=recipe.num_minibatches,
        unroll_length=recipe.unroll_length, num_updates_per_batch=recipe.num_updates_per_batch,
        discounting=recipe.discounting, learning_rate=recipe.learning_rate,
        entropy_cost=recipe.entropy_cost, reward_scaling=recipe.reward_scaling,
        normalize_observations=True, seed=seed, num_eval_envs=32,
        network_factory=functools.partial(
            ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=recipe.hidden,
            value_hidden_layer_sizes=recipe.hidden),
        progress_fn=progress, policy_params_fn=keep)
    train_seconds = time.time() - t0
    if unscored_to is not None:
        return load_agent(unscored_to, env.env_id, seed, recipe)
    return _scored(env, recipe, [s for s, _ in snapshots], [p for _, p in snapshots], seed,
                   train_seconds, log)


def score_agent(env: Env, folder: Path, seed: int,
                log: Callable[[str], None] = print) -> TrainedAgent:
    """The PPO agent stored unscored in `folder` (`train_ppo(unscored_to=folder)`, on another
    machine), its snapshots scored here; where and with what it trained stays recorded."""
    from envs.datasets.minari_io import DatasetError

    from bench.sysinfo import hardware, versions

    recipe = RECIPES[env.env_id]
    agent = load_agent(folder, env.env_id, seed, recipe)
    if agent is None:
        raise DatasetError(f"no agent of {env.env_id} (recipe {recipe_hash(recipe)}, seed "
                           f"{seed}) in {folder}: expected "
                           f"{agent_path(folder, env.env_id, seed, recipe).name}; give the "
                           "folder that --unscored-to wrote, and the same --seed")
    scored = _scored(env, recipe, agent.steps, agent.params, seed, agent.train_seconds, log)
    scored.trained = agent.trained
    scored.scored = {"scored_on": hardware(), "scored_with": versions(AGENT_PACKAGES)}
    return scored


def train_sac(env: Env, seed: int, log: Callable[[str], None] = print,
              restart: bool = False) -> TrainedAgent:
    """Train the env's SAC recipe with the suite's own loop, keeping the actor every
    `snapshot_every` env steps, then score every snapshot in our env (nothing saved but the
    run's checkpoint: `<datasets root>/.behaviour/<agent name>.ckpt/`, written after each
    snapshot, so an interrupted training resumes where it stopped).

    The program is the one `python -m bench train --algo sac --env ENV --seeds 1` runs (a seed
    axis of one, evaluated by `run_seeds`): the floats of a vmapped and an unvmapped program
    differ, and SAC's training amplifies the difference into another run, so this way the
    agent is the run whose curve `results/experts/` publishes (same config hash, same key)."""
    from algos import checkpoint, sac
    from envs.evaluation import default_seed_batch

    recipe = RECIPES[env.env_id]
    config = recipe.config()
    train = sac.make_train(config, None, env)
    periods = train.periods
    ckpt = sac_checkpoint(env.env_id, seed)
    # jitted: every leaf an array (a Python int in an env state would restore as int64)
    state = jax.jit(train.init_seeds)(jax.vmap(jax.random.PRNGKey)(jnp.array([seed])))
    tree = {"state": state, "seconds": jnp.zeros((), jnp.float32),
            "snapshots": jax.tree.map(lambda x: jnp.zeros((periods,) + x.shape[1:], x.dtype),
                                      state.algo.actor)}
    with checkpoint.lock(ckpt, f"training the SAC agent of {env.env_id}"):
        if restart:  # under the lock: a training running beside keeps its checkpoint
            for p in ckpt.iterdir():
                if p.name != ".lock":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        try:
            done, tree = checkpoint.restore(ckpt, tree) or (0, tree)
        except checkpoint.CheckpointError as e:
            from envs.datasets.minari_io import DatasetError

            raise DatasetError(f"{str(e).split('; ')[0]}; retrain the agent with `python -m "
                               f"bench data agent --env {env.env_id} --seed {seed} "
                               "--retrain`") from None
        if done:
            log(f"  {env.env_id} SAC: resumed at {done * recipe.snapshot_every:,d} env steps "
                f"from {ckpt}")
        run = jax.jit(lambda s: train.run_seeds(s, 1, default_seed_batch()))
        for i in range(done, periods):
            t0 = time.time()
            state, metrics = jax.block_until_ready(run(tree["state"]))
            tree = {"state": state, "seconds": tree["seconds"] + (time.time() - t0),
                    "snapshots": jax.tree.map(lambda all_, a: all_.at[i].set(a[0]),
                                              tree["snapshots"], state.algo.actor)}
            checkpoint.save(ckpt, i + 1, tree)
            log(f"  {env.env_id} SAC: {(i + 1) * recipe.snapshot_every:>9,d} env steps, "
                f"{float(tree['seconds']):6.0f}s, return {float(metrics['return'][0, 0]):.1f} "
                "(mean action, 10 episodes)")
    snaps = jax.device_get(tree["snapshots"])
    return _scored(env, recipe, [(i + 1) * recipe.snapshot_every for i in range(periods)],
                   [jax.tree.map(lambda x: x[i], snaps) for i in range(periods)], seed,
                   float(tree["seconds"]), log)


def _scored(env, recipe, steps, params, seed, train_seconds, log) -> TrainedAgent:
    returns = score_snapshots(env, recipe, params, seed)
    agent = TrainedAgent(env.env_id, steps, params, [float(r) for r in returns],
                         train_seconds)
    for s, r in zip(agent.steps, agent.returns):
        log(f"  {env.env_id} snapshot at {s:>9,d} steps: return {r:.1f} "
            f"(normalised {float(env.normalize(r)):.1f})")
    return agent


def level_snapshots(env: Env, returns) -> dict:
    """The snapshots each D4RL level rolls out: `expert` the best, `medium` the one (up to
    the best) whose return is closest to a third of the way from random to the best,
    `medium-replay` every one up to the medium one, `medium-expert` medium and expert."""
    i_exp = int(np.argmax(returns))
    target = env.spec.ref_min_score + (returns[i_exp] - env.spec.ref_min_score) / 3
    i_med = int(np.argmin([abs(r - target) for r in returns[:i_exp + 1]]))
    return {"medium": [i_med], "expert": [i_exp], "medium-expert": [i_med, i_exp],
            "medium-replay": list(range(i_med + 1))}


def score_snapshots(env: Env, recipe, params_list, seed: int, episodes: int = 100):
    """Mean return of each snapshot's stochastic policy, over `episodes` episodes."""
    from envs.evaluation import make_evaluate

    act = make_agent_act(env, recipe)
    run = jax.jit(make_evaluate(act, env, episodes, stateful=True))
    key = jax.random.PRNGKey(seed + 1)
    return [float(run(p, key)[0].mean()) for p in params_list]


# --- persistence (numpy arrays + JSON) ------------------------------------------------------
def recipe_hash(recipe) -> str:
    """A hash of the recipe; a SAC recipe's also covers the whole `algos.sac.Config` it makes
    (its defaults included), so a changed default names another agent."""
    text = repr(dataclasses.astuple(recipe))
    if isinstance(recipe, SACRecipe):
        from algos.config import config_hash

        text += config_hash(recipe.config())
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def agent_path(folder: Path, env_id: str, seed: int, recipe) -> Path:
    """`<folder>/<env id>-<ppo|sac>-<recipe hash>-seed<seed>.npz` (its JSON beside it); a
    '/' in the id (`mujoco/Hopper-v5`) becomes '_', so every agent lies flat in its folder."""
    name = env_id.replace("/", "_")
    return Path(folder) / f"{name}-{algo_name(recipe)}-{recipe_hash(recipe)}-seed{seed}.npz"


def _flat(params_list) -> dict:
    out = {}
    for i, p in enumerate(params_list):
        if p is None:
            continue
        for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(p))[0]:
            out[f"{i}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return out


def _arrays_sha256(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_agent(folder: Path, agent: TrainedAgent, seed: int, recipe) -> Path:
    """Write the agent's snapshots (`.npz`) and what describes them (`.json`), atomically.

    A SAC agent keeps only the snapshots its datasets roll out (`level_snapshots`; its
    actors are 280 kB each); every snapshot's return stays in the JSON."""
    import json

    from bench.sysinfo import atomic_write_text, hardware, versions

    path = agent_path(folder, agent.env_id, seed, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = list(agent.params)
    if isinstance(recipe, SACRecipe):
        from envs.registry import make

        keep = set(sum(level_snapshots(make(agent.env_id), agent.returns).values(), []))
        params = [p if i in keep else None for i, p in enumerate(params)]
    arrays = _flat(params)
    here = versions(AGENT_PACKAGES)
    # Everything is computed before the first file is replaced, so a kill (a GPU run's
    # timeout) can fall only between the two renames, not between the npz and its SHA-256.
    text = json.dumps({
        "env_id": agent.env_id, "seed": seed, "algorithm": algo_label(recipe),
        "recipe": dataclasses.asdict(recipe), "recipe_hash": recipe_hash(recipe),
        **_sac_config(recipe),
        "snapshot_env_steps": agent.steps,  # an unscored snapshot's return: null
        "snapshot_returns": [r if np.isfinite(r) else None for r in agent.returns],
        "stored_snapshots": [i for i, p in enumerate(params) if p is not None],
        "train_seconds": round(agent.train_seconds, 1), "sha256": _arrays_sha256(arrays),
        **(agent.trained or {"trained_on": hardware(), "versions": here}),
        **(agent.scored or {})}, indent=1)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    atomic_write_text(path.with_suffix(".json"), text)
    return path


def _sac_config(recipe) -> dict:
    """A SAC recipe's whole Config and its hash (that of `bench train`'s results files)."""
    if not isinstance(recipe, SACRecipe):
        return {}
    from algos.config import config_dict, config_hash

    return {"sac_config": config_dict(recipe.config()),
            "sac_config_hash": config_hash(recipe.config())}


def load_agent(folder: Path, env_id: str, seed: int, recipe) -> Optional[TrainedAgent]:
    """The agent stored in `folder` for this env, seed and recipe, or None; a stored agent
    that cannot be read or fails its SHA-256 is a one-line `DatasetError`."""
    import json

    from envs.datasets.minari_io import DatasetError

    path = agent_path(folder, env_id, seed, recipe)
    if not path.exists():
        return None
    fix = (f"delete {path} and its .json to retrain it (`python -m bench data agent --env "
           f"{env_id} --seed {seed} --retrain` for the repo's copy)")
    try:
        info = json.loads(path.with_suffix(".json").read_text())
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - numpy/zipfile/json raise many kinds on a bad file
        raise DatasetError(f"behaviour agent {path} cannot be read ({type(e).__name__}); "
                           f"{fix}") from None
    if _arrays_sha256(arrays) != info.get("sha256"):
        raise DatasetError(f"behaviour agent {path} does not match its SHA-256; {fix}")
    template = _params_template(env_id, recipe)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    params = []
    stored = set(info.get("stored_snapshots", range(len(info["snapshot_env_steps"]))))
    for i in range(len(info["snapshot_env_steps"])):
        if i not in stored:
            params.append(None)
            continue
        try:
            params.append(jax.tree_util.tree_unflatten(
                treedef, [arrays[f"{i}{jax.tree_util.keystr(p)}"] for p, _ in leaves]))
        except KeyError:
            raise DatasetError(f"behaviour agent {path} does not hold the networks of recipe "
                               f"{recipe_hash(recipe)}; {fix}") from None
    where = "committed in the repo" if Path(folder) == REPO_AGENTS else f"saved at {path}"
    returns = [float("nan") if r is None else r for r in info["snapshot_returns"]]
    return TrainedAgent(env_id, info["snapshot_env_steps"], params, returns,
                        info["train_seconds"], info["sha256"], where,
                        {k: info.get(k, "unknown") for k in ("trained_on", "versions")},
                        {k: info[k] for k in ("scored_on", "scored_with") if k in info} or None)


def _params_template(env_id: str, recipe):
    """A snapshot's pytree: SAC's actor params, or what PPO hands to `policy_params_fn`,
    (normalizer, policy, value)."""
    if isinstance(recipe, SACRecipe):
        from algos import sac
        from envs.registry import spec

        actor, _ = sac._nets(recipe.config(), spec(env_id).act_dim)
        return jax.device_get(actor.init(jax.random.PRNGKey(0),
                                         jnp.zeros((1, spec(env_id).obs_dim))))
    from brax.training import types  # noqa: F401  (keeps brax's pytree registrations)
    from brax.training.acme import running_statistics, specs

    from envs.registry import make

    env = make(env_id)
    nets = _ppo_networks(env, recipe)
    key = jax.random.PRNGKey(0)
    normalizer = running_statistics.init_state(
        specs.Array((env.spec.obs_dim,), jnp.dtype("float32")), std_eps=0.0, mode="welford")
    return jax.device_get((normalizer, nets.policy_network.init(key),
                           nets.value_network.init(key)))
