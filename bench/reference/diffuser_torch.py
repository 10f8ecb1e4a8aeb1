"""The authors' Diffuser (jannerm/diffuser `main`, 7ea4228) timed on the workloads of
`results/speed/diffuser-vs-pytorch.md`: a train step at batch 32, 64 and BIG (default 1024)
plans with DDPM-20, and 64 value-guided plans. On a GPU when torch sees one, else on the CPU.

None of the authors' code is in this repository. Lay their files out in a folder AUTHORS:

    AUTHORS/dmodels/{helpers,temporal,diffusion}.py   <- their diffuser/models/*.py
    AUTHORS/dsampling/{functions,guides}.py           <- their diffuser/sampling/*.py

each folder with an empty `__init__.py` (their own `__init__` files import the whole package).
Their files are unchanged except one line: `import diffuser.utils as utils` in helpers.py is
commented out. `diffuser.utils` (the progress bar) is a silent stub below and
`diffuser.models.helpers` is aliased to `dmodels.helpers`. Then run
`AUTHORS=path BIG=1024 python bench/reference/diffuser_torch.py` with torch and einops
installed. Prints one JSON line per measurement (median of 3 timed calls after a warm-up).
"""
import os, statistics, sys, types, torch
from torch_timing import dev, emit, stub_authors_package, timed
stub_authors_package(__file__)
import dmodels.helpers
models = types.ModuleType("diffuser.models"); models.helpers = dmodels.helpers
sys.modules["diffuser.models"] = models; sys.modules["diffuser.models.helpers"] = dmodels.helpers
from dmodels.temporal import TemporalUnet, ValueFunction
from dmodels.diffusion import GaussianDiffusion
from dsampling.functions import n_step_guided_p_sample
from dsampling.guides import ValueGuide
H, OBS, ACT = 32, 11, 3
model = TemporalUnet(H, OBS + ACT, cond_dim=OBS, dim=32, dim_mults=(1, 2, 4, 8)).to(dev)
diff = GaussianDiffusion(model, H, OBS, ACT, n_timesteps=20, loss_type="l2", clip_denoised=True,
                         predict_epsilon=False, action_weight=10).to(dev)
opt = torch.optim.Adam(diff.parameters(), lr=2e-4)
x = torch.randn(32, H, OBS + ACT, device=dev); cond = {0: torch.randn(32, OBS, device=dev)}
def step():
    loss, _ = diff.loss(x, cond); loss.backward(); opt.step(); opt.zero_grad()
def steps20():
    for _ in range(20): step()
for _ in range(5): step()
r = timed(steps20, 20); emit(row="train steps/s (batch 32)", runs=r, median=statistics.median(r))
for n in (64, int(os.environ.get("BIG", 1024))):
    c = {0: torch.randn(n, OBS, device=dev)}
    with torch.no_grad():
        r = timed(lambda: diff(c, verbose=False), n)
    emit(row=f"plans/s ({n} at once, DDPM-20)", runs=r, median=statistics.median(r))
diff_g = GaussianDiffusion(model, H, OBS, ACT, n_timesteps=20, loss_type="l2", clip_denoised=False,
                           predict_epsilon=False, action_weight=10).to(dev)
guide = ValueGuide(ValueFunction(H, OBS + ACT, OBS, dim=32, dim_mults=(1, 2, 4, 8)).to(dev))
kw = dict(sample_fn=n_step_guided_p_sample, guide=guide, n_guide_steps=2, t_stopgrad=2,
          scale=0.1, scale_grad_by_std=True, verbose=False)
c64 = {0: torch.randn(64, OBS, device=dev)}
r = timed(lambda: diff_g(c64, **kw), 64); emit(row="value-guided plans/s (64 at once, DDPM-20)", runs=r, median=statistics.median(r))
