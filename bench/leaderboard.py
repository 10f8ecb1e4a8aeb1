"""The leaderboard of a sweep, computed from its results files alone.

`results/leaderboard.md` and `.csv`:
- per task (dataset) and method: mean ± std of the final normalised score across seeds, the
  seed count, diverged seeds (counted, never averaged), the budget;
- aggregates over tasks per method, with 95% stratified bootstrap intervals (bench.stats,
  rliable's definitions): IQM, median, mean, optimality gap. A method enters the aggregates
  only with results on every task of the sweep, so all aggregates cover the same tasks;
- the probability of improvement for the pairs the sweep file names;
- per task, the data the scores came from: the dataset's content hash (first 12 hex digits)
  and behaviour score, as the results files recorded them, so two leaderboards can be
  compared at a glance; cells of one task trained on different data are flagged.
An acting variant of the sweep (a trained cell evaluated again with acting fields changed,
`act` in the sweep file) is a method like any other, scored from its evaluation file; beside
it, the paired difference from the cell as trained (the same seeds' weights, the same
evaluation keys), which is the comparison to read for it. A variant's evaluation of another
training than its cell's results file holds is shown as such, never scored.
`results/speed.md`: per method and machine, seed-steps/s of whole cells (seeds x steps / wall time,
evaluation included), compile time and hardware.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List

import numpy as np

from bench import runs_table, stats, sysinfo
from bench.sweep import Sweep
from bench.tables import markdown_table, signed


def collect(sweep: Sweep, runs: Path) -> List[dict]:
    """One row per cell of the sweep, from its results file (`status` says if it has one)."""
    rows = []
    for c in sweep.cells:
        path = c.path(runs)
        row = {"label": c.label, "algo": c.algo, "dataset": c.dataset, "task": c.task,
               "seeds": c.seeds, "steps": c.config().steps,
               "config_hash": c.trained.path(runs).stem, "file": _shown_path(path),
               "acting": c.change if c.is_acting else "", "episode_tasks": c.tasks,
               "trained_label": c.trained_label or ""}
        if not path.exists():
            rows.append({**row, "status": "not run", "scores": []})
            continue
        if c.is_acting:
            from bench import evaluate

            res = evaluate.read(path)
            base = c.trained.path(runs)
            if not base.exists():   # its trained cell is not there: nothing to pair it with
                rows.append({**row, "status": "not run", "scores": []})
                continue
            if not evaluate.same_source(runs_table.read_results(base), res):
                # never beside the cell it would seem paired with: another training's numbers
                rows.append({**row, "status": "evaluated another training", "scores": []})
                continue
            d = res["difference"]
            m = res["measure"]
            row.update({"trained_mean": float(np.nanmean([f["trained_" + m]
                                                          for f in res["final"]])),
                        "new_mean": float(np.nanmean([f[m] for f in res["final"]])),
                        "measure": res["measure"], "difference": d["mean"],
                        "difference_lo": d["low"], "difference_hi": d["high"],
                        "paired_seeds": d["seeds"], "ms_per_step": res["ms_per_loop_step"]})
        else:
            res = runs_table.read_results(path)
        final_scores = runs_table.final_scores(res)
        data = res.get("data") or {}
        rows.append({
            **row, "status": "done", **final_scores,
            "data_hash": data.get("content_hash"), "behaviour_score": data.get("behaviour_score"),
            "behaviour_return": data.get("behaviour_return"),
            "transitions": data.get("transitions"), "code": code_text(res.get("code")),
            "eval_episodes": res["eval_episodes"], "wall_s": res["wall_s"],
            "compile_s": res["compile_s"],
            "hardware": sysinfo.hardware_line(res["hardware"])})
    return rows


def _shown_path(path: Path) -> str:
    """A results file's path relative to the repository (so tables do not depend on where
    the clone lives), or absolute when it is elsewhere."""
    from bench.train import ROOT

    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(Path(path).resolve())


def code_text(code) -> str:
    """`abcdef1234` or `abcdef1234+modified` (the tree differed from the commit), `?` if unknown."""
    code = code or {}
    return (code.get("commit") or "?")[:10] + ("+modified" if code.get("dirty") else "")


def scores_by_task(rows: List[dict]) -> Dict[str, Dict[str, np.ndarray]]:
    """`{method: {task: finite scores}}` over the tasks each method has results on (one row
    per method and task: a sweep cell). A task is the dataset the sweep file names: a cell
    that trains on data derived from it (a subset, an augmentation) counts on its task."""
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for r in rows:
        if r["status"] == "done" and r["scores"]:
            out.setdefault(r["label"], {})[r.get("task", r["dataset"])] = np.asarray(
                r["scores"], float)
    return out


def scores_by_method(rows: List[dict], datasets: List[str]) -> Dict[str, Dict[str, np.ndarray]]:
    """`{method: {task: finite scores}}` for the methods with results on every task, in the
    env id's own task (a variant that samples a task per episode plays other tasks)."""
    rows = [r for r in rows if r.get("episode_tasks", "default") == "default"]
    return {label: {ds: tasks[ds] for ds in datasets}
            for label, tasks in scores_by_task(rows).items()
            if all(ds in tasks for ds in datasets)}


