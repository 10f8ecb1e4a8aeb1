"""Algorithms, pure-functional JAX, one module each.

An algorithm module is found by its `LABEL` (the name the tables print) and provides:

    Config                       frozen dataclass (extends `algos.config.BaseConfig`)
    make_train(config, data, env) -> train(key)     (`algos.loop.Train`)
    make_policy(config, env_spec) -> Policy         (`algos.loop.Policy`: init_carry, act)
    ORDER                        its place in tables
    TINY                         `--set` overrides that make it tiny (tests, `--quick` speed)
    KIND                         optional: "policy" (the default: acts from the observation,
                                 trains on transitions), "planner" (generates trajectories,
                                 trains on whole episodes) or "online" (collects its own data
                                 in the env: `make_train(config, None, env)`); `POLICIES`,
                                 `PLANNERS` and `ONLINE` split them
    task_defaults(dataset_id)    optional: the paper's per-task settings for a dataset
    ACTING                       optional: the Config fields (dotted in sub-configs) that change
                                 only how a trained state acts, never its training, e.g.
                                 guidance scale or sampling steps: `bench evaluate --act` may
                                 change them on a finished cell (`acting_fields`)

Adding an algorithm is adding such a module: the CLI, sweeps, tables, speed benchmark and
tests find it here (`ALGOS`, `get`, `label`).
"""
import functools
import importlib
import pkgutil


@functools.lru_cache(maxsize=None)
def _registry():
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "LABEL") and hasattr(module, "make_train"):
            found.append(module)
    found.sort(key=lambda m: (m.ORDER, m.__name__))
    return {m.__name__.rsplit(".", 1)[-1]: m for m in found}


def kind(name: str) -> str:
    """`"policy"`, `"planner"` or `"online"` (see the module docstring)."""
    return getattr(get(name), "KIND", "policy")


def __getattr__(name):
    if name == "ALGOS":
        return tuple(_registry())
    kinds = {"POLICIES": "policy", "PLANNERS": "planner", "ONLINE": "online"}
    if name in kinds:
        return tuple(a for a in _registry() if kind(a) == kinds[name])
    raise AttributeError(name)


def acting_fields(name: str) -> tuple:
    """The fields `python -m bench evaluate --act` may change on a trained cell of `name`
    (its module's `ACTING`; none for an algorithm that acts by one fixed rule)."""
    return tuple(getattr(get(name), "ACTING", ()))


def get(name: str):
    """The module of algorithm `name` (one-line error listing the known ones)."""
    from algos.config import ConfigError

    if name not in _registry():
        raise ConfigError(f"unknown algorithm {name!r}; algorithms: {', '.join(_registry())}")
    return _registry()[name]


def label(name: str) -> str:
    """The algorithm's name in tables, e.g. `diffusion_ql` -> `Diffusion-QL`."""
    return get(name).LABEL


def task_defaults(name: str, dataset_id: str) -> dict:
    """The algorithm's per-task settings for `dataset_id` (empty when it has none)."""
    fn = getattr(get(name), "task_defaults", None)
    return dict(fn(dataset_id)) if fn is not None else {}
