"""Decision Diffuser (Ajay et al. 2023, "Is Conditional Generative Modeling all you need for
Decision-Making?"): a diffusion model of state sequences conditioned on the return by
classifier-free guidance, and an inverse-dynamics model that reads the action between the
current state and the next planned one. It replans at every env step.

Followed: the authors' released code, anuragajay/decision-diffuser (01ce528), under `code/`:
- `config/locomotion_config.py`: horizon 100, T=200 (cosine schedule), eps-prediction, U-Net
  dim 128 with mults (1, 4, 8), returns condition with dropout 0.25, guidance w=1.2, test
  return 0.9, CDFNormalizer, clipped x0, use_padding, discount 0.99, termination penalty -100,
  returns scale 400, inverse dynamics hidden 256, Adam at 2e-4, batch 32 x 2 accumulated, EMA
  0.995, 1e6 steps. EMA every 10 steps, a plain copy before step 2000 (`Trainer` defaults in
  `diffuser/utils/training.py`).
- `diffuser/datasets/sequence.py` (`SequenceDataset`): windows `[actions, observations]` from
  every step of an episode, padded with zeros past its end, none reaching past step 999
  (`max_path_length` 1000); the condition is the discounted
  return from the window's start to the episode's end (the penalty added to a terminal step's
  reward, `buffer.py`), divided by `returns_scale`.
- `diffuser/datasets/normalization.py` (`CDFNormalizer`): every dimension mapped through its
  empirical CDF to [-1, 1] (clipped to the data's range first); a constant dimension passes
  through.
- `diffuser/models/temporal.py` (`TemporalUnet` with `returns_condition`): the return embedded
  by `Linear(1, d) Mish Linear(d, 4d) Mish Linear(4d, d)` (`nets.ReturnEncoder`), zeroed per
  sample with probability 0.25 in training (the null condition is the zero vector) and
  concatenated to the time embedding.
- `diffuser/models/diffusion.py` (`GaussianInvDynDiffusion`): the diffusion loss on the states
  only, the current state inpainted into the noised input at step 0 and left out of the loss
  (weight 0, mean over all entries); inverse dynamics `[s_t, s_t+1] -> a_t` as
  `Linear(2 obs, 256) ReLU Linear(256, 256) ReLU Linear(256, act)`, MSE on normalised actions
  over every consecutive pair of the (clean) window; the loss `0.5 (diffusion + inverse)`,
  one optimiser for both. Sampling: eps = eps_null + w (eps_cond - eps_null) with x0 clipped,
  all T steps of DDPM with the noise (and the initial sample) multiplied by 0.5, the current
  state inpainted after every step.
- `scripts/evaluate_inv_parallel.py`: the EMA model plans one trajectory from the normalised
  current state with the constant target return 0.9; the action is
  `inv(samples[0], samples[1])`, unnormalised; a new plan at every env step.

Deviations:
- `returns_norm="range"` (the `task_defaults` for every dataset but hopper's): the return is
  mapped from its range over the dataset's windows to [0, 1], as the paper's appendix says
  ("normalized to [0, 1]"). The released code divides by a fixed 400, chosen for hopper and
  meaningless for other reward scales (e.g. Pendulum's returns are negative); hopper datasets
  keep `scale` with 400.
- the CDF normaliser keeps at most 1024 knots of each dimension's empirical CDF (evenly spaced
  among its unique values, the first and last included), interpolating linearly between them
  as the authors' `interp1d` does between all of them: the table lives in every seed's train
  state and checkpoint.
- batch 64 in one step instead of 32 twice with gradients accumulated: the same mean gradient.
- the conditional and null predictions are one network call on the doubled batch (the authors
  make two calls): the same arithmetic.
- the last window start of every episode is kept (the authors' `range(max_start)` drops it).
- batches are drawn uniformly with replacement (the authors' DataLoader shuffles each epoch).
- the fast preset's DiT adds a projection of the return embedding to its time embedding
  (adaLN), so its null condition is that projection's bias, not zero.
- actions are clipped to the env's bounds (the authors' inverse CDF keeps them inside the data's
  range, which lies inside the bounds).
- Flax's default initialisers.

Not built: the paper's history conditioning (context K=20; absent from the released code
too), its constraint and skill compositions (not released).

`decision_diffuser_fast` is the fast preset: horizon 32, a transformer backbone, DDIM with 20
steps.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algos.config import BaseConfig, ConfigError
from algos.data import Windows, env_arrays
from algos.diffuser import MAX_PATH_LENGTH, Gaussian, Limits, check_horizon_and_ema, \
    condition_mask, ema_update
from algos.diffuser import _normalizer as diffuser_normalizer
from algos.diffusion_spec import DiffusionSpec, check_backbone, make_denoiser, make_loss, \
    make_sampler
from algos.diffusion_spec import SAMPLING_FIELDS
from algos.loop import Policy, adam, make_offline_train
from algos.nets import MLP, ReturnEncoder

LABEL = "Decision Diffuser"
# the return condition, its guidance weight and the sampling noise act; dropout trains
ACTING = ("target_return", "guidance_w", "temperature") + SAMPLING_FIELDS
ORDER = 75
KIND = "planner"
TINY = {"horizon": "8", "diffusion.T": "4", "diffusion.width": "8", "diffusion.mults": "1,2",
        "inv_hidden": "16"}
NORMALIZERS = ("cdf", "gaussian", "limits")
RETURNS_NORMS = ("scale", "range")
CDF_KNOTS = 1024


@dataclasses.dataclass(frozen=True)
class Config(BaseConfig):
    diffusion: DiffusionSpec = DiffusionSpec(
        schedule="cosine", T=200, parameterization="eps", sampler="ddpm", clip_x0=1.0,
        backbone="unet", width=128, mults=(1, 4, 8))
    horizon: int = 100
    steps: int = 1_000_000
    eval_every: int = 10_000
    batch_size: int = 64            # the authors' 32 x 2 accumulated gradients
    lr: float = 2e-4
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_start: int = 2000
    normalizer: str = "cdf"         # cdf (the authors') | gaussian | limits
    discount: float = 0.99          # of the return condition
    termination_penalty: float = -100.0
    returns_norm: str = "scale"     # scale: R / returns_scale (the code) | range: to [0, 1]
    returns_scale: float = 400.0    # the authors' hopper value
    target_return: float = 0.9      # the condition when acting, in normalised units
    condition_dropout: float = 0.25
    guidance_w: float = 1.2
    temperature: float = 0.5        # noise multiplier when sampling
    inv_hidden: int = 256           # inverse dynamics MLP width

    def check(self):
        check_backbone(self.diffusion, sequence=True)
        if self.diffusion.sampler not in ("ddpm", "ddim"):
            raise ConfigError("Decision Diffuser samples at low temperature with ddpm or ddim; "
                              f"diffusion.sampler={self.diffusion.sampler} does not apply")
        if self.horizon < 2:
            raise ConfigError(f"horizon must be at least 2 (the state and the next one), got "
                              f"{self.horizon}")
        check_horizon_and_ema(self)
        for name, value, options in [("normalizer", self.normalizer, NORMALIZERS),
                                     ("returns_norm", self.returns_norm, RETURNS_NORMS)]:
            if value not in options:
                raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        if not 0 <= self.condition_dropout < 1:
            raise ConfigError(f"condition_dropout must be in [0, 1), got "
                              f"{self.condition_dropout}")
        if self.returns_scale <= 0 or self.temperature <= 0 or self.inv_hidden < 1 \
                or not 0 < self.discount <= 1:
            raise ConfigError("returns_scale > 0, temperature > 0, inv_hidden >= 1 and "
                              "0 < discount <= 1")
        if self.normalize_obs or self.reward_scale != "none":
            raise ConfigError("Decision Diffuser normalises every dimension itself "
                              "(normalizer=cdf, gaussian or limits); normalize_obs and "
                              "reward_scale do not apply")


# The authors' only released setting is hopper medium-expert, returns scale 400; elsewhere the
# return is mapped to [0, 1] over the dataset (the paper's appendix).
def task_defaults(dataset_id: str) -> dict:
    parts = dataset_id.split("/")   # jaxrl/<env>/<level>, jaxrl/mujoco/<env>/..., mujoco/<env>/...
    env = parts[-2] if len(parts) >= 3 else ""
    return {} if env == "hopper" else {"returns_norm": "range"}


# --- the CDF normaliser ---------------------------------------------------------------------
def _cdf_table(x: np.ndarray, knots: int = CDF_KNOTS):
    """Per dimension of `x (N, d)`: `(quantiles, cumprob)` of its empirical CDF, `knots` of
    them at most, padded with the last entry to one width; and whether it is constant."""
    qs, ps, const = [], [], []
    for col in np.asarray(x, np.float64).T:
        q, counts = np.unique(col, return_counts=True)
        p = np.cumsum(counts) / col.size
        if len(q) > knots:
            idx = np.unique(np.round(np.linspace(0, len(q) - 1, knots)).astype(int))
            q, p = q[idx], p[idx]
        const.append(len(q) == 1)
        if len(q) == 1:                      # passes through; any increasing table will do
            q, p = np.array([q[0], q[0] + 1.0]), np.array([0.0, 1.0])
        qs.append(q)
        ps.append(p)
    width = max(len(q) for q in qs)
    pad = lambda a: np.concatenate([a, np.full(width - len(a), a[-1])])  # noqa: E731
    return (jnp.asarray(np.stack([pad(q) for q in qs]), jnp.float32),
            jnp.asarray(np.stack([pad(p) for p in ps]), jnp.float32), jnp.asarray(const))


def _cdf_forward(x, q, p, const):
    def one(xi, qi, pi):
        return 2.0 * jnp.interp(jnp.clip(xi, qi[0], qi[-1]), qi, pi) - 1.0
    y = jax.vmap(one, in_axes=(-1, 0, 0), out_axes=-1)(x, q, p)
    return jnp.where(const, x, y)


def _cdf_inverse(y, q, p, const):
    def one(yi, qi, pi):
        return jnp.interp(jnp.clip((yi + 1.0) / 2.0, pi[0], pi[-1]), pi, qi)
    x = jax.vmap(one, in_axes=(-1, 0, 0), out_axes=-1)(y, q, p)
    return jnp.where(const, y, x)


@flax.struct.dataclass
class CDF:
    """The authors' CDFNormalizer for observations and actions."""
    obs_q: jax.Array
    obs_p: jax.Array
    obs_const: jax.Array
    act_q: jax.Array
    act_p: jax.Array
    act_const: jax.Array

    @classmethod
    def fit(cls, obs, action, knots: int = CDF_KNOTS):
        return cls(*_cdf_table(obs, knots), *_cdf_table(action, knots))

    def obs(self, x):
        return _cdf_forward(x, self.obs_q, self.obs_p, self.obs_const)

    def act(self, x):
        return _cdf_forward(x, self.act_q, self.act_p, self.act_const)

    def obs_from(self, x):
        return _cdf_inverse(x, self.obs_q, self.obs_p, self.obs_const)

    def act_from(self, x):
        return _cdf_inverse(x, self.act_q, self.act_p, self.act_const)


