"""Survey claims as experiments: `python -m bench claims [NAME ...]` -> `results/claims.md`.

A claim module (one per claim of "Diffusion Models for Reinforcement Learning", arXiv
2311.01223) exposes `TITLE`, `STATEMENT` (the claim as the survey makes it) and
`run(runs, out, log) -> Finding`: it runs (or finds finished) the cells it needs through the
sweep harness, computes the statistics that decide it, draws its figure under
`results/figures/`, and returns its tests. A test decides on an interval, never on a point:
"supported" when the 95% interval lies wholly on the claim's side of the threshold, "not
supported" when it lies wholly on the other side, "inconclusive" when it straddles. A claim
with several tests is supported (or not) only when all its tests agree; otherwise it is
inconclusive and the table says which part holds.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Callable, List, Optional

CLAIMS = ("expressiveness", "scarcity", "compounding", "online", "long_horizon", "guidance",
          "backbone")
VERDICTS = ("supported", "not supported", "inconclusive")


@dataclasses.dataclass(frozen=True)
class Test:
    name: str          # what is compared, on what data
    statistic: str     # how it is measured
    estimate: float
    lo: float
    hi: float
    threshold: float   # the value of "no effect"

    @property
    def verdict(self) -> str:
        return verdict(self.lo, self.hi, self.threshold)


@dataclasses.dataclass(frozen=True)
class Finding:
    key: str
    title: str
    statement: str
    setup: str         # which runs, budget, seeds
    tests: List[Test]
    figure: Optional[Path]
    notes: str = ""

    @property
    def verdict(self) -> str:
        verdicts = {t.verdict for t in self.tests}
        return verdicts.pop() if len(verdicts) == 1 else "inconclusive"


def verdict(lo: float, hi: float, threshold: float) -> str:
    """Decided by where the interval lies relative to the no-effect threshold."""
    if lo > threshold:
        return "supported"
    if hi < threshold:
        return "not supported"
    return "inconclusive"


def get(name: str):
    from algos.config import ConfigError

    if name not in CLAIMS:
        raise ConfigError(f"unknown claim {name!r}; claims: {', '.join(CLAIMS)}")
    return importlib.import_module(f"bench.claims.{name}")


def section(f: Finding, out: Path) -> str:
    from bench.tables import markdown_table

    cols = [("test", lambda t: t.name), ("statistic", lambda t: t.statistic),
            ("estimate [95% CI]", lambda t: f"{t.estimate:.2f} [{t.lo:.2f}, {t.hi:.2f}]"),
            ("no effect", lambda t: f"{t.threshold:g}"), ("verdict", lambda t: t.verdict)]
    lines = [f"## {f.title}: **{f.verdict}**", "", f"*Claim.* {f.statement}", "",
             f"*Setup.* {f.setup}", "", markdown_table(f.tests, cols), ""]
    if f.figure is not None:
        lines += [f"![{f.key}]({Path(f.figure).relative_to(out)})", ""]
    if f.notes:
        lines += [f.notes, ""]
    return "\n".join(lines)


def kept_sections(text: str, names) -> dict:
    """`{claim: its section}` from an existing claims.md, for the claims not in `names`: a
    run of some claims keeps the others' sections as they were."""
    parts = text.split("\n## ")[1:]
    kept = {}
    for name in CLAIMS:
        if name in names:
            continue
        title = get(name).TITLE
        for part in parts:
            if part.startswith(f"{title}: "):
                kept[name] = "## " + part.rstrip("\n") + "\n"
    return kept


def markdown(findings: List[Finding], out: Path, hardware: str, kept=None) -> str:
    kept = dict(kept or {})
    by_key = {f.key: section(f, out) for f in findings}
    body = [by_key.get(n) or kept.get(n) for n in CLAIMS]
    head = ["# Survey claims, tested", "",
            "Built by `python -m bench claims` from the results files (hardware: "
            f"{hardware}). Each claim of the survey \"Diffusion Models for Reinforcement "
            "Learning\" (arXiv 2311.01223) is one experiment; a test is decided by its 95% "
            "bootstrap interval against the no-effect value (`bench/claims/__init__.py`). "
            "Verdicts hold for the budgets stated, which on the quick tier are small.", ""]
    return "\n".join(head + [b for b in body if b])


def run(names=None, runs: Optional[Path] = None, out: Optional[Path] = None,
        log: Callable[[str], None] = print) -> List[Finding]:
    from bench import sysinfo, train

    runs = Path(runs or train.RUNS)
    out = Path(out or train.ROOT / "results")
    names = list(names or CLAIMS)
    findings = [get(n).run(runs=runs, out=out, log=log) for n in names]
    path = out / "claims.md"
    kept = kept_sections(path.read_text(), names) if path.exists() else {}
    sysinfo.atomic_write_text(path, markdown(findings, out, sysinfo.hardware_line(), kept))
    return findings
