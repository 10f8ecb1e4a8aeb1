"""`python -m bench compare RUNS_A RUNS_B`: the same cells run twice (another machine, another
data build, another code version), side by side.

Cells are matched by their results file's path (algorithm / dataset / config hash). Per cell:
each run's hardware, jax version, code and dataset content hash, the final score of each seed
in both, and how many seeds agree bit for bit and within `TOL` (a score is a float32 mean,
so rounding alone moves it by ~1e-6); a summary says what differs between the runs, so a
moved number can be traced to the data, the code or the floats.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from bench import runs_table, sysinfo
from bench.leaderboard import code_text
from bench.tables import markdown_table

TOL = 1e-4


def pairs(a: Path, b: Path) -> List[dict]:
    runs_a = {Path(r["_path"]).relative_to(a): r for r in runs_table.load_runs(a)}
    runs_b = {Path(r["_path"]).relative_to(b): r for r in runs_table.load_runs(b)}
    out = []
    for rel in sorted(set(runs_a) & set(runs_b)):
        ra, rb = runs_a[rel], runs_b[rel]
        sa = np.array([f["score"] for f in ra["final"]], float)
        sb = np.array([f["score"] for f in rb["final"]], float)
        n = min(len(sa), len(sb))  # seeds 0..n-1 are the same seeds in both
        out.append({
            "cell": str(rel.with_suffix("")) + (f" (seeds {len(sa)} / {len(sb)}: the first {n} "
                                                "compared)" if len(sa) != len(sb) else ""),
            "seeds": n,
            "equal": int(np.sum(sa[:n] == sb[:n])),
            "close": int(np.sum(np.abs(sa[:n] - sb[:n]) <= TOL)),
            "max_diff": float(np.nanmax(np.abs(sa[:n] - sb[:n]))) if n else float("nan"),
            "mean_a": float(np.nanmean(sa)), "mean_b": float(np.nanmean(sb)),
            "std_a": float(np.nanstd(sa)), "std_b": float(np.nanstd(sb)),
            "data_a": (ra.get("data") or {}).get("content_hash"),
            "data_b": (rb.get("data") or {}).get("content_hash"),
            "hw_a": sysinfo.hardware_line(ra["hardware"]),
            "hw_b": sysinfo.hardware_line(rb["hardware"]),
            "jax_a": ra["versions"].get("jax"), "jax_b": rb["versions"].get("jax"),
            "code_a": code_text(ra.get("code")), "code_b": code_text(rb.get("code")),
            "wall_a": ra["wall_s"], "wall_b": rb["wall_s"]})
    return out


def markdown(a: Path, b: Path, rows: List[dict]) -> str:
    def both(key):
        return sorted({str(r[key]) for r in rows})

    lines = [f"# `{a}` (A) against `{b}` (B)", "",
             f"{len(rows)} cells in both. What each side ran on:", ""]
    for what, ka, kb in [("hardware", "hw_a", "hw_b"), ("jax", "jax_a", "jax_b"),
                         ("code", "code_a", "code_b")]:
        lines.append(f"- {what}: A {', '.join(both(ka))}; B {', '.join(both(kb))}")
    known = [r for r in rows if r["data_a"] and r["data_b"]]
    same_data = sum(r["data_a"] == r["data_b"] for r in known)
    lines += [f"- dataset content: equal in {same_data} of {len(known)} cells that record it"
              + (f" ({len(rows) - len(known)} without a hash: results written before it was "
                 "recorded)" if len(known) < len(rows) else ""), "",
              markdown_table(rows, [
                  ("cell", lambda r: r["cell"]),
                  ("A: mean ± std", lambda r: f"{r['mean_a']:.2f} ± {r['std_a']:.2f}"),
                  ("B: mean ± std", lambda r: f"{r['mean_b']:.2f} ± {r['std_b']:.2f}"),
                  ("seeds bit-equal", lambda r: f"{r['equal']}/{r['seeds']}"),
                  (f"within {TOL:g}", lambda r: f"{r['close']}/{r['seeds']}"),
                  ("largest seed difference", lambda r: f"{r['max_diff']:.3g}"),
                  ("data A / B", lambda r: f"`{str(r['data_a'])[:12]}` / `{str(r['data_b'])[:12]}`"),
                  ("wall s A / B", lambda r: f"{r['wall_a']:.1f} / {r['wall_b']:.1f}")]), ""]
    return "\n".join(lines)
