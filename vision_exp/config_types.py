"""Config values checked against the annotations of what they configure.

A string where a number belongs (`data.batch_size=abc`, `optimizer.lr=fast`) would otherwise fail deep
inside torch or a comparison, with a message that names no key; a misspelt key would fail as Python's
"unexpected keyword argument". Both become one message naming the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from vision_exp.errors import ConfigError


def parameter_types(target: Callable) -> dict:
    """{parameter: annotation} of a dataclass, a class's constructor or a function; {} when they cannot be read."""
    function = target if dataclasses.is_dataclass(target) else target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # annotations naming what cannot be imported here: no check rather than no run
        return {}


def conforms(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        return any(conforms(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:  # nan passes every `x <= 0` check, and inf makes a count of steps overflow
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected is str:
        return isinstance(value, str)
    if expected in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(expected)
        if origin is tuple and args and Ellipsis not in args:  # tuple[X, Y]: a kind per place
            return len(value) == len(args) and all(conforms(item, kind) for item, kind in zip(value, args))
        return not args or all(conforms(item, args[0]) for item in value)  # list[X], tuple[X, ...]
    if expected is dict or origin is dict:
        return isinstance(value, dict)
    return True  # Any, classes, callables: not a value a command line gives


def describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(option) for option in typing.get_args(expected)))
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number", str: "a name",
             list: "a list", tuple: "a list", dict: "a mapping"}
    return names.get(origin or expected, getattr(expected, "__name__", str(expected)))


def check_types(values: dict, annotations: dict, section: str) -> None:
    for key, value in values.items():
        expected = annotations.get(key)
        if expected is not None and not conforms(value, expected):
            raise ConfigError(f"{section}.{key}={value!r} must be {describe(expected)}")


COUNTS = {2: "two", 3: "three"}


def fixed_numbers(key: str, value: Any, count: int, rule: str = "",
                  valid: Callable[[tuple], bool] = lambda v: True) -> tuple:
    """`value` as a tuple of `count` finite numbers that pass `valid`, else one message naming `key`: a list of
    another length, or with a name in it, would fail later as an IndexError or TypeError that names no key."""
    if isinstance(value, ListConfig):  # a dataclass built from a config node by hand, not through `typed`
        value = OmegaConf.to_container(value, resolve=True)
    if not (isinstance(value, (list, tuple)) and len(value) == count
            and all(isinstance(item, numbers.Real) and not isinstance(item, bool) and math.isfinite(item) for item in value)
            and valid(tuple(value))):
        shown = list(value) if isinstance(value, (list, tuple)) else repr(value)
        raise ConfigError(f"{key}={shown} must be {COUNTS[count]} numbers{rule}")
    return tuple(float(item) for item in value)


def nearest(name: str, candidates: typing.Iterable) -> list:
    """The candidates nearest to `name` by difflib's ratio (0.6 or more, as its get_close_matches), every one of
    them on a tie: `vit_v9` is as near vit_v1 as vit_v3, where get_close_matches would name the last alone."""
    scored = [(difflib.SequenceMatcher(None, candidate, name).ratio(), candidate) for candidate in candidates]
    best = max((score for score, _ in scored), default=0.0)
    return [candidate for score, candidate in scored if score == best >= 0.6]


def either(words: list) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))


def check_known_keys(values: dict, known: typing.Iterable, section: str, owner: str = "") -> None:
    """`section` "" for the top level of a config."""
    known = list(known)
    prefix = f"{section}." if section else ""
    for key in values:
        if key not in known:
            close = [f"{prefix}{name}" for name in nearest(key, known)]
            given = key
            if not section and isinstance(values[key], Mapping) and values[key]:  # `+trainr.epochz=3`: trainer.epochs
                path = first_setting(values[key])
                meant = [f"{name}.{setting}" for name in close if isinstance(values.get(name), Mapping)
                         for setting in near_setting(path, values[name])]
                if meant:
                    given, close = f"{key}.{path}", meant
            if not close and not section:  # `+lr=0.1`: a setting of one of the sections
                close = [f"{name}.{key}" for name in known if isinstance(values.get(name), Mapping) and key in values[name]]
            hint = f" (did you mean {either(close)}?)" if close else ""
            raise ConfigError(f"{prefix}{given} is not a setting{f' of {owner}' if owner else ''}{hint}")


def first_setting(section: Mapping) -> str:
    """The dotted path of the first value in `section` (`{'epochs': 3}`: epochs), the one an override set."""
    key, value = next(iter(section.items()))
    return f"{key}.{first_setting(value)}" if isinstance(value, Mapping) and value else key


