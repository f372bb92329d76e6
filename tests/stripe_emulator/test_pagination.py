"""List pagination: limit, has_more, starting_after, ending_before."""

from __future__ import annotations

import pytest
import stripe


@pytest.fixture
def five_customers(client: stripe.StripeClient) -> list[str]:
    return [client.v1.customers.create({"name": f"c{i}"}).id for i in range(5)]


def test_lists_are_newest_first_with_has_more(
    client: stripe.StripeClient, five_customers: list[str]
) -> None:
    page = client.v1.customers.list({"limit": 2})
    assert page.object == "list" and page.url == "/v1/customers"
    assert [c.id for c in page.data] == five_customers[::-1][:2]
    assert page.has_more is True


def test_starting_after_continues_the_list(
    client: stripe.StripeClient, five_customers: list[str]
) -> None:
    newest_first = five_customers[::-1]
    page = client.v1.customers.list({"limit": 2, "starting_after": newest_first[1]})
    assert [c.id for c in page.data] == newest_first[2:4]
    last = client.v1.customers.list({"limit": 2, "starting_after": newest_first[3]})
    assert [c.id for c in last.data] == newest_first[4:]
    assert last.has_more is False


def test_ending_before_pages_backwards(
    client: stripe.StripeClient, five_customers: list[str]
) -> None:
    newest_first = five_customers[::-1]
    page = client.v1.customers.list({"limit": 2, "ending_before": newest_first[4]})
    assert [c.id for c in page.data] == newest_first[2:4]
    assert page.has_more is True


def test_auto_paging_walks_every_object(
    client: stripe.StripeClient, five_customers: list[str]
) -> None:
    seen = [c.id for c in client.v1.customers.list({"limit": 2}).auto_paging_iter()]
    assert seen == five_customers[::-1]


def test_limit_above_100_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.list({"limit": 101})
    assert info.value.param == "limit"


def test_unknown_cursor_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.list({"starting_after": "cus_missing"})
    assert info.value.code == "resource_missing"
