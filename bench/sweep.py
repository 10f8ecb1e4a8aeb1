"""Sweeps declared in data: `bench/sweeps/<name>.toml` says which cells to run.

A sweep file holds an optional `description`, an optional `include` (other sweep files, by
name or path relative to this one, whose cells come first; `{ sweep = "bandit", skip =
["Diffusion-QL"] }` leaves methods out), an optional `data_tier` (the size at which missing
datasets are built: "quick", the default, "medium" or "full"), `[[group]]` tables and an
optional `[leaderboard]` table:

    [[group]]
    algos = ["bc", "diffusion_ql"]          # algorithm modules (algos.ALGOS)
    datasets = ["jaxrl/pendulum/medium-expert-v0"]   # online algorithms (sac): "env:ENV_ID"
    seeds = 5                               # seeds 0..4, all in one vmapped program
    steps = 2000                            # gradient steps (Config.steps)
    set = { eval_every = 1000 }             # Config overrides, as `bench train --set`,
                                            # typed; nested fields as a table or dotted:
                                            # diffusion = { sampler = "ddim", steps = 3 }
    label = "Diffusion-BC (T=5)"            # optional, one algo only: the method's name in
                                            # the tables (default: the algorithm's name)
    [leaderboard]
    compare = [["Diffusion-QL", "TD3+BC"]]  # pairs for the probability of improvement

A group may train on data derived from its datasets, made before its cells run when missing
(and, when found, checked against its source's current data: `stale_chain`):

    subset = 0.05                           # whole episodes holding 5% of the transitions
                                            # (`bench data subset`: <id>-5pct-v0)
    augment = { method = "synther", preset = "quick", set = { size = 100000 } }
                                            # then upsampled (`bench augment`), the cells
                                            # training on <id>-synther-<key>-v0

A group may also list acting variants: each evaluates the group's trained cells again with
fields that only change how the algorithm acts (its module's `ACTING`: sampling steps,
guidance, plans, ...), from their checkpoints, without training anything (`bench evaluate`):

    act = [{ label = "Diffuser (diffused actions)", set = { act_with = "actions" } },
           { label = "Diffuser (DDIM 8)", set = { diffusion = { sampler = "ddim", steps = 8 } } },
           { label = "Diffuser (Multi2D)", tasks = "sampled" }]

(`tasks = "sampled"`: every episode draws its own task, Maze2D's goal, as `bench evaluate
--tasks sampled`; with or without a `set`.)

An acting variant is a method of the tables like any other (its label; by default the group's
with the change), and its seeds are paired with the trained cell's, so the leaderboard adds
the paired difference. Its results go to the `evals` folder beside the sweep's results files
(`results/runs` -> `results/evals`). It needs its trained cell's checkpoint, and an
evaluation is only reused, or scored, while it comes from the training its cell's results
file holds (`bench.evaluate.same_source`: the final checkpoint's digest, which both record).

Every group expands to algos x datasets cells (and their variants); a cell is (algorithm,
dataset, config) and runs through `bench.train.run`, which skips it when its results file
exists and resumes it from its last orbax checkpoint when it was interrupted; a variant runs
through `bench.evaluate.evaluate` after its cell. `load` checks the whole file before
anything runs, so a typo costs one line of error, not an hour of compute.
"""
from __future__ import annotations

import dataclasses
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import algos
from algos.config import ConfigError, flatten
from bench import evaluate, train
from envs.datasets.builder import TIERS

SWEEPS = Path(__file__).resolve().parent / "sweeps"
TOP_KEYS = {"description", "include", "data_tier", "group", "leaderboard"}
GROUP_KEYS = {"algos", "datasets", "seeds", "steps", "set", "label", "subset", "augment", "act"}
ACT_KEYS = {"label", "set", "tasks"}
AUGMENT_KEYS = {"method", "preset", "set"}
LEADERBOARD_KEYS = {"compare"}


class SweepError(ConfigError):
    """A malformed or inconsistent sweep file: one line naming the file, the group and the fix."""


