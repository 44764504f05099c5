"""The four example sagas: every documented path, checked on the simulated services' state."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from examples.order_processing import OrderProcessingSaga
from examples.order_processing.services import INITIAL_STOCK
from examples.order_processing.services import world as shop
from examples.payment_processing import PaymentSaga
from examples.payment_processing.services import world as payments
from examples.trade_execution import TradeExecutionSaga
from examples.trade_execution.services import INITIAL_CASH
from examples.trade_execution.services import world as broker
from examples.travel_booking import TravelBookingSaga
from examples.travel_booking.services import INITIAL_ROOMS, INITIAL_SEATS
from examples.travel_booking.services import world as travel
from statesaga import (
    NonRetryableError,
    SagaResult,
    SagaStatus,
    StepTimeoutError,
    WaitTimeoutError,
)
from statesaga.testing import FakeClock

COMPLETED, COMPENSATED, FAILED = SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED


@pytest.fixture(autouse=True)
def fresh_worlds() -> None:
    """Every test starts with every simulated service in its initial state."""
    for world in (shop, travel, broker, payments):
        world.reset()


def triggers(result: SagaResult) -> list[str]:
    return [entry.trigger for entry in result.history]


class TestOrderProcessingSaga:
    """examples/order_processing: a chain; stock, charges, parcels and emails."""

    order = staticmethod(
        functools.partial(
            OrderProcessingSaga,
            order_id="ORD-123",
            user_id="USER-456",
            items=[{"sku": "ITEM-1", "quantity": 2}, {"sku": "ITEM-2", "quantity": 1}],
            total_amount=99.99,
        )
    )

    def assert_untouched(self) -> None:
        assert shop.inventory.stock == INITIAL_STOCK
        assert shop.inventory.reservations == {}
        assert shop.gateway.net == 0
        assert shop.carrier.shipments == {}
        assert shop.mailer.sent == {}

    async def test_an_order_takes_stock_and_money_ships_and_emails(self, clock: FakeClock) -> None:
        """A good order completes: stock taken, card charged once, one parcel, one email."""
        result = await self.order().execute(clock=clock)
        assert result.status is COMPLETED
        assert shop.inventory.stock == {**INITIAL_STOCK, "ITEM-1": 8, "ITEM-2": 4}
        assert shop.gateway.net == 99.99
        assert len(shop.carrier.shipments) == 1
        assert len(shop.mailer.sent) == 1
        assert result.results["send_confirmation"] == {"sent": True}

    async def test_a_dropped_gateway_call_is_retried_and_charges_once(
        self, clock: FakeClock
    ) -> None:
        """Two lost calls to the gateway are retried; the card is charged once."""
        shop.gateway.unavailable = 2
        result = await self.order().execute(clock=clock)
        assert result.status is COMPLETED
        assert len(clock.sleeps) == 2
        assert list(shop.gateway.charges.values()) == [99.99]

    @pytest.mark.parametrize(
        "items",
        [[{"sku": "ITEM-2", "quantity": 6}], [{"sku": "ITEM-404", "quantity": 1}]],
        ids=["not-enough", "unknown-sku"],
    )
    async def test_missing_stock_stops_the_order_before_any_charge(
        self, items: list[dict[str, Any]], clock: FakeClock
    ) -> None:
        """An order the stock cannot fill is compensated with nothing taken."""
        result = await self.order(items=items).execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "reserve_inventory")
        self.assert_untouched()

    async def test_stock_is_checked_for_a_sku_as_a_whole(self, clock: FakeClock) -> None:
        """Lines that each fit but together exceed the stock take nothing (stock never < 0)."""
        from examples.order_processing.services import OutOfStock

        with pytest.raises(OutOfStock, match="ITEM-2: 6 wanted, 5 in stock"):
            await shop.inventory.reserve("k", [("ITEM-2", 3), ("ITEM-2", 3)])
        self.assert_untouched()

    async def test_a_declined_card_releases_the_stock_without_retrying(
        self, clock: FakeClock
    ) -> None:
        """A decline is not retried; the reservation is released."""
        result = await self.order(user_id="USER-DECLINED").execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "process_payment")
        assert "process_payment.retry" not in triggers(result)
        assert result.compensated_steps == ("reserve_inventory",)
        self.assert_untouched()

    async def test_a_gateway_that_stays_down_releases_the_stock(self, clock: FakeClock) -> None:
        """After three lost calls the order is compensated."""
        shop.gateway.unavailable = 3
        result = await self.order().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "process_payment")
        self.assert_untouched()

    async def test_a_refused_parcel_refunds_and_restocks(self, clock: FakeClock) -> None:
        """The carrier refuses a hazardous item: refund, then stock back, in reverse order."""
        items = [{"sku": "ITEM-1", "quantity": 1}, {"sku": "ITEM-HAZMAT", "quantity": 1}]
        result = await self.order(items=items).execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "create_shipment")
        assert result.compensated_steps == ("process_payment", "reserve_inventory")
        assert shop.gateway.refunded == set(shop.gateway.charges)
        self.assert_untouched()

    async def test_a_mailer_that_stays_down_does_not_undo_the_order(self, clock: FakeClock) -> None:
        """The email is tried three times, then left unsent; the order stands."""
        shop.mailer.down = True
        result = await self.order().execute(clock=clock)
        assert result.status is COMPLETED
        assert result.results["send_confirmation"] == {"sent": False}
        assert len(clock.sleeps) == 2
        assert shop.gateway.net == 99.99
        assert len(shop.carrier.shipments) == 1


class TestTravelBookingSaga:
    """examples/travel_booking: a DAG; seats, rooms, cars and itineraries."""

    trip = staticmethod(
        functools.partial(
            TravelBookingSaga,
            trip_id="TRIP-456",
            user_id="USER-789",
            flight="AA123",
            hotel="HTL-789",
            car_rental=True,
        )
    )

    def assert_nothing_booked(self) -> None:
        assert travel.airline.free == INITIAL_SEATS
        assert travel.hotels.free == INITIAL_ROOMS
        assert travel.airline.bookings == travel.hotels.bookings == travel.cars.bookings == {}
        assert travel.agency.itineraries == {}

    async def test_a_trip_books_flight_hotel_and_car(self, clock: FakeClock) -> None:
        """Flight, hotel and car are booked and the itinerary lists all three."""
        result = await self.trip().execute(clock=clock)
        assert result.status is COMPLETED
        assert travel.airline.free["AA123"] == INITIAL_SEATS["AA123"] - 1
        assert travel.hotels.free["HTL-789"] == INITIAL_ROOMS["HTL-789"] - 1
        assert len(travel.cars.bookings) == 1
        assert [len(lines) for lines in travel.agency.itineraries.values()] == [3]

    async def test_the_bookings_run_concurrently(self, clock: FakeClock) -> None:
        """The hotel and the car are booked while the airline is still answering."""
        travel.airline.reply_delay = 0.05
        result = await self.trip().execute(clock=clock)
        assert result.completed_steps[:3] == ("book_hotel", "rent_car", "book_flight")

    async def test_without_a_car_the_car_step_does_nothing(self, clock: FakeClock) -> None:
        """car_rental=False: no car is booked and the itinerary has two lines."""
        result = await self.trip(car_rental=False).execute(clock=clock)
        assert result.status is COMPLETED
        assert result.results["rent_car"] == {"skipped": True}
        assert travel.cars.bookings == {}
        assert [len(lines) for lines in travel.agency.itineraries.values()] == [2]

    @pytest.mark.parametrize(
        ("changes", "failed"),
        [
            ({"hotel": "HTL-FULL"}, "book_hotel"),
            ({"flight": "XX000"}, "book_flight"),
            ({"flight": "ZZ999"}, "book_flight"),
            ({"hotel": "HTL-FULL", "car_rental": False}, "book_hotel"),
        ],
        ids=["hotel-full", "flight-full", "unknown-flight", "hotel-full-no-car"],
    )
    async def test_a_booking_that_fails_cancels_the_others(
        self, changes: dict[str, Any], failed: str, clock: FakeClock
    ) -> None:
        """Nothing stays booked when one supplier says no."""
        result = await self.trip(**changes).execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, failed)
        self.assert_nothing_booked()

    async def test_no_car_left_cancels_flight_and_hotel(self, clock: FakeClock) -> None:
        """The car rental has no car: flight and hotel are cancelled."""
        travel.cars.free["any"] = 0
        result = await self.trip().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "rent_car")
        assert set(result.compensated_steps) == {"book_flight", "book_hotel"}
        self.assert_nothing_booked()

    async def test_a_flight_booked_without_an_answer_is_cancelled_too(
        self, clock: FakeClock
    ) -> None:
        """The airline's reply times out after it took the seat: the seat is given back."""
        travel.airline.reply_delay = 10.0
        result = await self.trip().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "book_flight")
        assert isinstance(result.error, StepTimeoutError)
        assert "book_flight" in result.compensated_steps
        self.assert_nothing_booked()

    async def test_an_itinerary_that_cannot_be_issued_cancels_every_booking(
        self, clock: FakeClock
    ) -> None:
        """The agency's system stays down: after three tries all three bookings are cancelled."""
        travel.agency.down = True
        result = await self.trip().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "issue_itinerary")
        assert len(clock.sleeps) == 2
        assert set(result.compensated_steps) == {"book_flight", "book_hotel", "rent_car"}
        self.assert_nothing_booked()


