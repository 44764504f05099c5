"""The examples' input (examples/_input.py): any non-empty id, business rules, named fields."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from examples.order_processing import OrderProcessingSaga
from examples.order_processing.services import world as shop
from examples.payment_processing import PaymentSaga
from examples.trade_execution import TradeExecutionSaga
from examples.travel_booking import TravelBookingSaga
from statesaga import InvalidInputError, Saga, SagaStatus
from statesaga.testing import FakeClock

#: Each example's saga and an input it accepts.
GOOD: dict[str, tuple[type[Saga], dict[str, Any]]] = {
    "order": (
        OrderProcessingSaga,
        {
            "order_id": "ORD-123",
            "user_id": "USER-456",
            "items": [{"sku": "ITEM-1", "quantity": 2}],
            "total_amount": 99.99,
        },
    ),
    "trip": (
        TravelBookingSaga,
        {
            "trip_id": "TRIP-456",
            "user_id": "USER-789",
            "flight": "AA123",
            "hotel": "HTL-789",
            "car_rental": True,
        },
    ),
    "trade": (
        TradeExecutionSaga,
        {
            "trade_id": "TRD-789",
            "account_id": "ACC-123",
            "symbol": "AAPL",
            "quantity": 100,
            "price": 150.00,
        },
    ),
    "payment": (
        PaymentSaga,
        {"payment_id": "PAY-101", "user_id": "USER-456", "amount": 250.00, "currency": "USD"},
    ),
}
IDS = [
    ("order", "order_id"),
    ("order", "user_id"),
    ("trip", "trip_id"),
    ("trip", "user_id"),
    ("trip", "flight"),
    ("trip", "hotel"),
    ("trade", "trade_id"),
    ("trade", "account_id"),
    ("trade", "symbol"),
    ("payment", "payment_id"),
    ("payment", "user_id"),
]
FIELDS = [(example, field) for example, (_, data) in GOOD.items() for field in data]


def make(example: str, **changes: Any) -> Saga:
    saga, data = GOOD[example]
    return saga(**{**data, **changes})


def assert_refused(example: str, field: str, **changes: Any) -> InvalidInputError:
    with pytest.raises(InvalidInputError, match=re.escape(f"input {field!r} ")) as info:
        make(example, **changes)
    assert info.value.field == field
    assert info.value.saga == GOOD[example][0].name
    return info.value


# -- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["alice", "U-1"])
@pytest.mark.parametrize(("example", "field"), IDS)
def test_an_ordinary_id_is_accepted_as_given(example: str, field: str, value: str) -> None:
    """Any non-empty id, such as "alice" or "U-1", is accepted and kept as it was given."""
    assert make(example, **{field: value}).data[field] == value


def test_a_sku_is_any_non_empty_text() -> None:
    """An item's SKU need not look like ITEM-1."""
    saga = make("order", items=[{"sku": "blue mug 330ml", "quantity": 1}])
    assert saga.data["items"] == [{"sku": "blue mug 330ml", "quantity": 1}]


async def test_an_order_for_alice_runs_to_completion(clock: FakeClock) -> None:
    """OrderProcessingSaga(user_id="alice", order_id="U-1") completes, as copied examples do."""
    shop.reset()
    result = await make("order", user_id="alice", order_id="U-1").execute(clock=clock)
    assert result.status is SagaStatus.COMPLETED
    assert list(shop.mailer.sent.values()) == ["alice: Order U-1 is on its way"]


def test_the_steps_read_plain_data_that_a_store_keeps_unchanged() -> None:
    """The input kept is plain JSON data: a tuple of items is a list, a whole amount a float."""
    saga = make("order", items=({"sku": "ITEM-1", "quantity": 1},), total_amount=100)
    assert saga.data == {
        "order_id": "ORD-123",
        "user_id": "USER-456",
        "items": [{"sku": "ITEM-1", "quantity": 1}],
        "total_amount": 100.0,
    }
    assert json.loads(json.dumps(saga.data)) == saga.data
    assert isinstance(saga.data["total_amount"], float)


# -- refused, naming the field ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize(("example", "field"), IDS)
def test_an_empty_id_is_refused_naming_the_field(example: str, field: str, value: str) -> None:
    """An empty or blank id is refused."""
    assert_refused(example, field, **{field: value})


@pytest.mark.parametrize(
    ("example", "field"), [("order", "total_amount"), ("trade", "price"), ("payment", "amount")]
)
def test_a_negative_amount_is_refused_naming_the_field(example: str, field: str) -> None:
    """An amount below 0 is refused."""
    assert_refused(example, field, **{field: -1.0})


