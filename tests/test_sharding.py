"""Seeds sharded over several devices give the results of the single-device run.

The sharded run happens in a subprocess that sees 4 CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`); this process has one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from bench import train as bench_train
from envs import datasets

BANDIT = "jaxrl/bandit/multimodal-v0"
SETS = {"eval_every": "3", "eval_episodes": "2", "diffusion.width": "32",
        "diffusion.depth": "2", "batch_size": "32"}
ROOT = Path(__file__).resolve().parent.parent


def test_seeds_sharded_over_four_devices_equal_the_single_device_run(tmp_path):
    datasets.build("bandit-2d", "multimodal", log=lambda m: None)
    assert jax.device_count() == 1
    assert bench_train.seed_sharding(4) is None
    single = bench_train.run("diffusion_bc", BANDIT, 4, steps=6, overrides=SETS,
                             out=tmp_path / "one", checkpoints=tmp_path / "ckpt1",
                             log=lambda m: None)

    script = (
        "import jax, json, sys\n"
        "from bench import jaxcache, train\n"
        "jaxcache.enable()\n"
        "assert jax.device_count() == 4\n"
        "logs = []\n"
        f"r = train.run('diffusion_bc', {BANDIT!r}, 4, steps=6, overrides={SETS!r},\n"
        f"              out={str(tmp_path / 'four')!r}, checkpoints={str(tmp_path / 'ckpt4')!r},\n"
        "              log=logs.append)\n"
        "print(json.dumps({'logs': logs, 'devices': r['hardware']['device_count']}))\n")
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    assert any("sharded over 4 devices (1 each)" in m for m in out["logs"]), out["logs"]
    four = json.loads(next((tmp_path / "four").rglob("*.json")).read_text())
    np.testing.assert_allclose([r["score"] for r in four["rows"]],
                               [r["score"] for r in single["rows"]], rtol=1e-4, atol=1e-4)
    assert [r["seed"] for r in four["rows"]] == [r["seed"] for r in single["rows"]]


def test_sharding_uses_the_most_devices_that_divide_the_seeds(monkeypatch):
    fake = [jax.devices()[0]] * 4
    monkeypatch.setattr(jax, "devices", lambda *a: fake)
    assert bench_train.seed_sharding(8).mesh.size == 4
    assert bench_train.seed_sharding(6).mesh.size == 3
    assert bench_train.seed_sharding(5) is None