@dataclasses.dataclass(frozen=True)
class Cell:
    label: str
    algo: str
    dataset: str
    seeds: int
    steps: Optional[int]
    overrides: Tuple[Tuple[str, Any], ...]   # (dotted field, typed value)
    source: Optional[str] = None             # the dataset named in the file, when the cell
    subset: Optional[float] = None           # trains on data derived from it: a subset,
    augment: Optional[Tuple[str, Optional[str], Tuple[Tuple[str, Any], ...]]] = None
                                             # and/or (method, preset, overrides) of augment
    acting: Tuple[Tuple[str, Any], ...] = () # an acting variant: these acting overrides,
    trained_label: Optional[str] = None      # evaluated on the trained cell of this label
    tasks: str = "default"                   # or "sampled": a task drawn per episode

    @property
    def sets(self) -> Dict[str, Any]:
        return dict(self.overrides)

    @property
    def task(self) -> str:
        """The dataset the sweep file names: what the cell is evaluated as, in aggregates
        (its own `dataset` may be derived from it)."""
        return self.source or self.dataset

    def config(self):
        return train.make_config(self.algo, self.steps, self.sets, self.dataset, typed=True)

    @property
    def is_acting(self) -> bool:
        return self.trained_label is not None

    @property
    def trained(self) -> "Cell":
        """The cell that is trained: itself, or for an acting variant the group's cell."""
        return dataclasses.replace(self, label=self.trained_label, acting=(),
                                   trained_label=None, tasks="default") if self.is_acting else self

    @property
    def change(self) -> str:
        """An acting variant's change from its trained cell, in words."""
        return evaluate.change_of({"acting": dict(self.acting), "tasks": self.tasks})

    def act_config(self):
        """The config it acts with: the trained config with the acting overrides."""
        return evaluate.acting_config(self.algo, self.config(), dict(self.acting), typed=True,
                                      flag="act", retrain="give it in the group's set")

    def path(self, runs: Path) -> Path:
        """Its results file: a training's in `runs`, an acting variant's evaluation beside."""
        name = train.cell_name(self.algo, self.dataset, self.config())
        if self.is_acting:
            return evaluate.path_of(evaluate.beside(runs), name, self.act_config(), self.seeds,
                                    self.tasks)
        return Path(runs) / f"{name}.json"


@dataclasses.dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    description: str
    cells: Tuple[Cell, ...]
    compare: Tuple[Tuple[str, str], ...]
    data_tier: str = "quick"

    @property
    def labels(self) -> List[str]:
        return list(dict.fromkeys(c.label for c in self.cells))

    @property
    def datasets(self) -> List[str]:
        return list(dict.fromkeys(c.dataset for c in self.cells))

    @property
    def tasks(self) -> List[str]:
        return list(dict.fromkeys(c.task for c in self.cells))


def resolve(name_or_path) -> Path:
    """`quick` -> bench/sweeps/quick.toml; a path is taken as it is."""
    p = Path(name_or_path)
    if p.is_dir():
        raise SweepError(f"{p} is a folder; give a sweep file (.toml) or a sweep name")
    if p.suffix == ".toml" or p.exists():
        return p
    path = SWEEPS / f"{name_or_path}.toml"
    if not path.exists():
        known = sorted(q.stem for q in SWEEPS.glob("*.toml"))
        raise SweepError(f"unknown sweep {name_or_path!r}; sweeps: {', '.join(known)} "
                         f"(or give the path of a .toml file)")
    return path


