"""Stripe's wire format: bracketed form encoding in, typed parameters out.

``parse_form`` turns ``items[0][price]=x&expand[]=y`` into nested dicts (lists are kept as
dicts with digit keys until a schema says the field is a list). ``validate`` checks the
parameters against a schema built from the field classes below, rejecting unknown parameters
(``parameter_unknown``), missing required ones (``parameter_missing``) and malformed values the
way Stripe does. In validated output ``None`` means "explicitly unset" (an empty string on the
wire) and an absent key means "not given".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import missing_param, param_error, unknown_param, unsupported_param

_KEY_RE = re.compile(r"\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    return [head, *_KEY_RE.findall("[" + rest)]


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        tokens = split_key(key)
        node = root
        for i, token in enumerate(tokens):
            if token == "":
                token = str(len(node))
            if i == len(tokens) - 1:
                node[token] = value
            else:
                child = node.get(token)
                if not isinstance(child, dict):
                    child = {}
                    node[token] = child
                node = child
    return root


def child_name(parent: str, key: str | int) -> str:
    return f"{parent}[{key}]" if parent else str(key)


class Field:
    """Base field: ``convert`` returns the typed value or raises a ``StripeError``."""

    def __init__(self, *, required: bool = False, emptyable: bool = False) -> None:
        self.required = required
        self.emptyable = emptyable

    def convert(self, value: Any, name: str) -> Any:
        if value == "" or value is None:
            if self.emptyable:
                return None
            raise param_error(
                f"You passed an empty string for '{name}'. We assume empty values are an attempt "
                f"to unset a parameter; however '{name}' cannot be unset. You should remove "
                f"'{name}' from your request or supply a non-empty value.",
                param=name,
                code="parameter_invalid_empty",
            )
        return self.convert_value(value, name)

    def convert_value(self, value: Any, name: str) -> Any:
        return value


class Str(Field):
    def __init__(self, *, max_len: int = 5000, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_len = max_len

    def convert_value(self, value: Any, name: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise param_error(f"Invalid string: {_show(value)}", param=name)
        text = str(value)
        if len(text) > self.max_len:
            raise param_error(
                f"Invalid string: {text[:20]}...; must be at most {self.max_len} characters",
                param=name,
            )
        return text


class Int(Field):
    def __init__(
        self, *, min_value: int | None = None, max_value: int | None = None, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.min_value = min_value
        self.max_value = max_value

    def convert_value(self, value: Any, name: str) -> Any:
        if isinstance(value, bool):
            raise param_error(f"Invalid integer: {_show(value)}", param=name)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
            number = int(value)
        else:
            raise param_error(
                f"Invalid integer: {_show(value)}", param=name, code="parameter_invalid_integer"
            )
        if self.min_value is not None and number < self.min_value:
            raise param_error(
                f"This value must be greater than or equal to {self.min_value}.", param=name
            )
        if self.max_value is not None and number > self.max_value:
            raise param_error(
                f"This value must be less than or equal to {self.max_value}.", param=name
            )
        return number


class Bool(Field):
    def convert_value(self, value: Any, name: str) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise param_error(f"Invalid boolean: {_show(value)}", param=name)


class Dec(Field):
    """A decimal string with at most 12 decimal places (``unit_amount_decimal``)."""

    def convert_value(self, value: Any, name: str) -> Any:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise param_error(f"Invalid decimal: {_show(value)}", param=name)
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -12:
            raise param_error(
                f"Invalid decimal: {value}; must contain at most 12 decimal places", param=name
            )
        return number


class Choice(Field):
    def __init__(self, *choices: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.choices = choices

    def convert_value(self, value: Any, name: str) -> Any:
        if value not in self.choices:
            raise param_error(f"Invalid {name}: must be one of {_one_of(self.choices)}", param=name)
        return value


class UpTo(Field):
    """A tier's ``up_to``: a positive integer or the string ``inf``."""

    def convert_value(self, value: Any, name: str) -> Any:
        if value == "inf":
            return "inf"
        return Int(min_value=1).convert_value(value, name)


class Obj(Field):
    def __init__(self, children: Mapping[str, Field], **kw: Any) -> None:
        super().__init__(**kw)
        self.children = dict(children)

    def convert_value(self, value: Any, name: str) -> Any:
        if not isinstance(value, Mapping):
            raise param_error(f"Invalid object: {_show(value)}", param=name)
        return _validate_mapping(value, self.children, name)


