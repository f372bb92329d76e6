"""Products (``/v1/products``)."""

from __future__ import annotations

from typing import Any

from ..errors import invalid
from ..ids import new_id
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    RANGE,
    Bool,
    Choice,
    ListOf,
    Metadata,
    Str,
    Unsupported,
    in_range,
    validate,
)
from .common import deleted, merge_metadata, page, set_fields, show

COMMON = {
    "active": Bool(),
    "description": Str(max_len=40000, emptyable=True),
    "images": ListOf(Str(), emptyable=True, max_items=8),
    "metadata": Metadata(),
    "name": Str(),
    "shippable": Bool(),
    "statement_descriptor": Str(max_len=22, emptyable=True),
    "tax_code": Str(emptyable=True),
    "unit_label": Str(max_len=12, emptyable=True),
    "url": Str(emptyable=True),
    "marketing_features": Unsupported(),
    "package_dimensions": Unsupported(),
    "tax_details": Unsupported(),
}
CREATE = {
    **COMMON,
    "name": Str(required=True),
    "id": Str(),
    "type": Choice("service", "good"),
    "default_price_data": Unsupported(),
}
UPDATE = {**COMMON, "default_price": Str(emptyable=True)}
LIST = {
    **LIST_PARAMS,
    "active": Bool(),
    "created": RANGE,
    "ids": ListOf(Str()),
    "shippable": Bool(),
    "type": Choice("service", "good"),
    "url": Str(),
}


def create_product(state: EmulatorState, p: dict[str, Any]) -> dict[str, Any]:
    product_id = p.get("id") or new_id("prod", 14)
    if state.store.get("product", product_id) is not None:
        raise invalid("Product already exists.", param="id", code="resource_already_exists")
    now = state.now()
    product: dict[str, Any] = {
        "id": product_id,
        "object": "product",
        "active": True,
        "created": now,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": p["name"],
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": p.get("type", "service"),
        "unit_label": None,
        "updated": now,
        "url": None,
    }
    _apply(state, product, p)
    return state.store.put("product", product)


def _apply(state: EmulatorState, product: dict[str, Any], p: dict[str, Any]) -> None:
    set_fields(
        product,
        p,
        "active",
        "description",
        "name",
        "shippable",
        "statement_descriptor",
        "tax_code",
        "unit_label",
        "url",
    )
    if "images" in p:
        product["images"] = p["images"] or []
    if "metadata" in p:
        product["metadata"] = merge_metadata(product["metadata"], p["metadata"])
    if "default_price" in p:
        price_id = p["default_price"]
        if price_id is not None:
            price = state.store.get("price", price_id)
            if price is None or price["product"] != product["id"]:
                raise invalid(
                    f"No such price: '{price_id}'", param="default_price", code="resource_missing"
                )
        product["default_price"] = price_id
    product["updated"] = state.now()


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    return show(state, req, create_product(state, validate(req.params, CREATE)))


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("product", req.arg("id")))


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    product = state.store.require("product", req.arg("id"))
    _apply(state, product, p)
    return show(state, req, product)


def _delete(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    product = state.store.require("product", req.arg("id"))
    if any(price["product"] == product["id"] for price in state.store.all("price")):
        raise invalid(
            "This product cannot be deleted because it has one or more user-created prices."
        )
    state.store.delete("product", product["id"])
    return deleted(product["id"], "product")


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    items = [
        prod
        for prod in state.store.all("product")
        if ("active" not in p or prod["active"] == p["active"])
        and ("ids" not in p or prod["id"] in p["ids"])
        and ("shippable" not in p or prod["shippable"] == p["shippable"])
        and ("type" not in p or prod["type"] == p["type"])
        and ("url" not in p or prod["url"] == p["url"])
        and in_range(prod["created"], p.get("created"))
    ]
    return page(state, req, items, p, "product")


def register(router: Router) -> None:
    router.post("/v1/products", _create)
    router.get("/v1/products", _list)
    router.get("/v1/products/{id}", _retrieve)
    router.post("/v1/products/{id}", _update)
    router.delete("/v1/products/{id}", _delete)
