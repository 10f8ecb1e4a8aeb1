"""Time the authors' Diffusion-QL (Zhendong-Wang/Diffusion-Policies-for-Offline-RL at d871f5c,
PyTorch) on the workloads of `results/speed/dql-vs-pytorch.md`: the train step and the
50-candidate action selection.

Not part of the suite (no PyTorch in its dependencies) and none of the authors' code is in
this repository. Lay out their `agents/` and `utils/` (`git archive d871f5c agents utils`) and
run, in an environment with torch, numpy, python-dateutil and tabulate:

    AUTHORS=/path/to/their/checkout python bench/reference/dql_torch.py [--state-dim 11]
        [--action-dim 3] [--steps 50] >> results/speed/<device>-dql-pytorch.jsonl

What is timed, with their classes: `Diffusion_QL(S, A, 1.0, device, 0.99, 0.005,
beta_schedule='vp', n_timesteps=5, lr_decay=True, lr_maxt=2000, grad_norm=9.0)` (the
settings of their hopper-medium run, `main.py`'s table), `agent.train(Data_Sampler, STEPS,
256)` on 100k random transitions after 20 warm-up steps, with the step counter then set to
their `step_start_ema` so that the timed steps update the EMA actor as their steady state does
(median of 3 calls), and `agent.sample_action(state)` (median of 100 calls after 11 warm-up
calls). Both are timed by `torch_timing.timed`. Their loop reads four losses back with
`.item()` every step and samples each batch on the host, as released; nothing of theirs is
changed or stubbed.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_timing import dev, emit, timed  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.environ.get("AUTHORS", "."))

from agents.ql_diffusion import Diffusion_QL  # noqa: E402
from utils.data_sampler import Data_Sampler  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--state-dim", type=int, default=11)
    p.add_argument("--action-dim", type=int, default=3)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, s, a = 100_000, args.state_dim, args.action_dim
    data = {"observations": rng.standard_normal((n, s)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, a)).astype(np.float32),
            "next_observations": rng.standard_normal((n, s)).astype(np.float32),
            "rewards": rng.standard_normal(n).astype(np.float32),
            "terminals": (rng.uniform(size=n) < 0.01).astype(np.float32)}
    sampler = Data_Sampler(data, dev, "no")
    agent = Diffusion_QL(s, a, 1.0, dev, 0.99, 0.005, beta_schedule="vp", n_timesteps=5,
                         lr_decay=True, lr_maxt=2000, grad_norm=9.0)
    agent.train(sampler, 20, 256)
    agent.step = agent.step_start_ema   # timed steps update the EMA actor (every 5th), as
                                        # every step after their 1000th does
    steps = timed(lambda: agent.train(sampler, args.steps, 256), args.steps)
    emit(workload="Diffusion-QL train step", state_dim=s, action_dim=a, batch=256,
         steps_per_call=args.steps, steps_per_s=steps, threads=torch.get_num_threads())
    state = data["observations"][0]
    for _ in range(10):
        agent.sample_action(state)
    # ends in .cpu(): the action is on the host
    ms = [1e3 / rate for rate in timed(lambda: agent.sample_action(state), reps=100)]
    emit(workload="Diffusion-QL decision, 50 candidates", state_dim=s, action_dim=a,
         decision_ms_median=statistics.median(ms), decision_ms=[round(x, 4) for x in ms[:10]],
         threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
