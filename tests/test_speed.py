"""`python -m bench speed diffusion --quick`: every workload and case is measured and reported."""
import pandas as pd
import pytest

from bench import cli, speed


@pytest.mark.slow
def test_speed_diffusion_quick_writes_markdown_and_csv(tmp_path, capsys):
    """~50 s of compiles on 2 cores: `make test-slow` (the CLI's files are checked by default
    through `speed planners --only mpc`)."""
    assert cli.main(["speed", "diffusion", "--quick", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "diffusion.md").read_text()
    assert "matmul peak" in md and "speed diffusion --quick" in md and "before the workloads" in md
    rows = pd.read_csv(tmp_path / "diffusion.csv")
    wls = speed.workloads(quick=True)
    expected = sum(1 + sum(1 + 2 * s.seeds for s in wl.samplers) + 2 for wl in wls)
    assert len(rows) == expected and md.count("\n| ") == expected + 1
    for wl in wls:
        got = rows[(rows.workload == wl.name) & (rows.case == "train step")]
        assert sorted(got.seeds) == ["1", "8 sequential", "8 vmapped"]
    assert (rows.throughput > 0).all() and (rows.ms_per_call > 0).all()
    assert (rows.compile_s > 0).all() and (rows.gflops.dropna() > 0).all()
    assert rows.gflops.notna().all(), "every case should have an XLA FLOP count"
    # The vmapped row carries the speed-up over the same seeds run one after another.
    vm = rows[rows.seeds == "8 vmapped"]
    assert vm.speedup.notna().all() and (vm.speedup > 0).all()
    assert rows.hardware.nunique() == 1 and rows.matmul_peak_gflops.iloc[0] > 0
    assert "written to" in capsys.readouterr().out


@pytest.mark.slow
def test_speed_planners_quick_measures_every_case(tmp_path):
    """~50 s of U-Net and sampler compiles on 2 cores: `make test-slow`."""
    assert cli.main(["speed", "planners", "--quick", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "planners.md").read_text()
    assert md.startswith("# Planner speed") and "speed planners --quick" in md
    rows = pd.read_csv(tmp_path / "planners.csv")
    assert sorted(rows[rows.case == "grad steps"].seeds) == ["1", "8 sequential", "8 vmapped"]
    assert set(rows.case) == {"grad steps", "plans", "decision"}
    assert set(rows[rows.case == "plans"].unit) == {"plans/s"}
    assert rows.workload.str.startswith("Diffuser, value-guided").sum() == 1
    assert rows.workload.str.startswith("Decision Diffuser").sum() == 2
    assert (rows.throughput > 0).all() and (rows.ms_per_call > 0).all()


def test_speed_planners_only_measures_the_named_groups(tmp_path, capsys):
    """`--only` measures some groups into their own files (the whole table stays); a group
    that does not exist, or `--only` on another benchmark, is one line and exit 2."""
    assert cli.main(["speed", "planners", "--quick", "--only", "mpc", "--out",
                     str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "planners-mpc.csv")
    assert set(rows.case) == {"decision"} and rows.workload.str.startswith("MPC").all()
    assert not (tmp_path / "planners.md").exists()
    capsys.readouterr()
    for argv in (["speed", "planners", "--only", "mpc,nope"],
                 ["speed", "diffusion", "--only", "mpc"]):
        assert cli.main(argv + ["--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--only" in err[0], err


def test_speed_synther_quick_measures_training_and_generation(tmp_path):
    assert cli.main(["speed", "synther", "--quick", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "synther.md").read_text()
    assert md.startswith("# SynthER speed") and "speed synther --quick" in md
    rows = pd.read_csv(tmp_path / "synther.csv")
    assert set(rows.unit) == {"steps/s", "transitions/s"}
    assert (rows.throughput > 0).all() and (rows.ms_per_call > 0).all()


@pytest.mark.slow
def test_speed_seeds_writes_every_row_and_times_the_decision_compiled(tmp_path, monkeypatch):
    """~40 s of Diffusion-QL compiles on 2 cores: `make test-slow`. The decision is timed on
    a program compiled beforehand: the timer returns a warm-up of 5 s or more as the time, so
    a compile inside the warm-up was once reported as a 6 s decision (H200)."""
    import json

    from bench import speed_seeds

    compiles = []
    real = speed.compile_fn

    def counting(fn, *args):
        compiles.append(len(args))
        return real(fn, *args)

    monkeypatch.setattr(speed, "compile_fn", counting)
    out = tmp_path / "seeds.json"
    speed_seeds.main(["--seeds", "1,2", "--steps", "2", "--algos", "diffusion_ql",
                      "--out", str(out)])
    rows = json.loads(out.read_text())
    train = [r for r in rows if "seeds" in r]
    assert [r["seeds"] for r in train] == [1, 2] and train[0]["vs_first"] == 1.0
    assert all(r["seed_steps_per_s"] > 0 and r["compile_s"] > 0 for r in train)
    (decision,) = [r for r in rows if "decision_ms" in r]
    assert decision["decision_ms"] > 0 and decision["candidates"] == 50
    assert compiles == [2, 2, 3], "two training programs and the decision, each compiled first"
