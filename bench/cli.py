"""`python -m bench ...`: the harness's command line.

    python -m bench envs [--measure-refs]
    python -m bench data build --env ENV_ID --quality LEVEL [--seed S] [--transitions N]
    python -m bench data build --tier quick
    python -m bench data list
    python -m bench data subset DATASET_ID --fraction 0.05 [--seed S]
    python -m bench speed {diffusion,policies,planners,synther} [--quick] [--out DIR]
    python -m bench bandit [--seeds N] [--steps S]
    python -m bench sweep [NAME|FILE.toml] [--force]
    python -m bench table [--sweep NAME]
    python -m bench compare RUNS_A RUNS_B [--write FILE.md]
    python -m bench claims [NAME ...]
    python -m bench train --algo ALGO --dataset DATASET_ID --seeds N [--steps S] [--set k=v ...]
    python -m bench train --algo sac --env ENV_ID --seeds N [--steps S] [--set k=v ...]
    python -m bench augment DATASET_ID [--method synther|noise] [--preset quick] [--set k=v ...]
    python -m bench fidelity DATASET_ID

Bad input (unknown env, level, dataset, tier, algorithm or config field) prints one line naming the problem and what
exists, and exits with code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench import jaxcache
from bench.tables import markdown_table, num


RESULTS = Path(__file__).resolve().parent.parent / "results"
ADHOC = RESULTS.parent / ".cache" / "runs"  # = bench.train.ADHOC, without importing JAX
EVALS = RESULTS.parent / ".cache" / "evals"  # = bench.evaluate.ADHOC


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _writable_dir(flag: str, value: str) -> None:
    """A folder the command may write into: a writable folder, or absent with no file on the
    way to it and a writable folder above it (it will be made)."""
    path = Path(value)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{flag} {value}: is a file, not a folder; give a folder")
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {value}: is not writable; give another folder")
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {value}: {parent} is a file, so the folder cannot be "
                                "made; give another folder")
            if not os.access(parent, os.W_OK):
                raise UserError(f"{flag} {value}: {parent} is not writable; give another folder")
            break


def check_args(args) -> None:
    """Every command's arguments, checked before any data is read or anything compiles."""
    for name, least, most in (("seeds", 1, 1 << 16), ("steps", 1, 2 ** 31 - 1),
                              ("transitions", 1, 10 ** 9), ("seed", 0, 2 ** 31 - 1),
                              ("episodes", 1, 10 ** 6)):
        v = getattr(args, name, None)
        if v is not None and not least <= v <= most:
            raise UserError(f"--{name} must be between {least} and {most:,d}, got {v}")
    v = getattr(args, "max_seed_seconds", None)
    if v is not None and not v > 0:
        raise UserError(f"--max-seed-seconds must be positive, got {v}")
    written = ["out"] + (["runs"] if args.cmd in ("sweep", "claims") else [])
    for name in written:  # `table` and `compare` only read their results folders
        if getattr(args, name, None) is not None:
            _writable_dir(f"--{name}", getattr(args, name))
    if getattr(args, "unscored_to", None):
        _writable_dir("--unscored-to", args.unscored_to)
    if getattr(args, "write", None):
        if Path(args.write).is_dir():
            raise UserError(f"--write {args.write}: is a folder; give a file name")
        _writable_dir("--write", str(Path(args.write).parent))
    if args.cmd == "table" and not Path(args.runs).is_dir():
        raise UserError(f"--runs {args.runs}: no such folder, so the tables would be empty; "
                        "give the folder of results files (default results/runs)")


def cmd_envs(args):
    from bench.envs_table import env_rows

    from envs import env_ids

    ids = [i for i in args.ids.split(",") if i] if args.ids else None
    if ids == []:
        raise UserError(f"--ids names no env id ({args.ids!r}); give e.g. --ids Pendulum-v1")
    unknown = sorted(set(ids or ()) - set(env_ids()))
    if unknown:
        raise UserError(f"unknown env id(s) {', '.join(unknown)}; known: {', '.join(env_ids())}")
    try:
        batches = tuple(dict.fromkeys(int(b) for b in args.batches.split(",")))
    except ValueError:
        batches = ()
    if not batches or min(batches) < 1:
        raise UserError(f"--batches takes positive integers separated by commas, e.g. 1,256; "
                        f"got {args.batches!r}")
    rows = env_rows(measure_refs=args.measure_refs, batches=batches,
                    log=lambda m: print(m, file=sys.stderr), ids=ids)
    cols = [("env id", lambda r: r["env_id"]), ("source", lambda r: r["source"]),
            ("backend", lambda r: r["backend"]), ("obs", lambda r: str(r["obs_dim"])),
            ("act", lambda r: str(r["act_dim"])), ("episode", lambda r: str(r["episode_length"])),
            ("random ref", num("ref_min_score")), ("expert ref", num("ref_max_score"))]
    cols += [(f"steps/s b={b}", num(f"steps_per_s_{b}", ",.0f")) for b in batches]
    cols += [("state_from_obs", lambda r: "yes" if r["state_from_obs"] else "no")]
    if args.measure_refs:
        cols.insert(8, ("random measured", num("random_measured")))
    print(markdown_table(rows, cols))