def _typed(value, where: str):
    """A TOML value as it goes into a Config: typed, lists as tuples (a Cell is hashable)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                       for v in value):
        return tuple(value)
    raise SweepError(f"{where}: value {value!r} must be a number, a bool, a string or a list "
                     "of numbers")


def _known_dataset(ds: str) -> bool:
    from envs.datasets import all_specs, minari_io

    if train.is_online(ds):
        from envs.registry import env_ids

        return ds[len(train.ONLINE_PREFIX):] in env_ids()
    return ds in all_specs() or minari_io.exists(ds)


def _group_cells(g: dict, where: str) -> List[Cell]:
    if not isinstance(g, dict):
        raise SweepError(f"{where}: expected a [[group]] table")
    extra = set(g) - GROUP_KEYS
    if extra:
        raise SweepError(f"{where}: unknown key {sorted(extra)[0]!r}; a group has "
                         f"{', '.join(sorted(GROUP_KEYS))}")
    for key in ("algos", "datasets", "seeds"):
        if key not in g:
            raise SweepError(f"{where}: missing {key!r}")
    names = {}
    for key in ("algos", "datasets"):
        v = g[key]
        if not (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
            raise SweepError(f"{where}: {key!r} must be a non-empty list of strings")
        names[key] = v
    for a in names["algos"]:
        if a not in algos.ALGOS:
            raise SweepError(f"{where}: unknown algorithm {a!r}; algorithms: "
                             f"{', '.join(algos.ALGOS)}")
    for ds in names["datasets"]:
        if not _known_dataset(ds):
            from envs.datasets import all_specs

            raise SweepError(f"{where}: unknown dataset {ds!r}; ours: "
                             f"{', '.join(sorted(all_specs()))} (or a local Minari id, or "
                             "env:ENV_ID for an online algorithm)")
    seeds, steps = g["seeds"], g.get("steps")
    if not (isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1):
        raise SweepError(f"{where}: 'seeds' must be a positive integer, got {seeds!r}")
    if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool)
                                  and steps >= 1):
        raise SweepError(f"{where}: 'steps' must be a positive integer, got {steps!r}")
    sets = g.get("set", {})
    if not isinstance(sets, dict):
        raise SweepError(f"{where}: 'set' must be a table, e.g. set = {{ eval_every = 1000 }}")
    overrides = tuple((k, _typed(v, f"{where}: set.{k}")) for k, v in flatten(sets).items())
    label = g.get("label")
    if label is not None and (not isinstance(label, str) or len(names["algos"]) != 1):
        raise SweepError(f"{where}: 'label' names one method: give it as a string, in a group "
                         "with one algorithm")
    subset, aug = _derivation(g, where)
    variants = _acting(g, where)
    cells = []
    for a in names["algos"]:
        for ds in names["datasets"]:
            target = _derived_id(ds, subset, aug, where)
            cell = Cell(label or algos.label(a), a, target, seeds, steps, overrides,
                        ds if target != ds else None, subset, aug)
            try:
                train.check_kind(a, target)
                cell.config()
            except ConfigError as e:
                raise SweepError(f"{where}: {a} on {ds}: {e}") from None
            cells.append(cell)
            made = {}   # (acting config, tasks) -> change: two spellings of one change
            for name, acting, tasks in variants:
                var = dataclasses.replace(cell, acting=acting, trained_label=cell.label,
                                          tasks=tasks)
                change = var.change
                var = dataclasses.replace(var, label=name or f"{cell.label} ({change})")
                try:
                    act = var.act_config()
                except ConfigError as e:
                    raise SweepError(f"{where}: {a} on {ds}: {e}") from None
                if tasks == "sampled" and not _has_tasks(ds):
                    raise SweepError(f"{where}: act tasks = \"sampled\": {ds}'s env has no "
                                     "task parameters to draw (Maze2D's goal is one)")
                if act == cell.config() and tasks == "default":
                    raise SweepError(f"{where}: act {change}: {a} on {ds} already acts so as "
                                     "trained; give a change")
                if (act, tasks) in made:
                    raise SweepError(f"{where}: act {change}: {a} on {ds} acts as act "
                                     f"{made[act, tasks]} does; give the change once")
                made[act, tasks] = change
                cells.append(var)
    return cells


def _has_tasks(dataset_id: str) -> bool:
    """Whether the env of one of our dataset ids has task parameters; True for a dataset we do
    not know by name (its env is checked before the sweep runs anything)."""
    import envs
    from envs.datasets.builder import all_specs

    spec = all_specs().get(dataset_id)
    return spec is None or envs.make(spec.env_id).tasks is not None


def _acting(g: dict, where: str):
    """The group's acting variants: (label or None, acting overrides, tasks), checked in shape
    (the fields themselves are checked against each algorithm's acting fields)."""
    act = g.get("act", [])
    shape = ('\'act\' is a list of { label = ..., set = { FIELD = VALUE }, tasks = "sampled" } '
             'tables (a set, tasks or both), e.g. act = [{ set = { diffusion = { steps = 5 } } }]')
    if not isinstance(act, list):
        raise SweepError(f"{where}: {shape}")
    out = []
    for entry in act:
        if not (isinstance(entry, dict) and set(entry) <= ACT_KEYS
                and isinstance(entry.get("set", {}), dict)
                and isinstance(entry.get("label", ""), str)):
            raise SweepError(f"{where}: {shape}")
        tasks = entry.get("tasks", "default")
        if tasks not in evaluate.TASKS:
            raise SweepError(f"{where}: act tasks = {tasks!r}: one of "
                             f"{', '.join(map(repr, evaluate.TASKS))}")
        if len(g.get("algos", [])) != 1 and "label" in entry:
            raise SweepError(f"{where}: an acting variant's 'label' names one method: give "
                             "it in a group with one algorithm")
        acting = tuple((k, _typed(v, f"{where}: act.set.{k}"))
                       for k, v in flatten(entry.get("set", {})).items())
        if not acting and tasks == "default":
            raise SweepError(f"{where}: {shape}")
        out.append((entry.get("label"), acting, tasks))
    return out


def _derivation(g: dict, where: str):
    """The group's `subset` fraction and `augment` (method, preset, overrides), checked."""
    subset = g.get("subset")
    if subset is not None and not (isinstance(subset, (int, float))
                                   and not isinstance(subset, bool) and 0 < subset <= 1):
        raise SweepError(f"{where}: 'subset' is the fraction of transitions kept, in (0, 1], "
                         f"got {subset!r}")
    aug = g.get("augment")
    if aug is None:
        return subset, None
    if not isinstance(aug, dict) or set(aug) - AUGMENT_KEYS or "method" not in aug:
        raise SweepError(f"{where}: 'augment' is a table {{ method = \"synther\" | \"noise\", "
                         "preset = ..., set = { ... } }")
    sets = aug.get("set", {})
    if not isinstance(sets, dict):
        raise SweepError(f"{where}: augment.set must be a table")
    overrides = tuple((k, _typed(v, f"{where}: augment.set.{k}"))
                      for k, v in flatten(sets).items())
    return subset, (aug["method"], aug.get("preset"), overrides)


def _derived_id(ds: str, subset, aug, where: str) -> str:
    from bench import augment
    from envs.datasets import derived

    target = derived.subset_id(ds, float(subset)) if subset is not None else ds
    if aug is None:
        return target
    try:
        return augment.derived_for(target, aug[0], aug[1], dict(aug[2]), typed=True)
    except ConfigError as e:
        raise SweepError(f"{where}: augment: {e}") from None


def make_data(cell: Cell, tier: str, log: Callable[[str], None] = print) -> None:
    """Build what a cell trains on when missing: the named dataset, its subset, its
    augmentation."""
    from bench import augment
    from envs.datasets import all_specs, build, minari_io

    if train.is_online(cell.dataset) or minari_io.exists(cell.dataset):
        return  # found: `run` checked it against its source (`check_made_from`) first
    source = cell.task
    if not minari_io.exists(source):
        spec = all_specs()[source]
        log(f"building dataset {source} ({tier} tier)")
        build(spec.env_id, spec.level, tier=tier, log=lambda m: log(f"  {m}"))
    if cell.subset is not None:
        source = augment.make_subset(source, float(cell.subset), log=lambda m: log(f"  {m}"))
    if cell.augment is not None:
        method, preset, overrides = cell.augment
        log(f"making {cell.dataset}")
        augment.run(source, method, preset, dict(overrides), typed=True,
                    command=f"python -m bench augment {source} (a sweep)",
                    log=lambda m: log(f"  {m}"))
    assert minari_io.exists(cell.dataset), cell.dataset


def stale_chain(dataset_id: str) -> Optional[Tuple[List[str], str, str, str]]:
    """Whether a subset or derived dataset on disk was made from its source's current data,
    and so on up to the dataset built from an env, compared through the metadata (no arrays
    are read). Returns None, or `(chain, source, recorded, now)`: `chain` runs from
    `dataset_id` down to the stale link (each made from the next), `source` is what the last
    was made from, with the content hash it had then and has now. A source that is not here,
    or that stores no content hash (a public dataset, never rebuilt), ends the check."""
    from envs.datasets import derived, minari_io

    chain = [dataset_id]
    while True:
        made = derived.made_from(minari_io.read_metadata(chain[-1]))
        source, recorded = made.get("source_id"), made.get("source_content_hash")
        if not source or not recorded or source in chain or not minari_io.exists(source):
            return None
        now = (minari_io.read_metadata(source).get("diffrl") or {}).get("content_hash")
        if now and now != recorded:
            return chain, source, recorded, now
        chain.append(source)


def check_made_from(dataset_ids: List[str]) -> None:
    """Every stale chain among `dataset_ids` (those on disk), in one line: the datasets to
    delete (each stale link and everything made from it), so that one rerun remakes them all
    from the current data."""
    import shlex

    from envs.datasets import DatasetError, minari_io

    stale = [c for c in map(stale_chain, dict.fromkeys(
        d for d in dataset_ids if minari_io.exists(d))) if c is not None]
    if stale:
        chain, source, recorded, now = stale[0]
        doomed = dict.fromkeys(d for c in stale for d in c[0])
        raise DatasetError(
            f"{chain[-1]} was made from other data ({source} had content hash {recorded[:12]} "
            f"then, {now[:12]} now); delete the {len(doomed)} dataset(s) made from stale "
            "data, this one included: " + " ".join(shlex.quote(str(minari_io.dataset_path(d)))
                                                   for d in doomed)
            + " and rerun, and the sweep makes them again from the current data")


def _data_ids(cell: "Cell") -> List[str]:
    """The datasets a cell's data is made of: its own and, for a subset's augmentation, the
    subset between it and the dataset the sweep file names."""
    from envs.datasets import derived

    ids = [cell.dataset]
    if cell.subset is not None and cell.augment is not None:
        ids.append(derived.subset_id(cell.task, float(cell.subset)))
    return ids


def _read(path: Path, seen: Tuple[Path, ...]) -> Tuple[dict, List[Cell]]:
    try:
        path = path.resolve()
    except OSError as e:
        raise SweepError(f"sweep file {path}: {e.strerror}") from None
    if path in seen:
        raise SweepError(f"{path.name}: includes itself (through {seen[-1].name})")
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist" if not path.exists() else
                         f"{path} is not a file; give a sweep file (.toml)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{path.name}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"{path.name}: cannot be read as UTF-8 text "
                         f"({type(e).__name__})") from None
    extra = set(doc) - TOP_KEYS
    if extra:
        raise SweepError(f"{path.name}: unknown key {sorted(extra)[0]!r}; a sweep file has "
                         f"{', '.join(sorted(TOP_KEYS))}")
    cells: List[Cell] = []
    include = doc.get("include", [])
    if not isinstance(include, list):
        raise SweepError(f"{path.name}: 'include' must be a list of sweep names")
    for inc in include:
        if isinstance(inc, str):
            inc = {"sweep": inc}
        skip = inc.get("skip", []) if isinstance(inc, dict) else None
        if not (isinstance(inc, dict) and isinstance(inc.get("sweep"), str)
                and set(inc) <= {"sweep", "skip"} and isinstance(skip, list)
                and all(isinstance(x, str) for x in skip)):
            raise SweepError(f"{path.name}: an include is a sweep name or "
                             "{ sweep = NAME, skip = [METHOD, ...] }")
        name = inc["sweep"]
        sub = path.parent / (name if name.endswith(".toml") else f"{name}.toml")
        included = _read(sub, seen + (path,))[1]
        unknown = set(skip) - {c.label for c in included}
        if unknown:
            raise SweepError(f"{path.name}: include {name} skips {sorted(unknown)[0]!r}, "
                             "which it does not have")
        cells += [c for c in included if c.label not in skip]
    groups = doc.get("group", [])
    if not isinstance(groups, list):
        raise SweepError(f"{path.name}: groups are written [[group]]")
    for i, g in enumerate(groups):
        cells += _group_cells(g, f"{path.name}: group {i + 1}")
    return doc, cells


