"""The submit form, generated from the parameter schema (avlora/params.py: the same fields, rules
and defaults as the CLI's flags and the README's table), and the form's values read back."""

from dataclasses import dataclass
from typing import Literal, get_args, get_origin

from avlora.params import CommonParams, default_label, field_rules, field_type

NOT_FIELDS = ("mode", "training_data_url", "validation")   # the zip and the validation entries have their own inputs


@dataclass
class FormField:
    name: str
    kind: str                 # number, checkbox, select, text, textarea
    meaning: str
    rules: str
    default: str
    choices: tuple = ()
    step: str = ""
    value: object = None      # what the form shows: the default, or what the user sent

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def form_fields(schema: type[CommonParams]) -> list[FormField]:
    fields = []
    for name, info in schema.model_fields.items():
        if name in NOT_FIELDS:
            continue
        kind, choices, step = field_type(info), (), ""
        if get_origin(info.annotation) is Literal:
            widget, choices = "select", tuple(str(choice) for choice in get_args(info.annotation))
        elif kind is bool:
            widget = "checkbox"
        elif kind in (int, float):
            widget, step = "number", "1" if kind is int else "any"
        else:
            longest = next((item.max_length for item in info.metadata if hasattr(item, "max_length")), 0)
            widget = "textarea" if longest > 1000 else "text"
        default = info.get_default(call_default_factory=True)
        fields.append(FormField(name, widget, info.description or "", field_rules(info),
                                default_label(info) or '""', choices, step, default))
    return fields


def read_form(schema: type[CommonParams], form) -> tuple[list[FormField], dict, dict[str, str]]:
    """(the fields showing what was sent, the parameter values, errors by field) from a posted form:
    an empty field is left to the server's default; a value of the wrong type is an error here."""
    fields, values, errors = form_fields(schema), {}, {}
    for item in fields:
        kind = field_type(schema.model_fields[item.name])
        if item.kind == "checkbox":
            item.value = values[item.name] = form.get(item.name) == "on"
            continue
        raw = str(form.get(item.name, "")).strip() if item.kind != "textarea" else str(form.get(item.name, ""))
        item.value = raw
        if raw == "":
            continue
        try:
            values[item.name] = kind(raw) if kind in (int, float) else raw
        except ValueError:
            errors[item.name] = f"{item.name}: must be {'an integer' if kind is int else 'a number'}"
    return fields, values, errors


def field_of(message: str, names) -> str:
    """The field a server message names ('rank: must be one of ...' -> 'rank'; 'validation.0.video_url'
    -> 'validation'), or '' when it names none of `names`."""
    head = message.split(":", 1)[0].strip().split(" ", 1)[0]
    for candidate in (head, head.split(".", 1)[0]):
        if candidate in names:
            return candidate
    return next((name for name in names if message.startswith(name)), "")
