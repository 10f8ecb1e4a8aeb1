"""Random `--set` values and random sweep files thrown at the validators (property-based, with
hypothesis): the only outcomes allowed are a valid config or one line of `ConfigError` (exit 2
at the command line). Nothing here compiles, so a few hundred examples take seconds."""
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import algos
from algos.config import ConfigError, flatten
from bench import sweep
from bench import train as bench_train
from bench.cli import main as cli

BANDIT = "jaxrl/bandit/multimodal-v0"
FIELDS = sorted({k for a in algos.ALGOS for k in flatten(
    __import__("dataclasses").asdict(algos.get(a).Config()))})
NAMES = st.one_of(st.sampled_from(FIELDS), st.text("abcdefgh_.", min_size=1, max_size=12))
SCALARS = st.one_of(
    st.integers(-(10 ** 12), 10 ** 12), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=10),
    st.lists(st.integers(-3, 600), max_size=4))
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_config_or_one_line(make):
    try:
        config = make()
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
        return None
    return config


def _as_cli_string(v):
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


@SETTINGS
@given(algo=st.sampled_from(list(algos.ALGOS)),
       sets=st.dictionaries(NAMES, SCALARS, max_size=3))
def test_random_set_values_give_a_config_or_one_line(algo, sets):
    config = _only_config_or_one_line(lambda: bench_train.make_config(
        algo, None, {k: _as_cli_string(v) for k, v in sets.items()}, BANDIT))
    if config is not None:  # what passed is a config every check accepts, with finite numbers
        config.check() if hasattr(config, "check") else None
        for k, v in flatten(__import__("dataclasses").asdict(config)).items():
            if isinstance(v, float):
                assert math.isfinite(v), (k, v)


@SETTINGS
@given(algo=st.sampled_from(list(algos.ALGOS)),
       sets=st.dictionaries(NAMES, SCALARS, max_size=3))
def test_random_typed_values_give_a_config_or_one_line(algo, sets):
    typed = {k: tuple(v) if isinstance(v, list) else v for k, v in sets.items()}
    _only_config_or_one_line(lambda: bench_train.make_config(algo, None, typed, BANDIT,
                                                             typed=True))


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


GROUP = st.fixed_dictionaries(
    {"algos": st.one_of(st.lists(st.sampled_from(list(algos.ALGOS) + ["nope"]), min_size=0,
                                 max_size=2), SCALARS),
     "datasets": st.one_of(st.just([BANDIT]), st.lists(st.text(max_size=8), max_size=2),
                           SCALARS),
     "seeds": st.one_of(st.integers(-2, 6), SCALARS),
     "steps": st.one_of(st.integers(-2, 50), SCALARS)},
    optional={"set": st.one_of(st.dictionaries(NAMES, SCALARS, max_size=3), SCALARS),
              "label": SCALARS, "extra": SCALARS})
DOC = st.fixed_dictionaries(
    {}, optional={"description": SCALARS, "data_tier": st.one_of(st.just("quick"), SCALARS),
                  "include": st.one_of(st.lists(st.sampled_from(["bandit", "nope"]),
                                                max_size=2), SCALARS),
                  "leaderboard": st.one_of(st.fixed_dictionaries(
                      {"compare": st.lists(st.lists(st.text(max_size=6), max_size=3),
                                           max_size=2)}), SCALARS),
                  "junk": SCALARS})


def _sweep_text(doc, groups, garbage):
    lines = [f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items() if k != "leaderboard"]
    for g in groups:
        lines += ["[[group]]"] + [f"{json.dumps(k)} = {_toml(v)}" for k, v in g.items()]
    if "leaderboard" in doc:
        board = doc["leaderboard"]
        lines += (["[leaderboard]"] + [f"{json.dumps(k)} = {_toml(v)}" for k, v in board.items()]
                  if isinstance(board, dict) else [f"leaderboard = {_toml(board)}"])
    return "\n".join(lines) + ("\n" + garbage if garbage else "") + "\n"


@SETTINGS
@given(doc=DOC, groups=st.lists(GROUP, max_size=2), garbage=st.text(max_size=20))
def test_random_sweep_files_load_or_fail_with_one_line(tmp_path, doc, groups, garbage):
    path = tmp_path / "random.toml"
    path.write_text(_sweep_text(doc, groups, garbage))
    _only_config_or_one_line(lambda: sweep.load(path))


@pytest.mark.parametrize("sets", [["steps=1e400"], ["lr=nan"], ["diffusion.T=0"],
                                  ["hidden=0,4"], ["eval_episodes=-1"], ["batch_size=10000"]])
def test_the_command_line_says_the_same_in_one_line_with_exit_2(sets, tmp_path, capsys):
    argv = ["train", "--algo", "diffusion_bc", "--dataset", BANDIT, "--seeds", "1",
            "--out", str(tmp_path)]
    for s in sets:
        argv += ["--set", s]
    from envs import datasets

    datasets.build("bandit-2d", "multimodal", log=lambda m: None)
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert not list(tmp_path.rglob("*.json"))