class TestTradeExecutionSaga:
    """examples/trade_execution: conditional steps, a person's approval (a wait), a pivot."""

    trade = staticmethod(
        functools.partial(
            TradeExecutionSaga,
            trade_id="TRD-789",
            account_id="ACC-123",
            symbol="AAPL",
            quantity=100,
            price=150.00,
        )
    )
    #: A trade of 150,000: screened, and approved by a person.
    large = staticmethod(functools.partial(trade, quantity=1_000))

    def assert_no_trace(self) -> None:
        assert broker.ledger.cash == INITIAL_CASH
        assert broker.ledger.positions == {}
        assert broker.risk.holds == {}
        assert broker.compliance.approvals == {}
        assert broker.exchange.fills == {}

    async def approved(
        self, clock: FakeClock, approval: dict[str, Any] | None = None, **changes: Any
    ) -> SagaResult:
        """A large trade's run, sent ``approval`` (by default m.jones's, up to 250,000)."""
        if approval is None:
            approval = {"approver": "m.jones", "limit": 250_000}
        run = await self.large(**changes).start(clock=clock)
        await run.signal("trade_approved", approval)
        return await run.result()

    async def test_a_small_trade_skips_screening_and_approval(self, clock: FakeClock) -> None:
        """Below the threshold the three large-trade steps are skipped; cash turns into shares."""
        result = await self.trade().execute(clock=clock)
        assert result.status is COMPLETED
        assert result.skipped_steps == ("screen_large_trade", "trade_approved", "record_approval")
        assert "trade_approved.skip" in triggers(result)
        assert "trade_approved" not in result.results
        assert broker.compliance.approvals == {}
        assert broker.ledger.cash["ACC-123"] == INITIAL_CASH["ACC-123"] - 15_000
        assert broker.ledger.positions == {("ACC-123", "AAPL"): 100}
        assert broker.risk.holds == {}

    async def test_a_large_trade_waits_for_a_person_and_records_the_approval(
        self, clock: FakeClock
    ) -> None:
        """A trade of 150,000 is executed once a person approves it; the approver is recorded."""
        result = await self.approved(clock)
        assert result.status is COMPLETED
        assert result.skipped_steps == ()
        assert result.results["trade_approved"] == {"approver": "m.jones", "limit": 250_000}
        assert result.results["record_approval"] == {"approved_by": "m.jones"}
        assert list(broker.compliance.approvals.values()) == [("AAPL", "m.jones")]
        assert broker.ledger.positions == {("ACC-123", "AAPL"): 1_000}
        assert broker.risk.holds == {}

    async def test_a_large_trade_nobody_approves_releases_the_hold(self, clock: FakeClock) -> None:
        """No approval within the 15-minute window: the wait times out, the hold is released."""
        result = await self.large().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "trade_approved")
        assert isinstance(result.error, WaitTimeoutError)
        assert "trade_approved.time_out" in triggers(result)
        assert result.compensated_steps == ("check_risk",)
        assert clock.now - FakeClock().now >= 15 * 60
        self.assert_no_trace()

    async def test_a_person_refuses_at_once_by_cancelling_the_run(self) -> None:
        """Cancelling the waiting run releases the hold without waiting for the window."""
        run = await self.large().start()  # the real clock: a fake one would time out at once
        await asyncio.sleep(0.05)  # the steps before the wait take microseconds
        result = await run.cancel()
        assert (result.status, result.failed_step) == (COMPENSATED, "trade_approved")
        assert "trade_approved.fail" in triggers(result)  # it was waiting, and gave up
        assert result.compensated_steps == ("check_risk",)
        self.assert_no_trace()

    @pytest.mark.parametrize(
        "approval",
        [
            {"approver": "a.smith", "limit": 100_000},
            {"approver": "a.smith"},
            {"limit": 250_000},
            {},
        ],
        ids=["over-limit", "no-limit", "no-approver", "empty"],
    )
    async def test_an_approval_the_next_step_rejects_is_compensated(
        self, approval: dict[str, Any], clock: FakeClock
    ) -> None:
        """An approval beyond the approver's limit, or missing who or how much, is refused."""
        result = await self.approved(clock, approval)
        assert (result.status, result.failed_step) == (COMPENSATED, "record_approval")
        assert result.results["trade_approved"] == approval
        self.assert_no_trace()

    async def test_settlement_is_retried_forward(self, clock: FakeClock) -> None:
        """Past the pivot a flaky ledger is retried until the trade settles."""
        broker.ledger.unavailable = 4
        result = await self.trade().execute(clock=clock)
        assert result.status is COMPLETED
        assert len(clock.sleeps) == 4
        assert broker.ledger.positions == {("ACC-123", "AAPL"): 100}

    async def test_a_ledger_that_stays_down_leaves_the_trade_for_a_person(
        self, clock: FakeClock
    ) -> None:
        """Settlement exhausts its retries: FAILED, the fill stands, nothing is compensated."""
        broker.ledger.unavailable = 99
        result = await self.trade().execute(clock=clock)
        assert (result.status, result.failed_step) == (FAILED, "settle_trade")
        assert result.compensated_steps == ()
        assert len(broker.exchange.fills) == 1
        assert len(broker.risk.holds) == 1  # still set aside until someone settles it
        assert broker.ledger.positions == {}

    @pytest.mark.parametrize(
        ("changes", "failed"),
        [
            ({"symbol": "HALT", "price": 10.00}, "validate_order"),
            ({"symbol": "ABCD"}, "validate_order"),
            ({"price": 200.00}, "validate_order"),
            ({"account_id": "ACC-456"}, "check_risk"),
            ({"quantity": 20_000}, "check_risk"),
            ({"symbol": "XYZ", "quantity": 10_000, "price": 20.00}, "screen_large_trade"),
        ],
        ids=["halted", "unlisted", "fat-finger", "poor-account", "too-large", "restricted"],
    )
    async def test_a_refused_trade_leaves_no_trace(
        self, changes: dict[str, Any], failed: str, clock: FakeClock
    ) -> None:
        """A refusal before the trade is compensated: no hold, no approval, no position."""
        result = await self.trade(**changes).execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, failed)
        assert "trade_approved.wait" not in triggers(result)  # no person was asked
        self.assert_no_trace()

    async def test_a_small_trade_in_a_restricted_symbol_needs_no_screening(
        self, clock: FakeClock
    ) -> None:
        """The restriction applies to large trades only."""
        result = await self.trade(symbol="XYZ", quantity=10, price=20.00).execute(clock=clock)
        assert result.status is COMPLETED
        assert "screen_large_trade" in result.skipped_steps

    async def test_an_order_the_exchange_rejects_undoes_approval_and_hold(
        self, clock: FakeClock
    ) -> None:
        """The pivot fails: approval withdrawn, then the hold released."""
        broker.exchange.reject_orders = True
        result = await self.approved(clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "execute_trade")
        assert result.compensated_steps == ("record_approval", "check_risk")
        self.assert_no_trace()


