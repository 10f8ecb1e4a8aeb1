"""`python -m bench table`: score tables rebuilt from the results files alone.

Reads every `results/runs/<algo>/<dataset>/<config hash>.json` that `bench train` wrote and
writes `results/policies.md` and `.csv`: per dataset and algorithm, the mean and standard
deviation across seeds of the final normalised score, the seed count and the budget. A
diverged seed (its results file says so: a non-finite return or state) is counted and shown,
never averaged; on an env without an expert reference the scores are NaN and shown as '-'.
When one (algo, dataset) has several configs, each is its own row, named by its hash.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import List

import numpy as np

from bench import sysinfo
from bench.tables import markdown_table



REQUIRED = ("schema", "algo", "dataset", "config", "config_hash", "seeds", "steps",
            "eval_episodes", "final", "rows", "wall_s", "compile_s", "versions", "hardware")


def read_results(path) -> dict:
    """A results file, whole: valid JSON with every field the tables read and a score per
    seed; anything else is a one-line `ConfigError` naming the file."""
    from algos.config import ConfigError

    try:
        run = json.loads(Path(path).read_text())
        ok = (isinstance(run, dict) and all(k in run for k in REQUIRED)
              and all(isinstance(run.get(k, {}), dict)
                      for k in ("hardware", "versions", "config", "data", "code"))
              and isinstance(run["final"], list) and run["final"]
              and all(isinstance(f, dict) and isinstance(f.get("score"), (int, float))
                      for f in run["final"])
              and isinstance(run.get("seeds"), int) and len(run["final"]) == run["seeds"])
    except (ValueError, OSError):
        ok = False
    if not ok:
        raise ConfigError(f"{path} is not a valid results file (damaged or hand-edited); move "
                          "it away, then rerun the sweep that wrote it to retrain that cell")
    return run


def load_runs(root: Path) -> List[dict]:
    runs = []
    for path in sorted(Path(root).rglob("*.json")):
        run = read_results(path)
        if run.get("complete"):
            run["_path"] = str(path)
            runs.append(run)
    return runs


def final_scores(run: dict) -> dict:
    """A results file's final scores: the finite ones (`scores`), their mean and std, and how
    many seeds diverged (the file's flags; a NaN score in files without them), which are
    counted and never averaged. Beside them the best evaluation of each seed over training
    (`best_mean`, `best_std` over the seeds that did not diverge), for comparison with papers
    that report best-of-training (Diffusion-QL's online model selection); the leaderboard
    ranks by the final score."""
    scores = np.array([f["score"] for f in run["final"]], float)
    ok = scores[np.isfinite(scores)]
    good = {f["seed"] for f in run["final"] if math.isfinite(f["score"])}
    # a seed diverged when its results file says so (an env without an expert reference has
    # NaN scores on finite returns); older files: a NaN score
    diverged = sum(bool(f.get("diverged", not math.isfinite(f["score"]))) for f in run["final"])
    best = {}
    for r in run.get("rows", []):
        if r["seed"] in good and math.isfinite(r["score"]):
            best[r["seed"]] = max(best.get(r["seed"], -math.inf), r["score"])
    b = np.array(list(best.values()), float)
    return {"scores": ok.tolist(), "diverged": int(diverged),
            "mean": float(ok.mean()) if len(ok) else math.nan,
            "std": float(ok.std()) if len(ok) else math.nan,
            "best_mean": float(b.mean()) if len(b) else math.nan,
            "best_std": float(b.std()) if len(b) else math.nan}


def best_text(r) -> str:
    """`mean ± std` of each seed's best evaluation during training."""
    return "-" if math.isnan(r.get("best_mean", math.nan)) else \
        f"{r['best_mean']:.1f} ± {r['best_std']:.1f}"


def score_text(r) -> str:
    """`mean ± std`, with the diverged seeds named."""
    text = "-" if math.isnan(r["mean"]) else f"{r['mean']:.1f} ± {r['std']:.1f}"
    return text + (f" ({r['diverged']} diverged)" if r["diverged"] else "")


def summarise(runs: List[dict]) -> List[dict]:
    rows = []
    for run in runs:
        summary = final_scores(run)
        del summary["scores"]
        rows.append({
            "dataset": run["dataset"], "algo": run["algo"], "config_hash": run["config_hash"],
            "seeds": len(run["final"]), **summary,
            "steps": run["steps"], "eval_episodes": run["eval_episodes"],
            "wall_s": run["wall_s"], "compile_s": run["compile_s"],
            "data_hash": (run.get("data") or {}).get("content_hash"),
            "hardware": sysinfo.hardware_line(run["hardware"])})
    import algos

    order = {a: i for i, a in enumerate(algos.ALGOS)}
    rows.sort(key=lambda r: (r["dataset"], order.get(r["algo"], 99), r["config_hash"]))
    return rows


COLUMNS = [("dataset", lambda r: r["dataset"]), ("algorithm", lambda r: r["algo"]),
           ("config", lambda r: r["config_hash"]),
           ("data", lambda r: f"`{r['data_hash'][:12]}`" if r["data_hash"] else "-"),
           ("normalised score", score_text),
           ("best during training", best_text),
           ("seeds", lambda r: str(r["seeds"])), ("steps", lambda r: f"{r['steps']:,d}"),
           ("eval episodes", lambda r: str(r["eval_episodes"])),
           ("run s", lambda r: f"{r['wall_s']:.0f}"),
           ("compile s", lambda r: f"{r['compile_s']:.0f}")]


EXCLUDED = ("jaxrl/bandit/",)  # the bandit has its own table (results/bandit.md)


def shown(rows) -> List[dict]:
    return [r for r in rows if not r["dataset"].startswith(EXCLUDED)]


def markdown(rows) -> str:
    rows = shown(rows)
    hw = sorted({r["hardware"] for r in rows})
    return "\n".join([
        "# Offline policies: normalised scores", "",
        "Built by `python -m bench table` from the results files in `results/runs/` "
        f"(hardware: {'; '.join(hw) or '-'}). Final normalised score (last evaluation, never "
        "the best; each seed's best evaluation is shown beside it), mean ± std across seeds, "
        "each seed trained from `PRNGKey(seed)`; all seeds "
        "of a cell ran in one vmapped program. 'run s' is the wall time of the whole cell "
        "(all seeds, evaluations included), 'compile s' its compile time. The full configs "
        "are in the results files (by config hash); 'data' is the dataset's content hash "
        "(first 12 hex digits) they trained on.", "",
        markdown_table(rows, COLUMNS), ""])


def csv_text(rows) -> str:
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()