def _normalizer(config: Config, obs, action):
    """The authors' CDF normaliser, or Diffuser's limits / Gaussian ones."""
    if config.normalizer == "cdf":
        return CDF.fit(obs, action)
    return diffuser_normalizer(config, obs, action)


# --- networks and state ---------------------------------------------------------------------
class InverseDynamics(nn.Module):
    """`[s_t, s_t+1] -> a_t`: the authors' `inv_model` (two ReLU layers, linear output)."""
    hidden: int = 256
    act_dim: int = 1

    @nn.compact
    def __call__(self, s, s_next):
        return MLP((self.hidden, self.hidden), out_dim=self.act_dim, activation="relu")(
            jnp.concatenate([s, s_next], axis=-1))


def denoiser(config: Config):
    return make_denoiser(config.diffusion, ReturnEncoder(dim=config.diffusion.width))


@flax.struct.dataclass
class State:
    params: dict         # {"denoiser": ..., "inv": ...}
    ema: dict            # the models that act
    opt: optax.OptState
    norm: CDF | Limits | Gaussian
    step: jax.Array


def make_planner(config: Config, act_dim: int, obs_dim: int):
    """`plan(state, obs, key, target=config.target_return, w=config.guidance_w) -> (states
    (H, obs_dim), action)`: one state trajectory from `obs` (env units) by the EMA model with
    classifier-free guidance of weight `w` on the return (`target` in normalised return
    units), its states in normalised units, and the env action the inverse dynamics reads off
    its first two states. `target` and `w` may be traced (one compile for many of them)."""
    spec, h = config.diffusion, config.horizon
    net, sample = denoiser(config), make_sampler(spec)
    inv = InverseDynamics(config.inv_hidden, act_dim)
    mask = condition_mask(h, 0, obs_dim, goal=False)

    def plan(state: State, obs, key, target=None, w=None):
        w = config.guidance_w if w is None else w
        params = state.ema
        s0 = state.norm.obs(obs)
        values = jnp.zeros((h, obs_dim), jnp.float32).at[0].set(s0)
        ret = jnp.full((1,), config.target_return if target is None else target, jnp.float32)

        def guided(x, t, cond):
            # conditional and null predictions in one call: eps_null + w (eps_cond - eps_null)
            n = x.shape[0]
            out = net.apply(params["denoiser"], jnp.concatenate([x, x]), t,
                            jnp.concatenate([cond, cond]),
                            jnp.arange(2 * n) >= n)
            cond_out, null_out = out[:n], out[n:]
            return null_out + w * (cond_out - null_out)

        x = sample(guided, key, (1, h, obs_dim), ret, inpaint=(mask, values),
                   temperature=config.temperature)[0]
        a = inv.apply(params["inv"], x[0], x[1])
        return x, state.norm.act_from(a)

    return plan