def cmd_data_build(args):
    from envs.datasets import build, build_tier

    if args.tier:
        if args.env or args.quality:
            raise UserError("give either --tier or --env/--quality, not both")
        build_tier(args.tier, seed=args.seed)
    else:
        if not (args.env and args.quality):
            raise UserError("data build needs --tier TIER, or --env ENV_ID and --quality LEVEL")
        build(args.env, args.quality, seed=args.seed, n_transitions=args.transitions,
              force=args.force)


def cmd_data_agent(args):
    import math

    from envs import registry
    from envs.datasets import behaviour

    env = registry.make(args.env)
    if env.env_id not in behaviour.RECIPES:
        raise UserError(f"{args.env} has no behaviour-agent recipe; envs with one: "
                        f"{', '.join(behaviour.RECIPES)}")
    recipe = behaviour.RECIPES[env.env_id]
    if (args.unscored_to or args.score_from) and isinstance(recipe, behaviour.SACRecipe):
        raise UserError(f"--unscored-to and --score-from are for PPO agents; {env.env_id}'s "
                        "recipe is SAC (its training resumes from a checkpoint instead)")
    if args.unscored_to and args.score_from:
        raise UserError("give --unscored-to (train here) or --score-from (score here), not both")
    if args.unscored_to:
        agent = behaviour.train_ppo(env, args.seed, unscored_to=Path(args.unscored_to))
        print(f"{behaviour.agent_path(Path(args.unscored_to), env.env_id, args.seed, recipe)}: "
              f"{len(agent.steps)} unscored snapshots; score them where the datasets are built "
              f"with `python -m bench data agent --env {env.env_id} --seed {args.seed} "
              "--score-from DIR`")
        return
    if args.score_from:
        agent = behaviour.score_agent(env, Path(args.score_from), args.seed)
        path = behaviour.save_agent(behaviour.REPO_AGENTS, agent, args.seed, recipe)
        print(f"{path} (and .json): {len(agent.steps)} snapshots scored here, best return "
              f"{max(agent.returns):.1f}; commit it, and rebuild the datasets with `python -m "
              "bench data build --force ...`")
        return
    committed = None if args.retrain else behaviour.load_agent(
        behaviour.REPO_AGENTS, env.env_id, args.seed, recipe)  # --retrain repairs a bad one
    if committed is not None and any(math.isnan(r) for r in committed.returns):
        path = behaviour.agent_path(behaviour.REPO_AGENTS, env.env_id, args.seed, recipe)
        raise UserError(f"{path} is committed unscored; score it with --score-from DIR, DIR the "
                        "folder --unscored-to wrote")
    if committed is not None:
        print(f"{behaviour.agent_path(behaviour.REPO_AGENTS, env.env_id, args.seed, recipe)} is "
              f"committed already (sha256 {committed.sha256[:12]}); --retrain replaces it")
        return
    agent = (behaviour.train_agent(env, args.seed, restart=True) if args.retrain
             else behaviour.trained_agent(env, args.seed))
    path = behaviour.save_agent(behaviour.REPO_AGENTS, agent, args.seed, recipe)
    behaviour.discard_training_state(env.env_id, args.seed)
    best = max(agent.returns)
    print(f"{path} (and .json): {len(agent.steps)} snapshots, best return {best:.1f} "
          f"(normalised {float(env.normalize(best)):.1f}); commit it so fresh clones build "
          "the same datasets, and rebuild them with `python -m bench data build --force ...`")


def cmd_data_subset(args):
    import shlex

    from bench import augment

    augment.make_subset(args.dataset, args.fraction, seed=args.seed, force=args.force,
                        command="python -m bench " + " ".join(shlex.quote(a) for a in args.argv),
                        log=lambda m: print(m, flush=True))


