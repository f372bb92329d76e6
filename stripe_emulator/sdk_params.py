"""Stripe's own parameter schemas, read from the pinned ``stripe`` SDK.

The SDK is generated from Stripe's OpenAPI spec: every service method names its HTTP method and
path (``self._request("post", "/v1/webhook_endpoints", ...)``) and types its ``params`` with a
``*Params`` ``TypedDict`` whose fields carry ``Literal`` enums, nested ``TypedDict`` objects,
``List[...]`` and ``Literal[""]`` (a field that may be unset). This module reads the service
modules' source (with ``ast``; nothing is executed) to map each ``(method, path)`` to its params
type, then turns that type into the emulator's ``wire`` fields. The app checks every request
against the result before a handler runs, so an unknown parameter, a missing required one or a
value outside an enum is refused exactly as the SDK's types (Stripe's spec) say, and the
emulator cannot drift from Stripe.

What the types cannot say (and this check therefore cannot see): string formats and lengths,
numeric ranges, which of several optional parameters are required together or exclusive, and
rules that depend on state (an id that must exist). Handlers check those.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

import typing_extensions

from .errors import param_error
from .wire import AnyValue, Bool, Choice, Field, Int, ListOf, Metadata, Obj, Str, as_list, validate

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
#: Fields of ``RequestOptions`` (SDK call options mixed into v1 params types, never sent).
_OPTIONS = frozenset(
    {
        "api_key",
        "stripe_version",
        "stripe_account",
        "stripe_context",
        "max_network_retries",
        "idempotency_key",
        "content_type",
        "headers",
    }
)


def normalize(template: str) -> str:
    """``/v1/customers/{customer}`` and ``/v1/customers/{id}`` → ``/v1/customers/{}``."""
    return _PLACEHOLDER.sub("{}", template)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    params_type: str
    module: str


def _sdk_root() -> Path:
    # Imported here, not at the top: the SDK is large and only its files' location is needed,
    # once (the route table is read from it on the first check and cached).
    import stripe

    return Path(stripe.__file__).parent


_IMPORT = re.compile(r"from (stripe[\w.]*) import \(?([\w,\s]+?)\)?\n")
_PARAMS = re.compile(r"params: (?:Optional\[\s*)?\"(\w+Params)\"")
_CALL = re.compile(r"self\._request\(\s*\"(\w+)\",\s*\"([^\"]+)\"")


@functools.cache
def sdk_endpoints() -> dict[tuple[str, str], Endpoint]:
    """Every ``(METHOD, normalized path)`` the SDK calls, with its params type's name.

    The service modules are generated with one shape: a sync method, then its async twin, each
    typing ``params`` and calling ``self._request("<method>", "<path>"...)``; they are read as
    text (importing all of them would take seconds)."""
    root = _sdk_root()
    found: dict[tuple[str, str], Endpoint] = {}
    for file in sorted(root.rglob("_*_service.py")):
        source = file.read_text(encoding="utf-8")
        if "self._request(" not in source:
            continue
        imports = {
            name.strip(): module
            for module, names in _IMPORT.findall(source)
            for name in names.split(",")
            if name.strip()
        }
        for chunk in source.split("\n    def ")[1:]:
            params, call = _PARAMS.search(chunk), _CALL.search(chunk)
            if params is None or call is None or params.group(1) not in imports:
                continue
            method, path = call.group(1).upper(), call.group(2)
            endpoint = Endpoint(method, path, params.group(1), imports[params.group(1)])
            found.setdefault((method, normalize(path)), endpoint)
    return found


def params_type(method: str, template: str) -> type | None:
    """The SDK's ``TypedDict`` for this endpoint, or ``None`` when the SDK has no such call."""
    endpoint = sdk_endpoints().get((method.upper(), normalize(template)))
    if endpoint is None:
        return None
    module = importlib.import_module(endpoint.module)
    found = getattr(module, endpoint.params_type, None)
    return found if isinstance(found, type) else None


@functools.cache
def schema_for(method: str, template: str) -> dict[str, Field] | None:
    """The top-level fields Stripe accepts on this endpoint (``None``: unknown to the SDK)."""
    typed = params_type(method, template)
    if typed is None:
        return None
    return _typed_dict_fields(typed)


def check_params(method: str, template: str, params: Mapping[str, Any], *, v2: bool) -> None:
    """Refuse what Stripe refuses for this endpoint's parameter types (a ``StripeError``)."""
    schema = schema_for(method, template)
    if schema is None:
        return
    spec = dict(schema)
    if v2 and method == "GET":
        spec.setdefault("page", Str())  # the cursor in v2 ``next_page_url``
    validate(params, spec, expand=False)


# -- TypedDict → wire fields -----------------------------------------------------------------
def _namespace(typed: type) -> dict[str, Any]:
    module = sys.modules.get(typed.__module__)
    namespace = dict(vars(module)) if module else {}
    namespace.setdefault("Literal", Literal)
    return namespace


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A forward reference (``"X|Literal['']"`` or ``ForwardRef``) evaluated in the SDK's module."""
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        try:
            return eval(annotation, namespace)  # noqa: S307 - the SDK's own annotations
        except Exception:
            return Any
    return annotation