def plan_actions(state: State, x, act_dim: int, inv_hidden: int):
    """`(H - 1, act_dim)` env actions the inverse dynamics reads off each pair of consecutive
    planned states `x (H, obs_dim)` (normalised units): what executing the plan would do."""
    inv = InverseDynamics(inv_hidden, act_dim)
    return state.norm.act_from(inv.apply(state.ema["inv"], x[:-1], x[1:]))


def make_policy(config: Config, env_spec):
    """A new plan at every env step; the carry counts steps."""
    plan = make_planner(config, env_spec.act_dim, env_spec.obs_dim)
    lo, hi = env_spec.action_low, env_spec.action_high

    def act(state: State, carry, obs, key):
        return jnp.clip(plan(state, obs, key)[1], lo, hi), carry + 1

    return Policy(lambda state, obs, task, key: jnp.zeros((), jnp.int32), act)


def prepare_windows(config: Config, data, env):
    """`(Windows of normalised observations and actions with the normalised return condition
    as `value`, normaliser)`: windows from every step of an episode, padded with zeros (env
    units, then normalised) past its end."""
    if not hasattr(data, "raw_episodes"):
        raise ConfigError("Decision Diffuser trains on whole episodes: hand it a dataset, not "
                          "transition arrays")
    if env.spec.episode_length < 2:
        raise ConfigError(f"{env.env_id} has one-step episodes: there is no next state to "
                          "plan; use a policy (bc, diffusion_bc, ...)")
    tr, _, _ = env_arrays(data, env)
    norm = _normalizer(config, tr["obs"], tr["action"])
    w = Windows.create(data.episodes, config.horizon, discount=config.discount,
                       termination_penalty=config.termination_penalty, pad=True,
                       max_length=MAX_PATH_LENGTH)
    returns = np.asarray(w.rtg)
    if config.returns_norm == "scale":
        rtg = returns / config.returns_scale
    else:
        starts = np.asarray(w.starts)
        at_starts = returns[starts[:, 0], starts[:, 1]]
        lo, hi = float(at_starts.min()), float(at_starts.max())
        rtg = (returns - lo) / max(hi - lo, 1e-6)
    return w.replace(obs=norm.obs(w.obs), action=norm.act(w.action),
                     rtg=jnp.asarray(rtg, jnp.float32)), norm


