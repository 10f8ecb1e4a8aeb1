"""Flax (linen) modules: denoisers, condition encoders, critics and policies.

Nothing here knows of the samplers; a denoiser becomes a sampler's ``denoise_fn`` through
``as_denoiser``."""
from algos.nets.conditions import ReturnEncoder, StateEncoder, TaskEncoder
from algos.nets.denoisers import DiTDenoiser, MLPDenoiser, ResidualMLPDenoiser, TemporalUnet, \
    TemporalValue
from algos.nets.layers import (MLP, Conv1d, RandomFourierEmbedding, drop_condition, mish,
                               sinusoidal_embedding)
from algos.nets.policies import (Critic, DeterministicPolicy, GaussianPolicy, ValueNet,
                                 gaussian_log_prob, tanh_gaussian_log_prob, tanh_gaussian_sample)

DENOISERS = {"mlp": MLPDenoiser, "resmlp": ResidualMLPDenoiser, "unet": TemporalUnet,
             "dit": DiTDenoiser}
ENCODERS = {"state": StateEncoder, "return": ReturnEncoder, "task": TaskEncoder}


def as_denoiser(model, params, drop=None):
    """``(x, t, cond) -> prediction`` for the samplers and losses; ``drop=True`` gives the
    unconditional (null-condition) model for classifier-free guidance."""
    return lambda x, t, cond: model.apply(params, x, t, cond, drop)


__all__ = ["Conv1d", "Critic", "DENOISERS", "DeterministicPolicy", "DiTDenoiser", "ENCODERS",
           "GaussianPolicy", "MLP", "MLPDenoiser", "RandomFourierEmbedding",
           "ResidualMLPDenoiser", "ReturnEncoder", "StateEncoder", "TaskEncoder", "TemporalUnet",
           "TemporalValue", "ValueNet", "as_denoiser", "drop_condition", "gaussian_log_prob", "mish",
           "sinusoidal_embedding", "tanh_gaussian_log_prob", "tanh_gaussian_sample"]