def aggregates(by_method, reps: int = stats.REPS) -> List[dict]:
    out = []
    for label, scores in by_method.items():
        row = {"label": label, "tasks": len(scores), "runs": sum(len(v) for v in scores.values())}
        for name, f in stats.AGGREGATES.items():
            row[name], row[name + " lo"], row[name + " hi"] = stats.interval(f, scores, reps)
        out.append(row)
    return out


def improvements(by_task, pairs, reps: int = stats.REPS) -> List[dict]:
    """P(X > Y) for each pair, over the tasks both have results on (a planner that runs on
    Maze2D alone is compared there)."""
    out = []
    for x, y in pairs:
        tasks = [t for t in by_task.get(x, {}) if t in by_task.get(y, {})]
        if tasks:
            p, lo, hi = stats.improvement_interval(by_task[x], by_task[y], reps)
            out.append({"x": x, "y": y, "tasks": len(tasks), "p": p, "lo": lo, "hi": hi})
    return out


def _by_status(rows) -> Dict[str, List[dict]]:
    """Cells without results by why: "not run yet", "evaluated another training" (an acting
    variant whose file is not of its cell's training)."""
    out: Dict[str, List[dict]] = {}
    for r in rows:
        out.setdefault("not run yet" if r["status"] == "not run" else r["status"], []).append(r)
    return out


def _score(r) -> str:
    return runs_table.score_text(r) if r["status"] == "done" else r["status"]


def _ci(name):
    return lambda r: f"{r[name]:.1f} [{r[name + ' lo']:.1f}, {r[name + ' hi']:.1f}]"


def data_rows(rows) -> List[dict]:
    """One row per task: the content hash(es) and behaviour score its cells were trained on."""
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == ds and r["status"] == "done"]
        hashes = list(dict.fromkeys(r["data_hash"] for r in mine))
        one = mine[0] if len(hashes) == 1 else {}  # several datasets: no single behaviour
        out.append({"dataset": ds, "hashes": hashes, "cells": len(mine),
                    "behaviour_return": one.get("behaviour_return"),
                    "behaviour_score": one.get("behaviour_score"),
                    "transitions": one.get("transitions")})
    return out


def _hashes(r) -> str:
    if not r["hashes"]:
        return "-"
    text = ", ".join(f"`{str(h)[:12]}`" for h in r["hashes"])
    return text + (" **(cells trained on different data)**" if len(r["hashes"]) > 1 else "")