def make_train(config: Config, data, env):
    windows, norm = prepare_windows(config, data, env)
    if windows.size < config.batch_size:
        raise ConfigError(f"{windows.size} windows of {config.horizon} steps, fewer than "
                          f"batch_size={config.batch_size}")
    act_dim, obs_dim, h = env.act_dim, env.obs_dim, config.horizon
    spec = config.diffusion
    net, loss_fn = denoiser(config), make_loss(spec)
    inv = InverseDynamics(config.inv_hidden, act_dim)
    mask = condition_mask(h, 0, obs_dim, goal=False)
    weights = 1.0 - mask.astype(jnp.float32)     # the conditioned state carries no loss
    tx = adam(config.lr)

    def init(key):
        k_net, k_inv = jax.random.split(key)
        params = {"denoiser": net.init(k_net, jnp.zeros((1, h, obs_dim)),
                                       jnp.zeros((1,), jnp.int32), jnp.zeros((1,))),
                  "inv": inv.init(k_inv, jnp.zeros((obs_dim,)), jnp.zeros((obs_dim,)))}
        return State(params, params, tx.init(params), norm, jnp.zeros((), jnp.int32))

    def loss(params, key, b):
        k_drop, k_loss = jax.random.split(key)
        x0, ret = b["obs"], b["value"]
        drop = jax.random.bernoulli(k_drop, config.condition_dropout, (x0.shape[0],))
        net_fn = lambda x, t, c: net.apply(params["denoiser"], x, t, c, drop)  # noqa: E731
        diffuse = loss_fn(net_fn, k_loss, x0, ret, weights=weights, inpaint=(mask, x0))
        pred = inv.apply(params["inv"], x0[:, :-1], x0[:, 1:])
        inv_loss = jnp.mean((pred - b["action"][:, :-1]) ** 2)
        return 0.5 * (diffuse + inv_loss), (diffuse, inv_loss)

    def update(s: State, key):
        k_batch, k_loss = jax.random.split(key)
        b = windows.sample(k_batch, config.batch_size)
        (value, (diffuse, inv_loss)), grads = jax.value_and_grad(loss, has_aux=True)(
            s.params, k_loss, b)
        updates, opt = tx.update(grads, s.opt, s.params)
        params = optax.apply_updates(s.params, updates)
        s = s.replace(params=params, ema=ema_update(config, s.step, params, s.ema), opt=opt,
                      step=s.step + 1)
        return s, {"loss": value, "diffusion_loss": diffuse, "inv_loss": inv_loss}

    return make_offline_train(config, env, init, update, make_policy(config, env.spec))