def cmd_data_list(args):
    from envs.datasets import list_datasets
    from envs.datasets.minari_io import datasets_root

    rows = list_datasets(verify=args.verify)
    if not rows:
        print(f"no datasets in {datasets_root()}; build them with "
              "`python -m bench data build --tier quick`")
        return
    print(markdown_table(rows, [("dataset id", lambda r: r["dataset_id"]),
                        ("env id", lambda r: str(r.get("env_id") or "-")),
                        ("transitions", num("transitions", ",d")),
                        ("episodes", num("episodes", ",d")),
                        ("behaviour return", num("behaviour_return")),
                        ("normalised score", num("normalized_score")),
                        ("content hash", lambda r: (r.get("content_hash") or "-")[:12]
                         + (" (verified)" if r.get("verified") else " (no stored hash)"
                            if args.verify and not r.get("error") else "")),
                        ("problem", lambda r: r.get("error", ""))]))
    bad = [r for r in rows if r.get("error")]
    print(f"\n(datasets in {datasets_root()}"
          + (f"; {len(bad)} cannot be trusted: delete and rebuild them" if bad else "")
          + ("" if args.verify else "; --verify checks every content hash") + ")")
    return 1 if bad and args.verify else 0  # a check that fails says so in its exit status


def cmd_speed(args):
    import shlex

    from bench import speed, sysinfo

    out = Path(args.out)
    if args.what == "policies":
        from bench import speed_policies as module

        measure, report = module.run_policies, module.markdown
    elif args.what == "planners":
        from bench import speed_planners as module

        measure, report = module.run_planners, module.markdown
    elif args.what == "synther":
        from bench import speed_synther as module

        measure, report = module.run_synther, module.markdown
    else:
        measure, report = speed.run_diffusion, speed.markdown
    kw, stem = {}, args.what
    if args.only:
        from algos.config import ConfigError

        if args.what != "planners":
            raise ConfigError("--only applies to `speed planners`")
        picked = tuple(g.strip() for g in args.only.split(",") if g.strip())
        if not picked or any(g not in module.GROUPS for g in picked):
            raise ConfigError(f"--only takes groups among {', '.join(module.GROUPS)}, got "
                              f"{args.only!r}")
        kw["only"], stem = picked, f"{args.what}-{'-'.join(picked)}"  # not the whole table
    rows, peaks, notes = measure(quick=args.quick, max_seed_seconds=args.max_seed_seconds,
                                 log=lambda m: print(m, file=sys.stderr, flush=True), **kw)
    hw, vers = sysinfo.hardware_line(), sysinfo.versions()
    command = "python -m bench " + " ".join(shlex.quote(a) for a in args.argv)
    md = report(rows, peaks, notes, hw, vers, command)
    sysinfo.atomic_write_text(out / f"{stem}.md", md)
    sysinfo.atomic_write_text(out / f"{stem}.csv", speed.csv_text(rows, peaks, hw, vers))
    print(md)
    print(f"(written to {out / stem}.md and .csv)")


def _source(args) -> str:
    """What a cell trains on: `--dataset`, or for an online algorithm `env:` + `--env`."""
    from bench.train import ONLINE_PREFIX

    if (args.dataset is None) == (args.env is None):
        raise UserError("give --dataset DATASET_ID (offline algorithms) or --env ENV_ID "
                        "(online ones), one of them")
    return args.dataset if args.env is None else ONLINE_PREFIX + args.env


def cmd_train(args):
    import shlex

    from bench import train

    train.run(args.algo, _source(args), args.seeds, steps=args.steps,
              overrides=train.parse_sets(args.set), out=Path(args.out), force=args.force,
              command="python -m bench " + " ".join(shlex.quote(a) for a in args.argv),
              log=lambda m: print(m, flush=True))


def cmd_evaluate(args):
    import shlex

    from bench import evaluate, train

    evaluate.evaluate(args.algo, _source(args), args.seeds, steps=args.steps,
                      overrides=train.parse_sets(args.set),
                      acting=train.parse_sets(args.act, "--act"),
                      episodes=args.episodes, out=Path(args.out), force=args.force,
                      tasks=args.tasks,
                      command="python -m bench " + " ".join(shlex.quote(a) for a in args.argv),
                      log=lambda m: print(m, flush=True))