def markdown(sweep: Sweep, rows, aggs, pois) -> str:
    done = [r for r in rows if r["status"] == "done"]
    hw = sorted({r["hardware"] for r in done})
    missing = [r for r in rows if r["status"] != "done"]
    sampled = list(dict.fromkeys(c.label for c in sweep.cells if c.tasks != "default"))
    left_out = [lb for lb in sweep.labels if lb not in {a["label"] for a in aggs}
                and lb not in sampled]
    per_task = [("dataset", lambda r: r["dataset"]), ("method", lambda r: r["label"]),
                ("normalised score", _score),
                ("best during training",
                 lambda r: runs_table.best_text(r) if r["status"] == "done" else "-"),
                ("seeds", lambda r: str(r["seeds"])),
                ("steps", lambda r: f"{r['steps']:,d}"),
                ("eval episodes", lambda r: str(r.get("eval_episodes", "-"))),
                ("config", lambda r: r["config_hash"])]
    agg_cols = [("method", lambda r: r["label"]), ("tasks", lambda r: str(r["tasks"])),
                ("runs", lambda r: str(r["runs"]))] + [(n, _ci(n)) for n in stats.AGGREGATES]
    lines = [
        f"# Leaderboard: sweep `{sweep.name}`", "",
        f"Built by `python -m bench table --sweep {sweep.name}` from the results files of the "
        f"cells declared in `bench/sweeps/{sweep.path.name}`"
        + (f" ({sweep.description.strip()})" if sweep.description else "") + ". "
        f"Hardware: {'; '.join(hw) or '-'}. Final normalised score (last evaluation, never the "
        "best; random 0, expert 100; 'best during training' is the mean over seeds of each "
        "seed's best evaluation, for papers that report that), each seed trained from "
        "`PRNGKey(seed)`, all seeds of a "
        "cell in one vmapped program. A diverged seed is counted and never averaged.", "",
        f"{len(done)} of {len(rows)} cells have results"
        + "".join(f"; {status}: {', '.join(r['label'] + ' on ' + r['dataset'] for r in rs)}"
                  for status, rs in _by_status(missing).items()) + ".", "",
        "## Aggregates over tasks", "",
        f"Tasks: {', '.join(sweep.tasks)}. Point estimate with its 95% stratified bootstrap "
        f"interval ({stats.REPS:,d} replicates, rliable's definitions, see `bench/stats.py`): "
        "IQM pools all runs of all tasks and averages the middle 50%; median and mean are over "
        "the per-task means; optimality gap is 100 minus the mean of min(score, 100) "
        "(lower is better).", ""]
    if aggs:
        lines += [markdown_table(aggs, agg_cols), ""]
    else:
        lines += ["No method has results on every task yet.", ""]
    if sampled:
        lines += [f"Not in the aggregates (a task sampled per episode: other tasks than the "
                  f"dataset's env id's): {', '.join(sampled)}.", ""]
    if left_out:
        lines += [f"Not in the aggregates (no results on every task): {', '.join(left_out)}.",
                  ""]
    if pois:
        lines += ["## Probability of improvement", "",
                  "P(X > Y): the probability that a run of X scores above a run of Y on a task "
                  "drawn at random among the tasks both have results on (ties count half), "
                  "with its 95% bootstrap interval; 0.5 is no difference.", "",
                  markdown_table(pois, [("X", lambda r: r["x"]), ("Y", lambda r: r["y"]),
                                        ("tasks", lambda r: str(r["tasks"])),
                                        ("P(X > Y)", lambda r: f"{r['p']:.2f} [{r['lo']:.2f}, "
                                                               f"{r['hi']:.2f}]")]), ""]
    if any(r["acting"] for r in rows):
        per_task.insert(2, ("acting change", lambda r: r["acting"] or "-"))
    lines += ["## Per task", "", markdown_table(rows, per_task), ""]
    variants = [r for r in done if r["acting"]]
    if variants:
        lines += [
            "## Acting variants, paired with the cell as trained", "",
            "Each variant restores its trained cell's final weights and evaluates every seed "
            "with the acting change on the keys of that seed's last training evaluation "
            "(`python -m bench evaluate`): the difference is the change alone, seed by seed, "
            "with its 95% percentile bootstrap interval over seeds. 'ms per step' is the "
            "episode loop's wall time per step (one decision for each episode running in it), "
            "compile apart.", "",
            markdown_table(variants, [
                ("dataset", lambda r: r["dataset"]), ("method", lambda r: r["label"]),
                ("trained cell", lambda r: f"{r['trained_label']} ({r['config_hash']})"),
                ("acting change", lambda r: r["acting"]),
                ("measure", lambda r: r["measure"]),
                ("as trained", lambda r: f"{r['trained_mean']:.1f}"),
                ("acting otherwise", lambda r: f"{r['new_mean']:.1f}"),
                ("paired difference", lambda r: f"{signed(r['difference'])} "
                                                f"[{signed(r['difference_lo'])}, "
                                                f"{signed(r['difference_hi'])}] "
                                                f"({r['paired_seeds']} seeds)"),
                ("ms per step", lambda r: f"{r['ms_per_step']:.2f}")]), ""]
        if any(c.tasks != "default" for c in sweep.cells):
            lines[-1:] = ["", "A variant with a task sampled per episode (`tasks = "
                          "\"sampled\"`: Maze2D's goal, Diffuser's Multi2D) is scored against "
                          "the env id's references, those of its fixed task; its difference is a "
                          "change of task, not of acting.", ""]
    commits = sorted({r["code"] for r in done})
    lines += ["## Data and code", "",
              "The dataset content each task's cells were trained on (SHA-256 of the arrays, "
              "first 12 hex digits; `python -m bench data list` prints the local copies) and "
              "its behaviour policy's score. Equal hashes mean equal data.", "",
              markdown_table(data_rows(rows), [
                  ("dataset", lambda r: r["dataset"]), ("content hash", _hashes),
                  ("transitions", lambda r: f"{r['transitions']:,d}" if r["transitions"]
                   else "-"),
                  ("behaviour return", lambda r: "-" if r["behaviour_return"] is None
                   else f"{r['behaviour_return']:.1f}"),
                  ("behaviour score", lambda r: "-" if r["behaviour_score"] is None
                   else f"{r['behaviour_score']:.1f}")]), "",
              f"Code: commit {', '.join(commits) or '-'}.", ""]
    return "\n".join(lines)