def load(name_or_path) -> Sweep:
    """Read and check a sweep file; every problem is a one-line `SweepError`."""
    path = resolve(name_or_path)
    doc, cells = _read(path, ())
    if not cells:
        raise SweepError(f"{path.name}: no cells; add a [[group]] with algos, datasets, seeds")
    seen: Dict[Tuple[str, str], Cell] = {}
    algo_of: Dict[str, str] = {}
    for c in cells:
        key = (c.label, c.dataset)
        if key in seen and seen[key] != c:
            raise SweepError(f"{path.name}: method {c.label!r} on {c.dataset} is declared twice "
                             "with different settings; give one of them another label")
        if algo_of.setdefault(c.label, c.algo) != c.algo:
            raise SweepError(f"{path.name}: label {c.label!r} names two algorithms "
                             f"({algo_of[c.label]} and {c.algo}); give each its own label")
        seen[key] = c
    cells = list(dict.fromkeys(cells))
    variant = {}
    for c in cells:
        if c.is_acting and c.trained not in cells:
            raise SweepError(f"{path.name}: acting variant {c.label!r} on {c.dataset} needs its "
                             f"trained cell {c.trained_label!r}, which the sweep leaves out")
        if variant.setdefault(c.label, c.is_acting) != c.is_acting:
            raise SweepError(f"{path.name}: label {c.label!r} names both an acting variant and "
                             "a trained cell; give each its own label")
    # each trained cell, then its variants (an include may have listed them first)
    cells = [v for c in cells if not c.is_acting
             for v in [c] + [v for v in cells if v.is_acting and v.trained == c]]
    board = doc.get("leaderboard", {})
    if not isinstance(board, dict) or set(board) - LEADERBOARD_KEYS:
        raise SweepError(f"{path.name}: [leaderboard] takes only "
                         f"{', '.join(sorted(LEADERBOARD_KEYS))}")
    compare = board.get("compare", [])
    if not isinstance(compare, list):
        raise SweepError(f"{path.name}: leaderboard.compare must be a list of pairs, e.g. "
                         '[["Diffusion-QL", "TD3+BC"]]')
    labels = {c.label for c in cells}
    for pair in compare:
        if not (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(p, str) and p in labels for p in pair)):
            raise SweepError(f"{path.name}: leaderboard.compare entry {pair!r} must be a pair "
                             f"of methods of the sweep: {', '.join(sorted(labels))}")
    tier = doc.get("data_tier", "quick")
    if not isinstance(tier, str) or tier not in TIERS:
        raise SweepError(f"{path.name}: data_tier must be one of {', '.join(TIERS)}, got "
                         f"{tier!r}")
    return Sweep(path.stem, path, str(doc.get("description", "")), tuple(cells),
                 tuple(tuple(p) for p in compare), tier)


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run(sweep: Sweep, runs: Path = train.RUNS, checkpoints: Optional[Path] = None,
        force: bool = False, log: Callable[[str], None] = print) -> List[dict]:
    """Run every cell that has no results file yet (building missing datasets first); returns
    the results of all cells, in the sweep's order. Before the first cell starts, every cell's
    results file is checked against its config, seed count and the local dataset's content
    hash: a file trained on other data stops the sweep with one line naming `--force`."""
    t0 = time.time()
    cells = {c.dataset: c for c in sweep.cells if not train.is_online(c.dataset)}.values()
    check_made_from([d for c in cells for d in _data_ids(c)])  # all stale data in one line
    for cell in cells:
        make_data(cell, sweep.data_tier, log)  # finished cells are checked against their data
    hashes = {ds: train.data_hash(ds) for ds in sweep.datasets}
    previous = []
    for c in sweep.cells:
        if not c.is_acting:
            previous.append(train.existing(c.path(runs), c.seeds, c.config(), force,
                                           hashes[c.dataset]))
            continue
        prev = evaluate.existing(c.path(runs), c.seeds, c.act_config(), force, hashes[c.dataset],
                                 c.tasks)
        base = previous[sweep.cells.index(c.trained)]   # listed before it (`load`)
        if prev is not None and (base is None or not evaluate.same_source(base, prev)):
            raise SweepError(
                f"{c.path(runs)} evaluated a training of {c.trained_label} on {c.dataset} "
                + ("without a finished results file" if base is None else
                   "other than the one its results file holds") + "; move it away (it is "
                "evaluated again from the checkpoint)")
        previous.append(prev)
    total = len(sweep.cells)
    todo = [c for c, prev in zip(sweep.cells, previous) if prev is None]
    if todo:
        loaded = {ds: train.load_source(ds) for ds in dict.fromkeys(c.dataset for c in todo)}
        for c in todo:  # the checks each cell makes before compiling, all before the first
            try:
                env, *_ = train.preflight(c.algo, loaded[c.dataset], c.seeds,
                                          c.act_config() if c.is_acting else c.config())
                if c.tasks == "sampled":
                    evaluate.require_tasks(env.env_id, env.tasks is not None,
                                           'tasks = "sampled"')
                if c.is_acting and c.trained not in todo:   # trained: its checkpoint is here
                    evaluate.trained_checkpoint(c.algo, c.dataset, c.seeds, c.steps, c.sets,
                                                hashes[c.dataset], checkpoints, True,
                                                f" --out {runs} --force")
            except ConfigError as e:
                raise SweepError(f"{sweep.path.name}: {c.label} on {c.dataset}: {e}") from None
        del loaded
    log(f"sweep {sweep.name}: {total} cells, {total - len(todo)} finished, {len(todo)} to run")
    # seed-steps: the ETA's unit (an acting variant trains nothing)
    work = lambda c: 0 if c.is_acting else c.seeds * c.config().steps  # noqa: E731
    left, done_work = sum(work(c) for c in todo), 0
    t_cells, compile_s, run_s = time.time(), 0.0, 0.0
    results, n_done = [], total - len(todo)
    for cell, prev in zip(sweep.cells, previous):
        if prev is not None:  # finished: its results file, already read
            results.append(prev)
            continue
        elapsed = time.time() - t_cells
        eta = f", ~{_fmt_s(elapsed / done_work * left)} left" if done_work else ""
        if cell.is_acting:
            log(f"[{n_done + 1}/{total}] {cell.label} ({cell.algo}) on {cell.dataset}: the "
                f"trained {cell.trained_label} acting with {cell.change} "
                f"({_fmt_s(time.time() - t0)} so far)")
            result = evaluate.evaluate(
                cell.algo, cell.dataset, cell.seeds, cell.steps, cell.sets,
                acting=dict(cell.acting), tasks=cell.tasks, out=evaluate.beside(runs),
                checkpoints=checkpoints,
                force=force, typed=True, trained=cell.trained.path(runs),
                command=f"python -m bench sweep {sweep.name}", log=lambda m: log(f"  {m}"))
            n_done += 1
            compile_s += result["compile_s"]
            run_s += result["wall_s"]
            results.append(result)
            continue
        log(f"[{n_done + 1}/{total}] {cell.label} ({cell.algo}) on {cell.dataset}: "
            f"{cell.seeds} seeds, {cell.config().steps:,d} steps "
            f"({_fmt_s(time.time() - t0)} so far{eta})")
        result = train.run(cell.algo, cell.dataset, cell.seeds, cell.steps, cell.sets, out=runs,
                           checkpoints=checkpoints, force=force,
                           command=f"python -m bench sweep {sweep.name}",
                           log=lambda m: log(f"  {m}"), typed=True)
        n_done += 1
        compile_s += result["compile_s"]
        run_s += result["wall_s"]
        done_work += work(cell)
        left -= work(cell)
        results.append(result)
    log(f"sweep {sweep.name}: {total} cells done in {_fmt_s(time.time() - t0)} "
        f"(this session: {_fmt_s(compile_s)} compiling, {_fmt_s(run_s)} running)")
    return results
