"""The authors' Decision Diffuser (anuragajay/decision-diffuser, 01ce528) timed on the
decision of `python -m bench speed planners`: one plan from one state (hopper's 11 state dims,
horizon 100, T=200, U-Net dim 128 mults (1, 4, 8), returns condition, guidance w 1.2, clipped
x0) and the inverse dynamics on its first two states, as `scripts/evaluate_inv_parallel.py`
does at every env step. On a GPU when torch sees one, else on the CPU.

None of the authors' code is in this repository. Lay their `code/diffuser/models/` files out
in a folder AUTHORS:

    AUTHORS/ddmodels/{helpers,temporal,diffusion}.py   <- their code/diffuser/models/*.py

with an empty `ddmodels/__init__.py` (theirs imports the whole package); `diffuser.utils` (a
progress bar) is a silent stub below. Then run
`AUTHORS=path python bench/reference/decision_diffuser_torch.py` with torch and einops
installed. Prints one JSON line per measurement (median of 3 timed calls after a warm-up).
"""
import statistics, torch
from torch_timing import dev, emit, stub_authors_package, timed
stub_authors_package(__file__)
from ddmodels.temporal import TemporalUnet
from ddmodels.diffusion import GaussianInvDynDiffusion
H, OBS, ACT = 100, 11, 3
model = TemporalUnet(H, OBS, cond_dim=OBS, dim=128, dim_mults=(1, 4, 8), returns_condition=True,
                     condition_dropout=0.25, calc_energy=False).to(dev)
diff = GaussianInvDynDiffusion(model, H, OBS, ACT, n_timesteps=200, loss_type="l2",
                               clip_denoised=True, predict_epsilon=True, hidden_dim=256,
                               action_weight=10, loss_discount=1, returns_condition=True,
                               condition_guidance_w=1.2).to(dev)
emit(row="parameters (U-Net, inverse dynamics)",
     value=[sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in diff.inv_model.parameters())])
obs = torch.zeros(1, OBS, device=dev); ret = torch.full((1, 1), 0.9, device=dev)
def decide():
    with torch.no_grad():
        x = diff.conditional_sample({0: obs}, returns=ret, verbose=False)
        return diff.inv_model(torch.cat([x[:, 0], x[:, 1]], dim=-1))
r = timed(decide); emit(row="decisions/s (1 plan, DDPM-200, CFG)", runs=r,
                        median=statistics.median(r))