def csv_text(rows, aggs, pois) -> str:
    import pandas as pd

    table = [{"kind": "task", **{k: v for k, v in r.items() if k != "scores"},
              "scores": " ".join(f"{s:.4g}" for s in r["scores"])} for r in rows]
    table += [{"kind": "aggregate", **a} for a in aggs]
    table += [{"kind": "improvement", **p} for p in pois]
    buf = io.StringIO()
    pd.DataFrame(table).to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def speed_rows(rows) -> List[dict]:
    """One row per method and machine (a median over a CPU's cells and a GPU's means
    nothing): its cells' median seed-steps/s, their range and median compile time."""
    out = []
    done = [r for r in rows if not r["acting"] and r["status"] == "done"]
    order = list(dict.fromkeys(r["label"] for r in done))       # a method's rows together
    for label, hardware in sorted(dict.fromkeys((r["label"], r["hardware"]) for r in done),
                                  key=lambda k: (order.index(k[0]), k[1])):
        mine = [r for r in done if r["label"] == label and r["hardware"] == hardware]
        rate = [r["seeds"] * r["steps"] / r["wall_s"] for r in mine]
        out.append({"label": label, "cells": len(mine),
                    "seed_steps_per_s": float(np.median(rate)),
                    "min": float(min(rate)), "max": float(max(rate)),
                    "compile_s": float(np.median([r["compile_s"] for r in mine])),
                    "hardware": hardware})
    return out


def speed_markdown(sweep: Sweep, rows) -> str:
    cols = [("method", lambda r: r["label"]), ("cells", lambda r: str(r["cells"])),
            ("seed-steps/s (median over cells)", lambda r: f"{r['seed_steps_per_s']:,.0f}"),
            ("range", lambda r: f"{r['min']:,.0f}-{r['max']:,.0f}"),
            ("compile s (median)", lambda r: f"{r['compile_s']:.0f}"),
            ("hardware", lambda r: r["hardware"])]
    return "\n".join([
        f"# Throughput of the `{sweep.name}` sweep", "",
        "From the results files of its cells (`python -m bench table`): seed-steps/s is seeds "
        "x gradient steps / wall time of the whole cell, its periodic evaluations included, "
        "with every seed in one vmapped program; compile time is apart; one row per method "
        "and machine. For controlled "
        "measurements (warm-up, matmul peak, 1 vs 8 seeds) see `results/speed/` "
        "(`python -m bench speed ...`).", "", markdown_table(speed_rows(rows), cols), ""])


def outputs(sweep: Sweep, out: Path) -> Dict[str, Path]:
    """Where a sweep's tables go: the quick tier's are `results/leaderboard.md` and
    `results/speed.md`; any other sweep's carry its name (`leaderboard-full.md`)."""
    suffix = "" if sweep.name == "quick" else f"-{sweep.name}"
    return {kind: Path(out) / f"{stem}{suffix}.{ext}" for kind, stem, ext in
            [("md", "leaderboard", "md"), ("csv", "leaderboard", "csv"),
             ("speed", "speed", "md")]}


def write(sweep: Sweep, runs: Path, out: Path, reps: int = stats.REPS):
    """Write the sweep's leaderboard (.md, .csv) and throughput table; returns the leaderboard
    markdown and the paths written."""
    rows = collect(sweep, runs)
    by_method = scores_by_method(rows, sweep.tasks)
    aggs = aggregates(by_method, reps)
    pois = improvements(scores_by_task(rows), sweep.compare, reps)
    md = markdown(sweep, rows, aggs, pois)
    paths = outputs(sweep, out)
    sysinfo.atomic_write_text(paths["md"], md)
    sysinfo.atomic_write_text(paths["csv"], csv_text(rows, aggs, pois))
    sysinfo.atomic_write_text(paths["speed"], speed_markdown(sweep, rows))
    return md, list(paths.values())
