"""One way to configure everything: frozen dataclasses whose fields are read from environment
variables `AVLORA_<PREFIX><FIELD>` by `from_env`. A class names its prefix in `ENV_PREFIX` and
documents each field with a trailing comment; `variables` lists them for the README."""

import dataclasses
import inspect
import os
import re
import typing
from pathlib import Path


def env_name(cls, field_name: str) -> str:
    """AVLORA_<PREFIX><FIELD>, or AVLORA_<PREFIX><name> for a field declared with metadata {"env": name}."""
    field = next(f for f in dataclasses.fields(cls) if f.name == field_name)
    return f"AVLORA_{cls.ENV_PREFIX}{field.metadata.get('env', field_name.upper())}"


def _parse(kind, raw: str):
    options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if options and type(None) in typing.get_args(kind):  # X | None: parse as X
        kind = options[0]
    if kind in (bool, "bool"):
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    for name, parse in (("int", int), ("float", float), ("Path", Path), ("str", str)):
        if kind in (parse, name):
            return parse(raw)
    raise TypeError(f"no parser for {kind!r}")


def from_env(cls, environ: typing.Mapping[str, str] | None = None, **overrides):
    """An instance of `cls` with every field set in the environment read from it (an empty
    variable means the default); `overrides` win over both."""
    environ = os.environ if environ is None else environ
    values = {}
    for field in dataclasses.fields(cls):
        raw = environ.get(env_name(cls, field.name))
        if raw:
            try:
                values[field.name] = _parse(field.type, raw)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{env_name(cls, field.name)}={raw!r}: {error}") from None
    return cls(**(values | overrides))


def _comments(cls) -> dict[str, str]:
    """Each field's comment in the class source: the one ending its line, or the lines just above it."""
    comments, above = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+)\s*:[^#]*(?:#\s*(.*))?$", stripped)
        if match:
            comments[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    return comments


def variables(cls) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every field of `cls`."""
    comments, rows = _comments(cls), []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = str(field.default) if field.default not in ("", None) else "(unset)"
        else:
            default = "(computed)"
        rows.append((env_name(cls, field.name), default, comments.get(field.name, "")))
    return rows