def near_setting(path: str, section: Mapping) -> list:
    """The settings of `section` that `path` names, each misspelt key replaced by its nearest (`epochz`:
    epochs); none where a key has none near, or where `path` goes on below a value."""
    head, dot, tail = path.partition(".")
    names = [head] if head in section else nearest(head, section)
    if not dot:
        return names
    return [f"{name}.{rest}" for name in names if isinstance(section[name], Mapping)
            for rest in near_setting(tail, section[name])]


def misspelt_override(composition_error: Exception, keys: typing.Sequence[str] = ()) -> Optional[ConfigError]:
    """Hydra's refusal of a name the configs lack as one line naming the nearest: a key (`trainer.epoch=3`: Hydra
    advises `+trainer.epoch=3`, which the run then refuses) or an option of a group (`model=vit_v9`: Hydra lists
    the options over a dozen lines, then its search path). `keys`, the overrides' keys, name a setting the config
    has under a section it lacks (vx-evaluate's `trainer.device=cpu` or `trainer.dvice=cpu`: `device`), which
    Hydra's error leaves out, and the settings meant under a misspelt section (`trainr.epochz=3`: trainer.epochs).
    None for any other composition error."""
    from hydra.errors import HydraException, MissingConfigException

    if isinstance(composition_error, MissingConfigException) and composition_error.options:
        group, _, name = composition_error.missing_cfg_file.rpartition("/")
        close = nearest(name, composition_error.options)
        hint = f" (did you mean {either(close)}?)" if close else ""
        return ConfigError(f"{group}={name} is not an option{hint}: {group} is one of "
                           f"{', '.join(composition_error.options)}")
    missing = composition_error.__cause__
    if not (isinstance(composition_error, HydraException)
            and isinstance(missing, (ConfigAttributeError, ConfigKeyError)) and missing.full_key
            and isinstance(getattr(missing, "parent_node", None), DictConfig)):
        return None
    section, _, key = missing.full_key.rpartition(".")
    values = OmegaConf.to_container(missing.parent_node, resolve=False)
    prefix = f"{section}." if section else ""
    sections = [name for name in nearest(key, values) if isinstance(values[name], Mapping)]
    for given in keys:
        if not given.startswith(f"{missing.full_key}."):
            continue
        rest = given[len(missing.full_key) + 1:]
        if rest.partition(".")[0] in values or not sections:  # vx-evaluate's `trainer.device`, `trainer.dvice`: device
            names = near_setting(rest, values)
        else:  # `trainr.epochz`: trainer.epochs, not trainer
            names = [f"{name}.{setting}" for name in sections for setting in near_setting(rest, values[name])]
        if names:
            return ConfigError(f"{given} is not a setting (did you mean {either([prefix + name for name in names])}?)")
    try:
        check_known_keys({**values, key: None}, values, section)
    except ConfigError as exc:
        return exc
    return None


# Groups whose files are `# @package _global_`: they set other sections' values and add no key of their own.
GLOBAL_GROUPS = ("hydra", "env", "experiment", "enhancement", "debug")


def declared_settings(config_name: str) -> tuple:
    """The top-level settings `conf/<config_name>.yaml` declares: its own keys and the packages of its groups.
    Hydra lets `+key=value` add any other, which a run would otherwise ignore."""
    from vision_exp.conf_dir import CONF_DIR

    primary = OmegaConf.load(CONF_DIR / f"{config_name}.yaml")
    groups = [name for entry in primary.get("defaults", []) if not isinstance(entry, str) for name in entry]
    own = [key for key in primary if key not in ("defaults", "hydra")]
    return tuple(own + [group for group in groups if group not in GLOBAL_GROUPS])


def check_arguments(target: Callable, values: dict, section: str) -> None:
    """The keys and types of `values`, the keyword arguments a config passes to `target`."""
    parameters = inspect.signature(target).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        # A model's class is worth naming: e.g. a ViT enhancement composed onto the ResNet
        owner = target.__name__ if inspect.isclass(target) and not dataclasses.is_dataclass(target) else ""
        check_known_keys(values, [name for name in parameters if name != "self"], section, owner)
    check_types(values, parameter_types(target), section)


def plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def typed(cls, node, section: str):
    """A config section as a dataclass; an unknown key or a value of the wrong type is one clear message, and
    so is a value that fails in the dataclass's own code before a check of its own catches it."""
    values = plain(node)
    check_arguments(cls, values, section)
    try:
        return cls(**values)
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{section}: a value cannot be used ({type(exc).__name__}: {exc})") from exc
