"""The plotting notebooks run top to bottom (nbclient) on a small results set made by a real
tiny sweep: its leaderboard, the bandit coverage of its trained policies, and a claims page."""
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from bench import bandit as bench_bandit
from bench import claims, leaderboard, stats, sweep
from bench import train as bench_train
from envs import bandit, datasets

ROOT = Path(__file__).resolve().parent.parent
SMALL = """
[[group]]
algos = ["bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 3
steps = 6
set = { eval_every = 3, eval_episodes = 2, hidden = [32, 32], batch_size = 32 }
[[group]]
algos = ["diffusion_bc"]
datasets = ["jaxrl/bandit/multimodal-v0"]
seeds = 3
steps = 6
set = { eval_every = 3, eval_episodes = 2, batch_size = 32, diffusion.width = 32 }
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)
    tmp = tmp_path_factory.mktemp("results")
    (tmp / "quick.toml").write_text(SMALL)
    s = sweep.load(tmp / "quick.toml")
    runs, ckpt = tmp / "runs", tmp / "ckpt"
    sweep.run(s, runs=runs, checkpoints=ckpt, log=lambda m: None)
    leaderboard.write(s, runs, tmp, reps=500)
    rows = []
    for c in s.cells:
        _, state = bench_train.run(c.algo, c.dataset, c.seeds, c.steps, c.sets, out=runs,
                                   checkpoints=ckpt, log=lambda m: None, return_state=True)
        actions = bench_bandit.sample_actions(c.algo, c.config(), state, c.seeds, n=200)
        for seed in range(c.seeds):
            cov = bandit.mode_coverage(actions[seed])
            rows.append({"method": c.label, "seed": seed, "in_mode": cov["in_mode"],
                         "modes_covered": cov["modes_covered"], "reward": cov["reward"]})
    pd.DataFrame(rows).to_csv(tmp / "bandit.csv", index=False)
    cov = pd.DataFrame(rows)
    x = {"bandit": cov[cov.method == "Diffusion-BC"].in_mode.to_numpy()}
    y = {"bandit": cov[cov.method == "BC"].in_mode.to_numpy()}
    test = claims.Test("bandit", "P(in mode)", *stats.improvement_interval(x, y, reps=500), 0.5)
    finding = claims.Finding("expressiveness", "Expressiveness", "claim", "tiny", [test], None)
    (tmp / "claims.md").write_text(claims.markdown([finding], tmp, "test machine"))
    return tmp


@pytest.mark.parametrize("name", ["leaderboard", "claims"])
def test_notebook_runs_on_a_small_results_set(results, name, monkeypatch):
    monkeypatch.setenv("DIFFRL_RESULTS", str(results))
    monkeypatch.setenv("DIFFRL_SWEEP", "quick")
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "every notebook draws at least one figure"
    text = "".join(o.get("text", "") for o in outputs)
    assert str(results) in text  # it read the results set it was given
    assert os.environ["DIFFRL_RESULTS"] == str(results)
