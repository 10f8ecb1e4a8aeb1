"""Configs: the fields every offline algorithm shares, overrides from the CLI and sweep files
(dotted names reach nested sub-configs, `diffusion.sampler=ddim`), validation and hashing.

An override value is either a string (`--set k=v` on the command line: parsed to the field's
type) or an already-typed value (a sweep file's TOML: checked against the field's type, never
turned into a string and back). Every problem is one `ConfigError` line naming the field and
the valid choices.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from typing import Any, Dict, Mapping


class ConfigError(ValueError):
    """A malformed `--set` override or Config value (printed as one line by the CLI)."""


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Fields every offline algorithm has; each algorithm's Config extends it."""
    steps: int = 100_000          # gradient steps
    batch_size: int = 256
    eval_every: int = 5_000       # gradient steps between evaluations
    eval_episodes: int = 10
    discount: float = 0.99
    normalize_obs: bool = False   # standardise observations with the dataset's statistics
    reward_scale: str = "none"    # "none", or "iql": r * L / (max - min episode return)


# --- parsing ------------------------------------------------------------------------------
def _type_name(typ) -> str:
    if typing.get_origin(typ) is tuple:
        return f"comma-separated {_type_name(typing.get_args(typ)[0])}s"
    return getattr(typ, "__name__", str(typ))


