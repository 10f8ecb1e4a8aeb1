"""Algorithms, pure-functional JAX. Each module exposes `Config`, `make_train(config, dataset,
env) -> train(key)` and `make_act(config) -> act(state, obs, key)`; `ALGOS` names them."""
import importlib

ALGOS = ("bc", "td3_bc", "iql", "diffusion_bc", "diffusion_ql", "idql")


def get(name: str):
    """The module of algorithm `name` (one-line error listing the known ones)."""
    from algos.common import ConfigError

    if name not in ALGOS:
        raise ConfigError(f"unknown algorithm {name!r}; algorithms: {', '.join(ALGOS)}")
    return importlib.import_module(f"algos.{name}")