def cmd_augment(args):
    import shlex

    from bench import augment, train

    augment.run(args.dataset, method=args.method, preset=args.preset,
                overrides=train.parse_sets(args.set), force=args.force,
                command="python -m bench " + " ".join(shlex.quote(a) for a in args.argv),
                log=lambda m: print(m, flush=True))


def cmd_fidelity(args):
    from bench import fidelity

    fidelity.run(args.dataset, out=Path(args.out), log=lambda m: print(m, flush=True))


def cmd_bandit(args):
    from bench import bandit

    bandit.run(seeds=args.seeds, steps=args.steps, out=Path(args.out),
               runs=Path(args.out) / "runs", force=args.force,
               log=lambda m: print(m, flush=True))
    print(f"(written to {Path(args.out) / 'bandit.md'}, bandit.csv and figures/)")


def cmd_sweep(args):
    from bench import sweep

    sw = sweep.load(args.sweep)  # checked whole before anything runs
    sweep.run(sw, runs=Path(args.runs), force=args.force, log=lambda m: print(m, flush=True))
    _tables(args, sw)


def _tables(args, sw):
    """The sweep's leaderboard and throughput tables, and the table of every run. A sweep
    none of whose cells has results keeps its leaderboard as it is."""
    from bench import leaderboard, runs_table, sysinfo

    out, runs = Path(args.out), Path(args.runs)
    written, md = [], None
    if any(r["status"] == "done" for r in leaderboard.collect(sw, runs)):
        md, written = leaderboard.write(sw, runs, out)
    rows = runs_table.summarise(runs_table.load_runs(runs))
    if runs_table.shown(rows):  # never an empty table over a real one
        written += [out / "policies.md", out / "policies.csv"]
        sysinfo.atomic_write_text(written[-2], runs_table.markdown(rows))
        sysinfo.atomic_write_text(written[-1], runs_table.csv_text(rows))
    print(md or f"(no cell of sweep {sw.name} has results in {runs}: its leaderboard is left "
                f"as it is; run `python -m bench sweep {sw.name}` to make it)")
    print(f"(written: {', '.join(str(p) for p in written)})")


def cmd_compare(args):
    from bench import compare, sysinfo

    for folder in (args.a, args.b):
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: no such folder of results files")
    rows = compare.pairs(Path(args.a), Path(args.b))
    if not rows:
        raise UserError(f"no cell has results in both {args.a} and {args.b}")
    md = compare.markdown(Path(args.a), Path(args.b), rows)
    if args.write:
        sysinfo.atomic_write_text(Path(args.write), md)
    print(md)


def cmd_claims(args):
    from bench import claims

    findings = claims.run(args.names or None, runs=Path(args.runs), out=Path(args.out),
                          log=lambda m: print(m, flush=True))
    for f in findings:
        print(f"{f.title}: {f.verdict}")
    print(f"(written to {Path(args.out) / 'claims.md'})")


def cmd_table(args):
    from bench import runs_table, sweep

    sw = sweep.load(args.sweep)
    if not runs_table.load_runs(Path(args.runs)):
        raise UserError(f"no results files in {args.runs}, so every table would be empty; "
                        f"nothing written (run `python -m bench sweep {sw.name}` first)")
    _tables(args, sw)


def _results_args(p):
    p.add_argument("--runs", default=str(RESULTS / "runs"), help="folder of results files")
    p.add_argument("--out", default=str(RESULTS), help="folder for the tables")