def _is_typed_dict(tp: Any) -> bool:
    return isinstance(tp, type) and typing_extensions.is_typeddict(tp)


def _typed_dict_fields(typed: type) -> dict[str, Field]:
    """A TypedDict's fields (its bases' merged in), minus the SDK's request options."""
    namespace = _namespace(typed)
    required = set(getattr(typed, "__required_keys__", set()))
    fields: dict[str, Field] = {}
    for name, annotation in inspect.get_annotations(typed).items():
        if name in _OPTIONS:
            continue
        hint, is_required = _unwrap_required(_resolve(annotation, namespace), name in required)
        fields[name] = _field(hint, namespace, required=is_required)
    return fields


_REQUIRED_WRAPPERS = (Required, typing_extensions.Required)
_NOT_REQUIRED_WRAPPERS = (NotRequired, typing_extensions.NotRequired)


def _unwrap_required(hint: Any, default: bool) -> tuple[Any, bool]:
    origin = get_origin(hint)
    if origin in _REQUIRED_WRAPPERS:
        return get_args(hint)[0], True
    if origin in _NOT_REQUIRED_WRAPPERS:
        return get_args(hint)[0], False
    return hint, default


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _literal_values(tp: Any) -> tuple[Any, ...] | None:
    if get_origin(tp) in (Literal, typing_extensions.Literal):
        return get_args(tp)
    return None


def _field(tp: Any, namespace: dict[str, Any], *, required: bool = False) -> Field:
    tp = _resolve(tp, namespace)
    branches = list(get_args(tp)) if _is_union(tp) else [tp]
    emptyable = False
    kept: list[Any] = []
    for branch in (_resolve(b, namespace) for b in branches):
        values = _literal_values(branch)
        if values is not None and "" in values:
            emptyable = True
            values = tuple(v for v in values if v != "")
            if values:
                kept.append(Literal[values])
            continue
        if branch is type(None):
            emptyable = True
            continue
        kept.append(branch)
    if any(_literal_values(b) is not None for b in kept):
        # ``Union[Literal[...], str]``: the SDK leaves room for values of later API versions;
        # the literals are what this version accepts, and Stripe refuses anything else.
        kept = [b for b in kept if b is not str]
        literals = [v for b in kept for v in (_literal_values(b) or ())]
        others = [b for b in kept if _literal_values(b) is None]
        kept = [Literal[tuple(literals)], *others]
    if not kept:
        return Choice("", required=required, emptyable=True)
    if len(kept) == 1:
        return _single(kept[0], namespace, required=required, emptyable=emptyable)
    return OneOf(
        [_single(b, namespace, required=False, emptyable=False) for b in kept],
        required=required,
        emptyable=emptyable,
    )


def _single(tp: Any, namespace: dict[str, Any], *, required: bool, emptyable: bool) -> Field:
    kw: dict[str, Any] = {"required": required, "emptyable": emptyable}
    values = _literal_values(tp)
    if values is not None:
        return Choice(*[str(v) for v in values], **kw)
    if tp is str:
        return Str(**kw)
    if tp is bool:
        return Bool(**kw)
    if tp is int:
        return Int(**kw)
    if tp is float:
        return Num(**kw)
    if _is_typed_dict(tp):
        return Obj(_typed_dict_fields(tp), **kw)
    origin = get_origin(tp)
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's spelling
        args = get_args(tp)
        return ListOf(_field(args[0], namespace) if args else AnyValue(), **kw)
    if origin in (dict, typing.Dict) or _is_untyped_object(tp):  # noqa: UP006
        args = get_args(tp)
        if args and _resolve(args[-1], namespace) is str:
            return Metadata(required=required)
        return AnyValue(**kw)
    return AnyValue(**kw)


def _is_untyped_object(tp: Any) -> bool:
    origin = get_origin(tp) or tp
    return getattr(origin, "__name__", "") == "UntypedStripeObject"


class Num(Field):
    def convert_value(self, value: Any, name: str) -> Any:
        if isinstance(value, bool):
            raise param_error(f"Invalid decimal: {value!r}", param=name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise param_error(f"Invalid decimal: {value}", param=name) from None


class OneOf(Field):
    """A union: the first branch that accepts the value wins, else the first branch's error."""

    def __init__(self, branches: list[Field], **kw: Any) -> None:
        super().__init__(**kw)
        self.branches = branches

    def convert_value(self, value: Any, name: str) -> Any:
        first: Exception | None = None
        ordered = sorted(self.branches, key=lambda f: not _fits(f, value))
        for branch in ordered:
            try:
                return branch.convert(value, name)
            except Exception as exc:
                first = first or exc
        assert first is not None
        raise first


def _fits(field: Field, value: Any) -> bool:
    """Prefer the branch whose shape matches: an object for a hash, a list for a list..."""
    if isinstance(value, Mapping):
        if isinstance(field, ListOf):
            try:
                as_list(value, "")
            except Exception:
                return False
            return True
        return isinstance(field, Obj | Metadata | AnyValue)
    if isinstance(value, list):
        return isinstance(field, ListOf)
    return not isinstance(field, Obj | ListOf | Metadata)