class TestPaymentSaga:
    """examples/payment_processing: idempotent retries and a pivot; holds and captures."""

    payment = staticmethod(
        functools.partial(
            PaymentSaga,
            payment_id="PAY-101",
            user_id="USER-456",
            amount=250.00,
            currency="USD",
        )
    )

    def assert_no_money_moved(self) -> None:
        assert payments.gateway.held == payments.gateway.captured == 0
        assert payments.ledger.entries == {}

    async def test_a_payment_is_captured_and_booked(self, clock: FakeClock) -> None:
        """One authorization, captured, and one ledger entry."""
        result = await self.payment().execute(clock=clock)
        assert result.status is COMPLETED
        assert (payments.gateway.held, payments.gateway.captured) == (0, 250.00)
        assert len(payments.gateway.authorizations) == 1
        assert list(payments.ledger.entries.values()) == [("PAY-101", 250.00, "USD")]

    async def test_lost_requests_are_retried(self, clock: FakeClock) -> None:
        """Two requests that never reached the gateway are sent again."""
        payments.gateway.unavailable = 2
        result = await self.payment().execute(clock=clock)
        assert result.status is COMPLETED
        assert result.results["authorize_payment"]["attempts"] == 3
        assert payments.gateway.captured == 250.00

    async def test_a_lost_answer_is_retried_without_charging_twice(self, clock: FakeClock) -> None:
        """The gateway authorized but its answer timed out: the retry gets the same one."""
        payments.gateway.lost_replies = 1
        result = await self.payment().execute(clock=clock)
        assert result.status is COMPLETED
        assert "authorize_payment.retry" in triggers(result)
        assert len(payments.gateway.authorizations) == 1
        assert payments.gateway.captured == 250.00

    async def test_answers_that_never_come_are_voided(self, clock: FakeClock) -> None:
        """Every attempt times out: the outcome is unknown, so the hold is voided."""
        payments.gateway.lost_replies = 4
        result = await self.payment().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "authorize_payment")
        assert result.compensated_steps == ("authorize_payment",)
        assert [a.state for a in payments.gateway.authorizations.values()] == ["voided"]
        self.assert_no_money_moved()

    async def test_a_gateway_that_stays_unreachable_moves_no_money(self, clock: FakeClock) -> None:
        """Four lost requests: compensated, with nothing to void."""
        payments.gateway.unavailable = 4
        result = await self.payment().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "authorize_payment")
        assert payments.gateway.authorizations == {}
        self.assert_no_money_moved()

    @pytest.mark.parametrize(
        "changes", [{"amount": 10_000.00}, {"user_id": "USER-FRAUD"}], ids=["amount", "user"]
    )
    async def test_a_flagged_payment_never_reaches_the_gateway(
        self, changes: dict[str, Any], clock: FakeClock
    ) -> None:
        """The fraud check stops the payment before any request to the gateway."""
        result = await self.payment(**changes).execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "check_fraud")
        assert payments.gateway.requests == 0
        self.assert_no_money_moved()

    async def test_a_declined_card_is_not_retried(self, clock: FakeClock) -> None:
        """A decline becomes a NonRetryableError: one request, nothing held."""
        result = await self.payment(user_id="USER-DECLINED").execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "authorize_payment")
        assert isinstance(result.error, NonRetryableError)
        assert payments.gateway.requests == 1
        self.assert_no_money_moved()

    async def test_a_failed_capture_voids_the_authorization(self, clock: FakeClock) -> None:
        """The pivot fails before taking effect: the authorization is voided."""
        payments.gateway.expired = 1
        result = await self.payment().execute(clock=clock)
        assert (result.status, result.failed_step) == (COMPENSATED, "capture_payment")
        assert result.compensated_steps == ("authorize_payment",)
        self.assert_no_money_moved()

    async def test_reconciliation_is_retried_forward(self, clock: FakeClock) -> None:
        """Past the capture a flaky ledger is retried until the payment is booked."""
        payments.ledger.unavailable = 3
        result = await self.payment().execute(clock=clock)
        assert result.status is COMPLETED
        assert len(payments.ledger.entries) == 1

    async def test_a_ledger_that_stays_down_leaves_the_payment_for_a_person(
        self, clock: FakeClock
    ) -> None:
        """Booking exhausts its retries: FAILED, the money stays captured, nothing undone."""
        payments.ledger.unavailable = 99
        result = await self.payment().execute(clock=clock)
        assert (result.status, result.failed_step) == (FAILED, "reconcile_payment")
        assert result.compensated_steps == ()
        assert payments.gateway.captured == 250.00
        assert payments.ledger.entries == {}
