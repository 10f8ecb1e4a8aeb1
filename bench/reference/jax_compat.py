"""`python bench/reference/jax_compat.py ARGS` runs `python -m bench ARGS` under a JAX newer
than this repository's pin, as a GPU machine's own image has (jax 0.11.2 on the machines lent
here): brax.training 0.14.2's PPO still calls `jax.device_put_replicated`, which jax 0.10
removed. For one device the replacement is the array with a leading axis of one. The pinned
stack (`make setup`) needs none of this; only the device runs of `bench/reference/
device_mujoco.sh` use it.
"""
import os
import runpy
import sys

import jax
import numpy as np

if not hasattr(jax, "device_put_replicated"):
    def device_put_replicated(x, devices):
        return jax.tree.map(
            lambda a: jax.device_put(np.stack([np.asarray(a)] * len(devices)), devices[0]), x)

    jax.device_put_replicated = device_put_replicated

sys.path.insert(0, os.getcwd())
sys.argv = ["bench"] + sys.argv[1:]
runpy.run_module("bench", run_name="__main__", alter_sys=True)