def _parse_str(value: str, typ, name: str):
    try:
        if typ is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        if typ is float:
            return float(value)
        if typ is str:
            return value
        if typing.get_origin(typ) is tuple:
            (inner, *_) = typing.get_args(typ)
            parts = [p for p in value.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(_parse_str(p.strip(), inner, name) for p in parts)
    except (ValueError, OverflowError):
        pass
    raise ConfigError(f"--set {name}={value!r}: expected {_type_name(typ)}")


def _check_typed(value, typ, name: str):
    """A typed value (from TOML) for a field of type `typ`; ints go into floats, lists into
    tuples, nothing else is converted."""
    bad = ConfigError(f"{name} = {value!r}: expected {_type_name(typ)}")
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if typ is str:
        if isinstance(value, str):
            return value
        raise bad
    if typing.get_origin(typ) is tuple:
        if isinstance(value, (list, tuple)):
            (inner, *_) = typing.get_args(typ)
            return tuple(_check_typed(v, inner, name) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (_check_typed(value, typing.get_args(typ)[0], name),)
        raise bad
    raise bad


def field_types(config_cls) -> Dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _set(config, name: str, value, full: str, typed: bool):
    """`config` with the (possibly dotted) field `name` set to `value`."""
    head, _, rest = name.partition(".")
    types = field_types(type(config))
    if head not in types:
        where = full[: len(full) - len(name)].rstrip(".")
        owner = where or type(config).__module__.rsplit(".", 1)[-1]
        raise ConfigError(f"unknown config field {full!r}; valid fields of {owner}: "
                          f"{', '.join(types)}")
    typ = types[head]
    if rest:
        sub = getattr(config, head)
        if not dataclasses.is_dataclass(sub):
            raise ConfigError(f"config field {head!r} has no sub-fields (got {full!r})")
        return dataclasses.replace(config, **{head: _set(sub, rest, value, full, typed)})
    if dataclasses.is_dataclass(typ):
        raise ConfigError(f"{full!r} is a group of fields; set one of them, e.g. "
                          f"{full}.{dataclasses.fields(typ)[0].name}=...")
    parsed = _parse_str(value, typ, full) if isinstance(value, str) and typ is not str \
        and not typed else _check_typed(value, typ, full)
    return dataclasses.replace(config, **{head: parsed})


def apply_overrides(config, overrides: Mapping[str, Any], typed: bool = False):
    """A copy of `config` with `{dotted field: value}` applied, then validated. Strings are
    parsed to each field's type (`--set`), other values checked against it; `typed=True`
    (sweep files) parses nothing: a string is only a value for a string field."""
    for name, value in overrides.items():
        config = _set(config, name, value, name, typed)
    validate(config)
    return config


def flatten(table: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """`{"diffusion": {"sampler": "ddim"}}` -> `{"diffusion.sampler": "ddim"}` (TOML tables)."""
    out: Dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


FLOAT32_MAX = 3.4028234663852886e38   # numbers go into float32 and int32 arrays
INT32_MAX = 2 ** 31 - 1


def _check_numbers(config, prefix=""):
    """Every float finite in float32, every int within int32, every tuple entry a positive
    size: a number that overflows on the device would train on inf or NaN."""
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            _check_numbers(v, f"{name}.")
        elif isinstance(v, float) and not (math.isfinite(v) and abs(v) <= FLOAT32_MAX):
            raise ConfigError(f"{name} must be finite in float32 (|x| <= 3.4e38), got {v}")
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT32_MAX:
            raise ConfigError(f"{name} must fit in int32 (|x| <= {INT32_MAX:,d}), got {v}")
        elif isinstance(v, tuple) and any(isinstance(x, int) and not 0 < x <= INT32_MAX
                                          for x in v):
            raise ConfigError(f"{name} must hold positive sizes, got {v}")


def validate(config):
    """Cross-field checks shared by every Config; algorithms add their own in `check`, a
    nested sub-config in its own `check`. A config that is not a `BaseConfig` (a data
    generator's, `algos.synther.Config`) gets the number, sub-config and own checks."""
    if isinstance(config, BaseConfig):
        _validate_base(config)
    _check_numbers(config)
    for f in dataclasses.fields(config):
        sub = getattr(config, f.name)
        if dataclasses.is_dataclass(sub):   # nested sub-configs, their own checks included
            try:
                validate(sub)
            except ConfigError as e:
                raise ConfigError(f"{f.name}.{e}") from None
    check = getattr(config, "check", None)
    if check is not None:
        check()


def _validate_base(config):
    if config.steps <= 0 or config.eval_every <= 0 or config.batch_size <= 0:
        raise ConfigError("steps, eval_every and batch_size must be positive")
    if config.eval_episodes <= 0:
        raise ConfigError(f"eval_episodes must be at least 1, got {config.eval_episodes}")
    if config.steps % config.eval_every:
        raise ConfigError(f"steps ({config.steps}) must be a multiple of eval_every "
                          f"({config.eval_every}); set both with --set")
    if not 0.0 <= config.discount <= 1.0:
        raise ConfigError(f"discount must be in [0, 1], got {config.discount}")
    if config.reward_scale not in ("none", "iql"):
        raise ConfigError(f"reward_scale must be 'none' or 'iql', got {config.reward_scale!r}")


def _plain(x):
    """`dataclasses.asdict` for the field types configs hold (numbers, strings, tuples, lists,
    nested dataclasses), leaving out the fields a dataclass lists in its `ADDED_LATER` class
    variable while they have the value from before they were added: a field added after
    results were published (DiffusionSpec's `attention`, wherever a config holds one: SynthER's
    generator inside `sac_synther` too) is then not recorded at that value, so the published
    results files (their config, the hash that names them, a derived dataset's key) still
    match the configs that made them. Set to anything else, it is recorded and hashed."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        later = getattr(type(x), "ADDED_LATER", {})
        out = {}
        for f in dataclasses.fields(x):
            v = getattr(x, f.name)
            if f.name in later and type(v) is type(later[f.name]) and v == later[f.name]:
                continue
            out[f.name] = _plain(v)
        return out
    if isinstance(x, tuple) and hasattr(x, "_fields"):          # a namedtuple
        return type(x)(*[_plain(v) for v in x])
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return type(x)((_plain(k), _plain(v)) for k, v in x.items())
    return x


def config_dict(config) -> dict:
    return {"algo": type(config).__module__.rsplit(".", 1)[-1], **_plain(config)}


def config_hash(config) -> str:
    """Eight hex digits that change whenever any field of the config changes."""
    text = json.dumps(config_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
