"""Prices (``/v1/prices``): per-unit and tiered, one-time and recurring, metered on a meter."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..errors import invalid, missing_param, param_error
from ..ids import new_id
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..tiers import decimal_text
from ..wire import (
    LIST_PARAMS,
    RANGE,
    Bool,
    Choice,
    Dec,
    Int,
    ListOf,
    Metadata,
    Obj,
    Str,
    Unsupported,
    UpTo,
    exclusive,
    in_range,
    validate,
)
from .common import merge_metadata, not_found_in_params, page, set_fields, show
from .products import create_product

TIER = Obj(
    {
        "up_to": UpTo(required=True),
        "unit_amount": Int(min_value=0),
        "unit_amount_decimal": Dec(),
        "flat_amount": Int(min_value=0),
        "flat_amount_decimal": Dec(),
    }
)
RECURRING = Obj(
    {
        "interval": Choice("day", "week", "month", "year", required=True),
        "interval_count": Int(min_value=1),
        "usage_type": Choice("licensed", "metered"),
        "meter": Str(),
        "trial_period_days": Int(min_value=1),
    }
)
CREATE = {
    "active": Bool(),
    "billing_scheme": Choice("per_unit", "tiered"),
    "currency": Str(required=True),
    "lookup_key": Str(max_len=200),
    "metadata": Metadata(),
    "nickname": Str(emptyable=True),
    "product": Str(),
    "product_data": Obj(
        {
            "name": Str(required=True),
            "active": Bool(),
            "id": Str(),
            "metadata": Metadata(),
            "statement_descriptor": Str(max_len=22),
            "tax_code": Str(),
            "unit_label": Str(max_len=12),
            "tax_details": Unsupported(),
        }
    ),
    "recurring": RECURRING,
    "tax_behavior": Choice("exclusive", "inclusive", "unspecified"),
    "tiers": ListOf(TIER),
    "tiers_mode": Choice("graduated", "volume"),
    "transfer_lookup_key": Bool(),
    "unit_amount": Int(min_value=0),
    "unit_amount_decimal": Dec(),
    "currency_options": Unsupported(),
    "custom_unit_amount": Unsupported(),
    "transform_quantity": Unsupported(),
}
UPDATE = {
    "active": Bool(),
    "lookup_key": Str(max_len=200, emptyable=True),
    "metadata": Metadata(),
    "nickname": Str(emptyable=True),
    "tax_behavior": Choice("exclusive", "inclusive", "unspecified"),
    "transfer_lookup_key": Bool(),
    "currency_options": Unsupported(),
}
LIST = {
    **LIST_PARAMS,
    "active": Bool(),
    "created": RANGE,
    "currency": Str(),
    "lookup_keys": ListOf(Str(), max_items=10),
    "product": Str(),
    "recurring": Obj(
        {
            "interval": Choice("day", "week", "month", "year"),
            "meter": Str(),
            "usage_type": Choice("licensed", "metered"),
        }
    ),
    "type": Choice("one_time", "recurring"),
}


def _amount_pair(
    obj: dict[str, Any], name: str, p: dict[str, Any], param: str
) -> tuple[int | None, str | None]:
    exclusive(p, name, f"{name}_decimal")
    if p.get(name) is not None:
        return p[name], str(p[name])
    dec: Decimal | None = p.get(f"{name}_decimal")
    if dec is None:
        return None, None
    if dec < 0:
        raise param_error(f"Invalid {param}_decimal: must be at least 0", param=f"{param}_decimal")
    whole = int(dec) if dec == dec.to_integral_value() else None
    return whole, decimal_text(dec)


def _tiers(p: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous = 0
    raw = p["tiers"]
    for i, tier in enumerate(raw):
        name = f"tiers[{i}]"
        up_to = None if tier["up_to"] == "inf" else tier["up_to"]
        if up_to is None and i != len(raw) - 1:
            raise invalid(
                "Only the last tier may have `up_to` set to `inf`.", param=f"{name}[up_to]"
            )
        if up_to is not None and up_to <= previous:
            raise invalid("Tiers must be in ascending order of `up_to`.", param=f"{name}[up_to]")
        unit, unit_dec = _amount_pair(tier, "unit_amount", tier, f"{name}[unit_amount]")
        flat, flat_dec = _amount_pair(tier, "flat_amount", tier, f"{name}[flat_amount]")
        if unit_dec is None and flat_dec is None:
            raise invalid(
                "Each tier must have at least one of `unit_amount`, `unit_amount_decimal`, "
                "`flat_amount` or `flat_amount_decimal`.",
                param=f"{name}[unit_amount]",
            )
        out.append(
            {
                "flat_amount": flat,
                "flat_amount_decimal": flat_dec,
                "unit_amount": unit,
                "unit_amount_decimal": unit_dec,
                "up_to": up_to,
            }
        )
        previous = up_to or previous
    if out and out[-1]["up_to"] is not None:
        raise invalid(
            "The last tier must have `up_to` set to `inf`.", param=f"tiers[{len(out) - 1}][up_to]"
        )
    return out


def _recurring(state: EmulatorState, p: dict[str, Any]) -> dict[str, Any] | None:
    rec = p.get("recurring")
    if rec is None:
        return None
    usage_type = rec.get("usage_type", "licensed")
    meter_id = rec.get("meter")
    if usage_type == "metered" and not meter_id:
        raise missing_param("recurring[meter]")
    if meter_id:
        if usage_type != "metered":
            raise invalid(
                "`recurring[meter]` can only be set when `recurring[usage_type]` is `metered`.",
                param="recurring[meter]",
            )
        meter = state.store.get("billing.meter", meter_id)
        if meter is None:
            raise not_found_in_params("billing.meter", meter_id, "recurring[meter]")
        if meter["status"] != "active":
            raise invalid(f"The meter {meter_id} is inactive.", param="recurring[meter]")
    return {
        "interval": rec["interval"],
        "interval_count": rec.get("interval_count", 1),
        "meter": meter_id,
        "trial_period_days": rec.get("trial_period_days"),
        "usage_type": usage_type,
    }


def _claim_lookup_key(state: EmulatorState, price_id: str, key: str, transfer: bool) -> None:
    for other in state.store.all("price"):
        if other["id"] != price_id and other.get("lookup_key") == key:
            if not transfer:
                raise invalid(
                    f"A price ({other['id']}) already uses that lookup key.", param="lookup_key"
                )
            other["lookup_key"] = None


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    currency = p["currency"].lower()
    if len(currency) != 3 or not currency.isalpha():
        raise param_error(f"Invalid currency: {p['currency']}", param="currency")
    exclusive(p, "product", "product_data")
    if p.get("product"):
        product = state.store.get("product", p["product"])
        if product is None:
            raise not_found_in_params("product", p["product"], "product")
    elif p.get("product_data"):
        product = create_product(state, p["product_data"])
    else:
        raise invalid(
            "You must specify either `product` or `product_data` when creating a price.",
            param="product",
        )
    scheme = p.get("billing_scheme", "per_unit")
    tiers: list[dict[str, Any]] | None = None
    unit, unit_dec = None, None
    if scheme == "tiered":
        if p.get("unit_amount") is not None or p.get("unit_amount_decimal") is not None:
            raise invalid(
                "You may not specify `unit_amount` when `billing_scheme` is `tiered`.",
                param="unit_amount",
            )
        if not p.get("tiers_mode"):
            raise missing_param("tiers_mode")
        if not p.get("tiers"):
            raise missing_param("tiers")
        tiers = _tiers(p)
    else:
        if p.get("tiers") or p.get("tiers_mode"):
            raise invalid(
                "`tiers` and `tiers_mode` can only be set when `billing_scheme` is `tiered`.",
                param="tiers" if p.get("tiers") else "tiers_mode",
            )
        unit, unit_dec = _amount_pair(p, "unit_amount", p, "unit_amount")
        if unit_dec is None:
            raise missing_param("unit_amount")
    recurring = _recurring(state, p)
    price_id = new_id("price", 24)
    if p.get("lookup_key"):
        _claim_lookup_key(state, price_id, p["lookup_key"], bool(p.get("transfer_lookup_key")))
    price: dict[str, Any] = {
        "id": price_id,
        "object": "price",
        "active": p.get("active", True),
        "billing_scheme": scheme,
        "created": state.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": p.get("lookup_key"),
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "nickname": p.get("nickname"),
        "product": product["id"],
        "recurring": recurring,
        "tax_behavior": p.get("tax_behavior", "unspecified"),
        "tiers_mode": p.get("tiers_mode") if scheme == "tiered" else None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit,
        "unit_amount_decimal": unit_dec,
    }
    if tiers is not None:
        price["tiers"] = tiers
    state.store.put("price", price)
    return show(state, req, price)


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("price", req.arg("id")))


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    price = state.store.require("price", req.arg("id"))
    if "lookup_key" in p:
        if p["lookup_key"]:
            _claim_lookup_key(
                state, price["id"], p["lookup_key"], bool(p.get("transfer_lookup_key"))
            )
        price["lookup_key"] = p["lookup_key"]
    set_fields(price, p, "active", "nickname", "tax_behavior")
    if "metadata" in p:
        price["metadata"] = merge_metadata(price["metadata"], p["metadata"])
    return show(state, req, price)


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    rec = p.get("recurring") or {}
    keys = p.get("lookup_keys")
    items = [
        price
        for price in state.store.all("price")
        if ("active" not in p or price["active"] == p["active"])
        and ("product" not in p or price["product"] == p["product"])
        and ("currency" not in p or price["currency"] == p["currency"].lower())
        and ("type" not in p or price["type"] == p["type"])
        and (keys is None or price.get("lookup_key") in keys)
        and all((price.get("recurring") or {}).get(k) == v for k, v in rec.items())
        and in_range(price["created"], p.get("created"))
    ]
    return page(state, req, items, p, "price")


def register(router: Router) -> None:
    router.post("/v1/prices", _create)
    router.get("/v1/prices", _list)
    router.get("/v1/prices/{id}", _retrieve)
    router.post("/v1/prices/{id}", _update)
