"""One way to configure everything: frozen dataclasses whose fields are read from environment
variables `AVLORA_<PREFIX><FIELD>` by `from_env`. A class names its prefix in `ENV_PREFIX` and
documents each field with a trailing comment; `variables` lists them for the README."""

import dataclasses
import os
import typing
from pathlib import Path


def env_name(cls, field_name: str) -> str:
    """AVLORA_<PREFIX><FIELD>, or AVLORA_<PREFIX><name> for a field declared with metadata {"env": name}."""
    field = next(f for f in dataclasses.fields(cls) if f.name == field_name)
    return f"AVLORA_{cls.ENV_PREFIX}{field.metadata.get('env', field_name.upper())}"


def _parse(kind, raw: str):
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


def variables(cls) -> list[tuple[str, str]]:
    """(variable, default) of every field of `cls`."""
    rows = []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = str(field.default) if field.default != "" else "(empty)"
        else:
            default = "(computed)"
        rows.append((env_name(cls, field.name), default))
    return rows
