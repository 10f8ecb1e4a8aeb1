"""Time the authors' SynthER (conglu1997/SynthER at e6835a5, PyTorch) on the workloads of
`python -m bench speed synther`, for `results/speed/synther-vs-pytorch.md`.

Not part of the suite (no PyTorch in its dependencies) and none of the authors' code is in
this repository. Lay out their files and run, in an environment with torch, einops, tqdm and
ema-pytorch 0.2.1:

    AUTHORS=/path/with/synther/diffusion   # holding synther/diffusion/{denoiser_network,
                                           # elucidated_diffusion,norm}.py from their repo
    python bench/reference/synther_torch.py > results/speed/cpu-synther-pytorch.jsonl

What is timed, with their classes (`ResidualMLPDenoiser`, `ElucidatedDiffusion`, `Normalizer`,
`ema_pytorch.EMA`) at `config/resmlp_denoiser.gin`'s settings: the body of their
`Trainer.train` (loss, backward, gradient clip 1.0, AdamW step, EMA update, cosine scheduler
step) on hopper-sized random rows (27 dims), and `ElucidatedDiffusion.sample` with 128 steps.
The modules their files import for logging, distributed training and online RL (gin, wandb,
accelerate, redq, torchdiffeq, synther.online) are stood in for by silent stubs; none of them
is on the timed path (gin's decorator only registers defaults).
"""
import contextlib
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_timing import dev, emit, timed  # noqa: E402

import torch  # noqa: E402


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


_stub("gin", configurable=lambda f=None, **k: f if f is not None else (lambda g: g))
_stub("wandb", log=lambda *a, **k: None)
_stub("accelerate", Accelerator=object)
_stub("redq")
_stub("redq.algos")
_stub("redq.algos.core", ReplayBuffer=object)
_stub("torchdiffeq", odeint=None)
_stub("synther.online")
_stub("synther.online.utils", make_inputs_from_replay_buffer=None)
sys.path.insert(0, os.environ.get("AUTHORS", "."))

from ema_pytorch import EMA  # noqa: E402
from synther.diffusion.denoiser_network import ResidualMLPDenoiser  # noqa: E402
from synther.diffusion.elucidated_diffusion import ElucidatedDiffusion  # noqa: E402
from synther.diffusion.norm import Normalizer  # noqa: E402

DIM = 27
STEPS = 10


def model(width):
    with contextlib.redirect_stdout(sys.stderr):   # their normaliser prints its statistics
        return _model(width)


def _model(width):
    net = ResidualMLPDenoiser(d_in=DIM, dim_t=128, mlp_width=width, num_layers=6,
                              learned_sinusoidal_cond=False, random_fourier_features=True,
                              learned_sinusoidal_dim=16, activation="relu", layer_norm=False)
    data = torch.randn(100_000, DIM, device=dev)
    return ElucidatedDiffusion(net, Normalizer(data), event_shape=[DIM], num_sample_steps=128,
                               sigma_data=1.0, S_churn=80, S_tmin=0.05, S_tmax=50,
                               S_noise=1.003).to(dev), data


def train(width, batch):
    diffusion, data = model(width)
    opt = torch.optim.AdamW(diffusion.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=0)
    ema = EMA(diffusion, beta=0.995, update_every=10)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100_000)

    def steps():
        for _ in range(STEPS):
            x = data[torch.randint(0, len(data), (batch,), device=dev)]
            loss = diffusion(x)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            ema.update()
            sched.step()

    return timed(steps, STEPS)


def sample(width, n):
    diffusion, _ = model(width)
    diffusion.eval()
    with torch.no_grad():
        return timed(lambda: diffusion.sample(batch_size=n, num_sample_steps=128, clamp=False,
                                              disable_tqdm=True), n, reps=1)


if __name__ == "__main__":
    torch.manual_seed(0)
    # SAMPLES: transitions per generation call (CPU default 2000; on a GPU, 100k, the
    # authors' sample batch); SAMPLES_2048 for the widest model alone
    n = int(os.environ.get("SAMPLES", "100000" if dev.type == "cuda" else "2000"))
    n_wide = int(os.environ.get("SAMPLES_2048", n))
    for width, batch in [(1024, 1024), (2048, 1024), (1024, 256), (2048, 256), (256, 256)]:
        emit(workload="SynthER train step", width=width, batch=batch,
             steps_per_s=train(width, batch), threads=torch.get_num_threads())
    for width in (256, 1024, 2048):
        m = n_wide if width == 2048 else n
        emit(workload="SynthER generation", width=width, transitions_per_call=m,
             transitions_per_s=sample(width, m), threads=torch.get_num_threads())