class ListOf(Field):
    def __init__(self, item: Field, *, max_items: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.item = item
        self.max_items = max_items

    def convert_value(self, value: Any, name: str) -> Any:
        items = as_list(value, name)
        if self.max_items is not None and len(items) > self.max_items:
            raise param_error(
                f"Invalid array: {name} may contain at most {self.max_items} items", param=name
            )
        return [self.item.convert(v, child_name(name, i)) for i, v in enumerate(items)]


class Metadata(Field):
    """``metadata``: string keys and values; ``""`` for a key deletes it, ``""`` for the
    whole hash clears it (represented as ``None``)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(emptyable=True, **kw)

    def convert_value(self, value: Any, name: str) -> Any:
        if not isinstance(value, Mapping):
            raise param_error(f"Invalid object: {_show(value)}", param=name)
        if len(value) > 50:
            raise param_error("Invalid metadata: cannot have more than 50 keys", param=name)
        out: dict[str, str | None] = {}
        for key, val in value.items():
            if len(key) > 40:
                raise param_error(
                    f"Invalid metadata: key {key[:40]}... must be at most 40 characters",
                    param=child_name(name, key),
                )
            if isinstance(val, Mapping | list):
                raise param_error("Invalid metadata: values must be strings", param=name)
            text = "" if val is None else str(val)
            if len(text) > 500:
                raise param_error(
                    "Invalid metadata: values must be at most 500 characters",
                    param=child_name(name, key),
                )
            out[str(key)] = text if text != "" else None
        return out


class AnyValue(Field):
    pass


def as_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
        raise param_error(f"Invalid array: {name}", param=name)
    raise param_error(f"Invalid array: {_show(value)}", param=name)


EXPAND = ListOf(Str())
LIST_PARAMS: dict[str, Field] = {
    "limit": Int(min_value=1, max_value=100),
    "starting_after": Str(),
    "ending_before": Str(),
}
RANGE = Obj({"gt": Int(), "gte": Int(), "lt": Int(), "lte": Int()})


def validate(
    raw: Mapping[str, Any], spec: Mapping[str, Field], *, expand: bool = True
) -> dict[str, Any]:
    """Validate top-level parameters (``expand`` is accepted unless ``expand=False``)."""
    full = dict(spec)
    if expand:
        full.setdefault("expand", EXPAND)
    return _validate_mapping(raw, full, "")


def _validate_mapping(
    raw: Mapping[str, Any], spec: Mapping[str, Field], prefix: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = child_name(prefix, key)
        field = spec.get(key)
        if field is None:
            raise unknown_param(name)
        out[key] = field.convert(value, name)
    for key, field in spec.items():
        if field.required and out.get(key) is None:
            raise missing_param(child_name(prefix, key))
    return out


def in_range(value: int, rng: Mapping[str, int] | int | None) -> bool:
    """Stripe's ``created[gte]=...`` style filters (or an exact integer)."""
    if rng is None:
        return True
    if isinstance(rng, int):
        return value == rng
    return (
        ("gt" not in rng or value > rng["gt"])
        and ("gte" not in rng or value >= rng["gte"])
        and ("lt" not in rng or value < rng["lt"])
        and ("lte" not in rng or value <= rng["lte"])
    )


def exclusive(params: Mapping[str, Any], *names: str) -> None:
    given = [n for n in names if params.get(n) is not None]
    if len(given) > 1:
        raise param_error(
            f"You may only specify one of these parameters: {', '.join(names)}.",
            param=given[1],
            code="parameters_exclusive",
        )


def _one_of(choices: tuple[str, ...]) -> str:
    if len(choices) == 1:
        return choices[0]
    return ", ".join(choices[:-1]) + f", or {choices[-1]}"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


__all__ = [
    "EXPAND",
    "LIST_PARAMS",
    "RANGE",
    "AnyValue",
    "Bool",
    "Choice",
    "Dec",
    "Field",
    "Int",
    "ListOf",
    "Metadata",
    "Obj",
    "Str",
    "Unsupported",
    "UpTo",
    "exclusive",
    "in_range",
    "parse_form",
    "validate",
]


class Unsupported(Field):
    """A real Stripe parameter the emulator does not implement: rejected, saying so."""

    def convert(self, value: Any, name: str) -> Any:
        raise unsupported_param(name)
