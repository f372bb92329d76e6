"""Customer portal: configurations and sessions (``/v1/billing_portal/...``).

A session's ``url`` is a page served by the emulator showing the customer's subscriptions and
invoices with a link back to ``return_url``.

Default configuration, as in Stripe: configurations created through the API are never the
default; the default is the one saved in the Dashboard's portal settings (here
``POST /_emulator/portal/default``). A session without ``configuration`` uses the default, and
fails in test mode while none was saved.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import invalid, param_error
from ..ids import new_id, random_token
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    AnyValue,
    Bool,
    Choice,
    Metadata,
    Obj,
    Str,
    Unsupported,
    as_list,
    validate,
)
from .common import merge_metadata, not_found_in_params, page, show

CONFIG = "billing_portal.configuration"
SESSION = "billing_portal.session"
DEFAULT_FEATURES: dict[str, Any] = {
    "customer_update": {"allowed_updates": [], "enabled": False},
    "invoice_history": {"enabled": False},
    "payment_method_update": {"enabled": False, "payment_method_configuration": None},
    "subscription_cancel": {
        "cancellation_reason": {"enabled": False, "options": []},
        "enabled": False,
        "mode": "at_period_end",
        "proration_behavior": "none",
    },
    "subscription_update": {
        "billing_cycle_anchor": None,
        "default_allowed_updates": [],
        "enabled": False,
        "products": [],
        "proration_behavior": "none",
        "schedule_at_period_end": {"conditions": []},
        "trial_update_behavior": "end_trial",
    },
}
BUSINESS = Obj(
    {
        "headline": Str(emptyable=True),
        "privacy_policy_url": Str(emptyable=True),
        "terms_of_service_url": Str(emptyable=True),
    }
)
CONFIG_PARAMS = {
    "business_profile": BUSINESS,
    "default_return_url": Str(emptyable=True),
    "features": AnyValue(),
    "metadata": Metadata(),
    "name": Str(emptyable=True),
    "login_page": Unsupported(),
}


def _plain(value: Any, name: str) -> Any:
    """Form values for ``features``: ``"true"``/``"false"`` to booleans, indexed hashes to lists."""
    if isinstance(value, Mapping):
        if value and all(isinstance(k, str) and k.isdigit() for k in value):
            return [_plain(v, f"{name}[{i}]") for i, v in enumerate(as_list(value, name))]
        return {k: _plain(v, f"{name}[{k}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, name) for v in value]
    if value in ("true", "false"):
        return value == "true"
    return value


def _merge(base: dict[str, Any], update: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            raise param_error(
                f"Received unknown parameter: {name}[{key}]",
                param=f"{name}[{key}]",
                code="parameter_unknown",
            )
        if isinstance(value, dict) and isinstance(base[key], dict):
            out[key] = _merge(base[key], value, f"{name}[{key}]")
        else:
            out[key] = value
    return out


def _new_config(state: EmulatorState, p: dict[str, Any], *, is_default: bool) -> dict[str, Any]:
    now = state.now()
    features = _merge(DEFAULT_FEATURES, _plain(p.get("features") or {}, "features"), "features")
    config = {
        "id": new_id("bpc", 24),
        "object": CONFIG,
        "active": True,
        "application": None,
        "business_profile": {
            "headline": None,
            "privacy_policy_url": None,
            "terms_of_service_url": None,
            **(p.get("business_profile") or {}),
        },
        "created": now,
        "default_return_url": p.get("default_return_url"),
        "features": features,
        "is_default": is_default,
        "livemode": False,
        "login_page": {"enabled": False, "url": None},
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "name": p.get("name"),
        "updated": now,
    }
    return state.store.put(CONFIG, config)


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {**CONFIG_PARAMS, "features": AnyValue(required=True)})
    return show(state, req, _new_config(state, p, is_default=False))


NO_DEFAULT_MESSAGE = (
    "No configuration provided and your test mode default configuration has not been created. "
    "Provide a configuration or create your default by saving your customer portal settings in "
    "test mode at https://dashboard.stripe.com/test/settings/billing/portal."
)


def save_dashboard_default(state: EmulatorState) -> dict[str, Any]:
    """What saving the portal settings in the Dashboard does: the default configuration."""
    for config in state.store.all(CONFIG):
        if config["is_default"]:
            return config
    features = {"invoice_history": {"enabled": True}, "payment_method_update": {"enabled": True}}
    return _new_config(state, {"features": features}, is_default=True)


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require(CONFIG, req.arg("id")))


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {**CONFIG_PARAMS, "active": Bool()})
    config = state.store.require(CONFIG, req.arg("id"))
    if "features" in p:
        config["features"] = _merge(
            config["features"], _plain(p["features"] or {}, "features"), "features"
        )
    if "business_profile" in p:
        config["business_profile"].update(p["business_profile"] or {})
    for key in ("default_return_url", "name", "active"):
        if key in p:
            config[key] = p[key]
    if "metadata" in p:
        config["metadata"] = merge_metadata(config["metadata"], p["metadata"])
    config["updated"] = state.now()
    return show(state, req, config)


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {**LIST_PARAMS, "active": Bool(), "is_default": Bool()})
    items = [
        c
        for c in state.store.all(CONFIG)
        if p.get("active", c["active"]) == c["active"]
        and p.get("is_default", c["is_default"]) == c["is_default"]
    ]
    return page(state, req, items, p, "billing_portal.configuration")


def _session(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {
            "customer": Str(),
            "return_url": Str(),
            "configuration": Str(),
            "locale": Str(),
            "on_behalf_of": Unsupported(),
            "flow_data": Obj(
                {
                    "type": Choice("payment_method_update", required=True),
                    "after_completion": Obj(
                        {
                            "type": Choice("portal_homepage", "redirect", required=True),
                            "redirect": Obj({"return_url": Str(required=True)}),
                            "hosted_confirmation": Unsupported(),
                        }
                    ),
                    "subscription_cancel": Unsupported(),
                    "subscription_pause": Unsupported(),
                    "subscription_update": Unsupported(),
                    "subscription_update_confirm": Unsupported(),
                }
            ),
            "customer_account": Unsupported(),
            "after_expiration": Unsupported(),
        },
    )
    if not p.get("customer"):
        raise param_error(
            "Missing required param: customer.", param="customer", code="parameter_missing"
        )
    customer = state.store.get("customer", p["customer"])
    if customer is None:
        raise not_found_in_params("customer", p["customer"], "customer")
    if p.get("configuration"):
        config = state.store.get(CONFIG, p["configuration"])
        if config is None:
            raise not_found_in_params(
                "billing_portal.configuration", p["configuration"], "configuration"
            )
        if not config["active"]:
            raise invalid("The configuration is inactive.", param="configuration")
    else:
        defaults = [c for c in state.store.all(CONFIG) if c["is_default"]]
        if not defaults:
            raise invalid(NO_DEFAULT_MESSAGE)
        config = defaults[0]
    flow = _flow(config, p.get("flow_data"))
    return_url = p.get("return_url") or config.get("default_return_url")
    if not return_url:
        raise param_error(
            "Missing required param: return_url.", param="return_url", code="parameter_missing"
        )
    session_id = new_id("bps", 24)
    token = random_token(24)
    session = {
        "id": session_id,
        "object": SESSION,
        "configuration": config["id"],
        "created": state.now(),
        "customer": customer["id"],
        "customer_account": None,
        "flow": flow,
        "livemode": False,
        "locale": p.get("locale"),
        "on_behalf_of": None,
        "return_url": return_url,
        "url": f"{req.base_url.rstrip('/')}/emulator/p/session/{session_id}?s={token}",
    }
    state.store.put(SESSION, session)
    state.store.aux(session_id)["token"] = token
    return show(state, req, session)


def _flow(config: dict[str, Any], data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep link (``flow_data``): only ``payment_method_update``, which the configuration's
    ``payment_method_update`` feature must allow."""
    if data is None:
        return None
    if not config["features"]["payment_method_update"]["enabled"]:
        raise invalid(
            "The payment_method_update flow requires the payment_method_update feature to be "
            "enabled in the portal configuration.",
            param="flow_data[type]",
        )
    after = data.get("after_completion") or {"type": "portal_homepage"}
    if after["type"] == "redirect" and not (after.get("redirect") or {}).get("return_url"):
        raise param_error(
            "Missing required param: flow_data[after_completion][redirect][return_url].",
            param="flow_data[after_completion][redirect][return_url]",
            code="parameter_missing",
        )
    return {
        "after_completion": {
            "hosted_confirmation": None,
            "redirect": after.get("redirect"),
            "type": after["type"],
        },
        "subscription_cancel": None,
        "subscription_update": None,
        "subscription_update_confirm": None,
        "type": data["type"],
    }


def register(router: Router) -> None:
    router.post("/v1/billing_portal/configurations", _create)
    router.get("/v1/billing_portal/configurations", _list)
    router.get("/v1/billing_portal/configurations/{id}", _retrieve)
    router.post("/v1/billing_portal/configurations/{id}", _update)
    router.post("/v1/billing_portal/sessions", _session)
