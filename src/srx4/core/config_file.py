"""Recipes: a TOML file of a dataclass config's settings, read with Python's own tomllib.

    # configs/demo.toml
    [model]
    model = "srresnet"
    num_blocks = 4          # or num-blocks: the flag's name, with dashes or underscores

    values, digest = read_config_file("configs/demo.toml", TrainConfig)

A key is any field of the config class (the flag without its dashes), at the top level
or under a section heading naming the group the field belongs to (each field's
`group`, srx4.core.cli.option). Every problem is one FlagError naming the file and the
key: an unreadable file, bad TOML, a key that is no setting (with the nearest one), a
key under another group's heading, a value of the wrong type or not among the choices.
Range checks are the config class's own (TrainConfig.problems).
"""
import dataclasses
import difflib
import hashlib
import typing
from pathlib import Path

from srx4.core.errors import FlagError, MissingData

TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def toml_reader():
    try:
        import tomllib                     # Python 3.11+
        return tomllib
    except ImportError:                    # Python 3.10 (requirements.txt brings tomli there)
        try:
            import tomli
        except ImportError:
            raise FlagError("reading a recipe (--config) needs Python 3.11 or later, or `pip install tomli`") from None
        return tomli


def field_groups(config_class) -> dict:
    """Field name -> its group (metadata "group"; "" when it has none)."""
    return {f.name: f.metadata.get("group", "") for f in dataclasses.fields(config_class)}


def read_config_file(path, config_class, refused=("config",)) -> tuple:
    """(values by field name, sha256 of the file's bytes) of a recipe for `config_class`.
    `refused`: fields a file may not set (the recipe's own path)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingData(f"{path}: config file not found") from None
    except OSError as err:
        raise FlagError(f"{path}: config file unreadable ({err.strerror or err})") from None
    reader = toml_reader()
    try:
        table = reader.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, reader.TOMLDecodeError) as err:
        raise FlagError(f"{path}: not valid TOML ({err})") from None
    groups = field_groups(config_class)
    known_groups = sorted({g for g in groups.values() if g})
    hints = typing.get_type_hints(config_class)
    values, where = {}, {}
    for key, value in table.items():
        if isinstance(value, dict):
            if key not in known_groups:
                raise FlagError(f"{path}: [{key}] is not a section; sections: {', '.join(known_groups)} "
                                f"(or put the keys at the top level)")
            for inner, inner_value in value.items():
                _take(path, inner, inner_value, key, groups, hints, values, where, refused)
        else:
            _take(path, key, value, "", groups, hints, values, where, refused)
    return values, hashlib.sha256(raw).hexdigest()


def _take(path, key, value, section, groups, hints, values, where, refused):
    name = key.replace("-", "_")
    shown = f"[{section}] {key}" if section else key
    if name not in groups or name in refused:
        near = difflib.get_close_matches(name, [g for g in groups if g not in refused], n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise FlagError(f"{path}: {shown} is not a setting{hint}; `python src/train.py --help` lists them")
    if section and groups[name] != section:
        raise FlagError(f"{path}: {shown} belongs under [{groups[name]}], not [{section}]")
    if name in values:
        raise FlagError(f"{path}: {shown} is set twice (also as {where[name]})")
    values[name], where[name] = check_type(path, shown, value, hints[name]), shown


def check_type(path, shown, value, kind):
    """The value as the field's type, or a FlagError saying what is allowed."""
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
          else isinstance(value, kind))
    if not ok:
        raise FlagError(f"{path}: {shown} = {value!r}: expected {TYPE_WORDS.get(kind, kind.__name__)}")
    return float(value) if kind is float else value


def check_choices(config, config_class) -> list:
    """(field, message) for each field whose value is not among its choices."""
    found = []
    for f in dataclasses.fields(config_class):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            found.append((f.name, f"one of {', '.join(map(str, choices))}"))
    return found
