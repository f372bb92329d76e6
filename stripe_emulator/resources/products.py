"""Products (``/v1/products``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import invalid
from ..ids import new_id
from ..wire import LIST_PARAMS, RANGE, Bool, Enum, List, Meta, Str, Unsupported, in_range, validate
from .common import deleted, merge_metadata, page, set_fields, show

if TYPE_CHECKING:
    from ..emulator import Emulator
    from ..http import ApiRequest
    from ..router import Router

COMMON = {
    "active": Bool(),
    "description": Str(max_len=40000, emptyable=True),
    "images": List(Str(), emptyable=True, max_items=8),
    "metadata": Meta(),
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
    "type": Enum("service", "good"),
    "default_price_data": Unsupported(),
}
UPDATE = {**COMMON, "default_price": Str(emptyable=True)}
LIST = {
    **LIST_PARAMS,
    "active": Bool(),
    "created": RANGE,
    "ids": List(Str()),
    "shippable": Bool(),
    "type": Enum("service", "good"),
    "url": Str(),
}


def create_product(em: Emulator, p: dict[str, Any]) -> dict[str, Any]:
    product_id = p.get("id") or new_id("prod", 14)
    if em.store.get("product", product_id) is not None:
        raise invalid("Product already exists.", param="id", code="resource_already_exists")
    now = em.now()
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
    _apply(em, product, p)
    return em.store.put("product", product)


def _apply(em: Emulator, product: dict[str, Any], p: dict[str, Any]) -> None:
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
            price = em.store.get("price", price_id)
            if price is None or price["product"] != product["id"]:
                raise invalid(
                    f"No such price: '{price_id}'", param="default_price", code="resource_missing"
                )
        product["default_price"] = price_id
    product["updated"] = em.now()


def _create(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    return show(em, req, create_product(em, validate(req.params, CREATE)))


def _retrieve(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(em, req, em.store.require("product", req.arg("id")))


def _update(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    product = em.store.require("product", req.arg("id"))
    _apply(em, product, p)
    return show(em, req, product)


def _delete(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    product = em.store.require("product", req.arg("id"))
    if any(price["product"] == product["id"] for price in em.store.all("price")):
        raise invalid(
            "This product cannot be deleted because it has one or more user-created prices."
        )
    em.store.delete("product", product["id"])
    return deleted(product["id"], "product")


def _list(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    items = [
        prod
        for prod in em.store.all("product")
        if ("active" not in p or prod["active"] == p["active"])
        and ("ids" not in p or prod["id"] in p["ids"])
        and ("shippable" not in p or prod["shippable"] == p["shippable"])
        and ("type" not in p or prod["type"] == p["type"])
        and ("url" not in p or prod["url"] == p["url"])
        and in_range(prod["created"], p.get("created"))
    ]
    return page(em, req, items, p, "product")


def register(router: Router) -> None:
    router.post("/v1/products", _create)
    router.get("/v1/products", _list)
    router.get("/v1/products/{id}", _retrieve)
    router.post("/v1/products/{id}", _update)
    router.delete("/v1/products/{id}", _delete)