@pytest.mark.parametrize(("example", "field"), FIELDS)
def test_a_missing_field_is_refused_naming_it(example: str, field: str) -> None:
    """Leaving out any field raises InvalidInputError naming it, not a TypeError."""
    saga, data = GOOD[example]
    with pytest.raises(InvalidInputError, match=re.escape(f"input {field!r} is missing")):
        saga(**{name: value for name, value in data.items() if name != field})


def test_a_missing_field_of_an_item_is_refused_naming_its_path() -> None:
    """An item without its quantity names items[0].quantity."""
    assert_refused("order", "items[0].quantity", items=[{"sku": "ITEM-1"}])


@pytest.mark.parametrize(
    ("example", "field", "value"),
    [
        ("order", "order_id", 123),
        ("order", "user_id", None),
        ("order", "items", "ITEM-1"),
        ("order", "items", {"sku": "ITEM-1", "quantity": 1}),
        ("order", "total_amount", "99.99"),
        ("trip", "hotel", ["HTL-789"]),
        ("trip", "car_rental", "yes"),
        ("trip", "car_rental", 1),
        ("trade", "quantity", 1.5),
        ("trade", "quantity", True),
        ("trade", "price", "150"),
        ("payment", "user_id", None),
        ("payment", "amount", True),
        ("payment", "currency", 840),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(
    example: str, field: str, value: Any
) -> None:
    """A value of the wrong type is refused, never converted ("99.99" is not an amount)."""
    assert_refused(example, field, **{field: value})


@pytest.mark.parametrize(
    ("items", "field"),
    [
        (["ITEM-1"], "items[0]"),
        ([{"sku": "ITEM-1", "quantity": 1}, {"sku": 7, "quantity": 1}], "items[1].sku"),
        ([{"sku": "ITEM-1", "quantity": 1.5}], "items[0].quantity"),
        ([{"sku": "ITEM-1", "quantity": "2"}], "items[0].quantity"),
    ],
)
def test_an_item_of_the_wrong_type_is_refused_naming_its_path(items: list[Any], field: str) -> None:
    """A wrong item, or a wrong field of one, is named by its index."""
    assert_refused("order", field, items=items)


@pytest.mark.parametrize(
    ("example", "field", "changes"),
    [
        ("order", "colour", {"colour": "red"}),
        ("trade", "side", {"side": "buy"}),
        ("order", "items[0].price", {"items": [{"sku": "ITEM-1", "quantity": 1, "price": 2}]}),
    ],
)
def test_an_unknown_field_is_refused_naming_it(
    example: str, field: str, changes: dict[str, Any]
) -> None:
    """A field the saga does not know is refused (a misspelt field is not silently ignored)."""
    assert_refused(example, field, **changes)


@pytest.mark.parametrize(
    ("example", "field", "changes"),
    [
        ("order", "items", {"items": []}),
        ("order", "items[0].quantity", {"items": [{"sku": "ITEM-1", "quantity": -2}]}),
        ("order", "items[0].quantity", {"items": [{"sku": "ITEM-1", "quantity": 0}]}),
        (
            "order",
            "items[1].sku",
            {"items": [{"sku": "ITEM-1", "quantity": 1}, {"sku": "ITEM-1", "quantity": 2}]},
        ),
        ("order", "total_amount", {"total_amount": 0}),
        ("order", "total_amount", {"total_amount": 9.999}),
        ("trade", "quantity", {"quantity": -100}),
        ("trade", "quantity", {"quantity": 0}),
        ("trade", "price", {"price": float("nan")}),
        ("payment", "amount", {"amount": float("inf")}),
        ("payment", "currency", {"currency": "XXX"}),
        ("payment", "currency", {"currency": "usd"}),
    ],
)
def test_a_business_rule_broken_is_refused_naming_the_field(
    example: str, field: str, changes: dict[str, Any]
) -> None:
    """Quantities and amounts above 0, amounts in cents, each SKU once, known currencies."""
    assert_refused(example, field, **changes)


def test_the_message_names_the_saga_the_field_and_what_is_wrong() -> None:
    """The error reads as one sentence: saga, field path, problem and the value given."""
    error = assert_refused("order", "items[0].quantity", items=[{"sku": "ITEM-1", "quantity": -2}])
    assert str(error) == (
        "saga 'OrderProcessingSaga': input 'items[0].quantity' must be above 0, not -2"
    )