def parser():
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("envs", help="table of environments with measured steps/s")
    e.add_argument("--measure-refs", action="store_true",
                   help="also re-measure the random policy's return (1000 episodes)")
    e.add_argument("--ids", default="", help="comma-separated env ids (default: all)")
    e.add_argument("--batches", default="1,256",
                   help="comma-separated batch sizes to measure env-steps/s at")
    e.set_defaults(fn=cmd_envs)
    d = sub.add_parser("data", help="offline datasets").add_subparsers(dest="data_cmd",
                                                                       required=True)
    b = d.add_parser("build", help="build datasets (skips those already built)")
    b.add_argument("--env")
    b.add_argument("--quality")
    b.add_argument("--tier")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--transitions", type=int, default=None)
    b.add_argument("--force", action="store_true", help="rebuild even if it exists")
    b.set_defaults(fn=cmd_data_build)
    ls = d.add_parser("list", help="local datasets with size, behaviour score and content hash")
    ls.add_argument("--verify", action="store_true",
                    help="read every dataset and check its content hash (slower)")
    ls.set_defaults(fn=cmd_data_list)
    sb = d.add_parser("subset", help="keep a fraction of a dataset's episodes (whole, in a "
                      "seeded order) as its own dataset <id>-<pct>pct-v0")
    sb.add_argument("dataset")
    sb.add_argument("--fraction", type=float, required=True, help="e.g. 0.05 for 5%%")
    sb.add_argument("--seed", type=int, default=0)
    sb.add_argument("--force", action="store_true", help="remake it")
    sb.set_defaults(fn=cmd_data_subset)
    ag = d.add_parser("agent", help="train (or load) an env's behaviour agent (PPO or SAC) and "
                      "write it to envs/datasets/agents/, the copy a fresh clone builds "
                      "datasets from")
    ag.add_argument("--env", required=True)
    ag.add_argument("--seed", type=int, default=0)
    ag.add_argument("--retrain", action="store_true",
                    help="train again, from the start, even if the repo or this datasets root "
                    "has one")
    ag.add_argument("--unscored-to", metavar="DIR",
                    help="PPO only: train, writing the snapshots to DIR as they come, and "
                    "score none (a GPU machine trains; this one scores with --score-from)")
    ag.add_argument("--score-from", metavar="DIR",
                    help="PPO only: score the snapshots of the agent in DIR (from "
                    "--unscored-to) here, and write the agent to envs/datasets/agents/")
    ag.set_defaults(fn=cmd_data_agent)
    sp = sub.add_parser("speed", help="throughput benchmarks (compile cache off)")
    sp.add_argument("what", choices=["diffusion", "policies", "planners", "synther"])
    sp.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness only")
    sp.add_argument("--out", default=str(RESULTS / "speed"), help="folder for the .md and .csv")
    sp.add_argument("--only", default="", help="planners: comma-separated groups of rows "
                    "(train, plans, guided, decision, mpc)")
    sp.add_argument("--max-seed-seconds", type=float, default=60.0,
                    help="skip the 8-seed runs of a case whose 8 calls would exceed this")
    sp.set_defaults(fn=cmd_speed)
    from algos import ALGOS

    tr = sub.add_parser("train", help="train N seeds of one algorithm on one dataset, vmapped")
    tr.add_argument("--algo", required=True, help=f"one of: {', '.join(ALGOS)}")
    tr.add_argument("--dataset", help="e.g. jaxrl/pendulum/medium-expert-v0")
    tr.add_argument("--env", help="online algorithms (sac): the env to collect data in, e.g. "
                    "Pendulum-v1")
    tr.add_argument("--seeds", type=int, default=5)
    tr.add_argument("--steps", type=int, default=None, help="gradient steps (Config.steps)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a Config field (repeatable)")
    tr.add_argument("--out", default=str(ADHOC),
                    help="folder of results files (default .cache/runs: an ad-hoc run never "
                    "changes the published tables; --out results/runs publishes it)")
    tr.add_argument("--force", action="store_true",
                    help="retrain even if a results file or checkpoint exists")
    tr.set_defaults(fn=cmd_train)
    ev = sub.add_parser("evaluate", help="a trained cell acting under other settings (guide "
                        "scale, sampling steps, ...) from its checkpoint, without retraining")
    ev.add_argument("--algo", required=True, help=f"one of: {', '.join(ALGOS)}")
    ev.add_argument("--dataset", help="the dataset the cell trained on")
    ev.add_argument("--env", help="online algorithms: the env the cell trained in")
    ev.add_argument("--seeds", type=int, default=5, help="as trained")
    ev.add_argument("--steps", type=int, default=None, help="as trained (Config.steps)")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="as trained: the cell's own overrides (repeatable)")
    ev.add_argument("--act", action="append", metavar="KEY=VALUE",
                    help="an acting field to change, e.g. diffusion.steps=5 or "
                    "guide_scale=0 (repeatable; the algorithm's ACTING fields only)")
    ev.add_argument("--episodes", type=int, default=None,
                    help="evaluation episodes per seed (default: the cell's eval_episodes)")
    ev.add_argument("--tasks", default="default", metavar="default|sampled",
                    help="sampled: every episode draws its own task (Maze2D: a goal per "
                    "episode; for Diffuser, Multi2D), scored against the env id's "
                    "references; default: the env id's task")
    ev.add_argument("--out", default=str(EVALS),
                    help="folder of evaluation files (default .cache/evals; results/evals "
                    "for published figures)")
    ev.add_argument("--force", action="store_true", help="evaluate again even if the file "
                    "exists")
    ev.set_defaults(fn=cmd_evaluate)
    au = sub.add_parser("augment", help="upsample a dataset into a derived one: SynthER's "
                        "generated transitions, or Gaussian-noise perturbed copies")
    au.add_argument("dataset", help="a local dataset, e.g. jaxrl/pendulum/medium-replay-v0")
    au.add_argument("--method", default="synther", choices=("synther", "noise"))
    au.add_argument("--preset", default=None,
                    help="SynthER settings for the quick tier (quick); default: the authors'")
    au.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config field, e.g. size=200000 or diffusion.width=1024")
    au.add_argument("--force", action="store_true", help="remake the derived dataset")
    au.set_defaults(fn=cmd_augment)
    fi = sub.add_parser("fidelity", help="a derived dataset's dynamics error against the "
                        "simulator, beside its source's real transitions")
    fi.add_argument("dataset", help="a derived dataset (python -m bench augment ...)")
    fi.add_argument("--out", default=str(RESULTS / "fidelity"))
    fi.set_defaults(fn=cmd_fidelity)
    bd = sub.add_parser("bandit", help="the multi-modal bandit test bed: every method, "
                        "mode coverage and reward, figure")
    bd.add_argument("--seeds", type=int, default=None,
                    help="seeds per method (default: bench/sweeps/bandit.toml's)")
    bd.add_argument("--steps", type=int, default=None,
                    help="gradient steps per method (default: bench/sweeps/bandit.toml's)")
    bd.add_argument("--out", default=str(RESULTS), help="results folder")
    bd.add_argument("--force", action="store_true", help="retrain every method")
    bd.set_defaults(fn=cmd_bandit)
    sw = sub.add_parser("sweep", help="run a sweep's cells (skipping finished ones, resuming "
                        "interrupted ones), then write its leaderboard")
    sw.add_argument("sweep", nargs="?", default="quick",
                    help="a name under bench/sweeps/ (quick, medium, full, policies, ...) or a "
                    ".toml")
    _results_args(sw)
    sw.add_argument("--force", action="store_true", help="retrain every cell")
    sw.set_defaults(fn=cmd_sweep)
    # no abbreviated options here: `bench.jaxcache.avoid_known_crash` reads this command's
    # argv before argparse does, and knows only --runs and --out in full
    cl = sub.add_parser("claims", allow_abbrev=False,
                        help="run the survey-claim experiments (training what is missing) "
                        "and write results/claims.md")
    cl.add_argument("names", nargs="*", help="claims to run (default: all)")
    _results_args(cl)
    cl.set_defaults(fn=cmd_claims)
    cp = sub.add_parser("compare", help="the same cells from two results folders (another "
                        "machine, data build or code version), seed by seed")
    cp.add_argument("a", help="folder of results files (e.g. results/runs)")
    cp.add_argument("b", help="another folder of results files")
    cp.add_argument("--write", help="also write the table to this markdown file")
    cp.set_defaults(fn=cmd_compare)
    tb = sub.add_parser("table", help="rebuild a sweep's leaderboard and the table of every "
                        "run from the results files alone")
    tb.add_argument("--sweep", default="quick", help="which sweep's leaderboard")
    _results_args(tb)
    tb.set_defaults(fn=cmd_table)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    from algos.checkpoint import CheckpointError
    from algos.config import ConfigError
    from envs.core import EnvError
    from envs.datasets.minari_io import DatasetError

    t0 = time.time()
    try:
        check_args(args)
        if args.cmd != "speed":  # speed reports real compile times
            jaxcache.enable()
        if os.environ.get("DIFFRL_DISTRIBUTED"):  # one process per host; seeds shard over all
            import jax

            jax.distributed.initialize()
        rc = args.fn(args)
    except (UserError, EnvError, DatasetError, ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the environment gives (MINARI_DATASETS_PATH, ...) is unusable
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or type(e).__name__}{where}; check the path, its "
              "permissions and the free space (MINARI_DATASETS_PATH, DIFFRL_CHECKPOINTS, "
              "DIFFRL_JAX_CACHE, --out, --runs)", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; run fewer seeds or smaller sizes", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted after {time.time() - t0:.0f}s; rerun the same command to continue",
              file=sys.stderr)
        return 130
    return rc or 0
