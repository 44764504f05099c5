"""The broker's simulated back office: an exchange, a risk desk, compliance and a ledger.

They keep real state, so a run's effect (and its undoing) can be seen and tested. Every call
that changes something takes the caller's idempotency key: calling again with the same key
changes nothing more, and the key is how a compensation finds what to undo.
"""

from __future__ import annotations

#: Reference prices; an order's price must lie within PRICE_BAND of them.
PRICES = {"AAPL": 150.00, "MSFT": 400.00, "XYZ": 20.00, "HALT": 10.00}
#: Trading in these symbols is suspended.
HALTED = frozenset({"HALT"})
#: Large trades in these symbols are refused by compliance.
RESTRICTED = frozenset({"XYZ"})
PRICE_BAND = 0.05
INITIAL_CASH = {"ACC-123": 2_000_000.00, "ACC-456": 1_000.00}


class OrderRefused(Exception):
    """The exchange, the risk desk, compliance or an approver said no: do not ask again."""


class LedgerUnavailable(ConnectionError):
    """The ledger did not answer: worth retrying."""


class Exchange:
    """Quotes and fills; ``reject_orders`` makes it refuse every order."""

    def __init__(self) -> None:
        self.fills: dict[str, tuple[str, str, int, float]] = {}  # key -> account, symbol, ...
        self.reject_orders = False

    async def quote(self, symbol: str) -> float:
        """The reference price of a symbol that trades."""
        if symbol not in PRICES:
            raise OrderRefused(f"{symbol} is not listed")
        if symbol in HALTED:
            raise OrderRefused(f"trading in {symbol} is halted")
        return PRICES[symbol]

    async def execute(
        self, key: str, account: str, symbol: str, quantity: int, price: float
    ) -> str:
        """Buy once per key; the fill's id."""
        if self.reject_orders:
            raise OrderRefused("the exchange rejected the order")
        self.fills.setdefault(key, (account, symbol, quantity, price))
        return f"FILL-{list(self.fills).index(key) + 1:04d}"


class Ledger:
    """Cash and positions per account, and the trades settled; ``unavailable`` fails calls."""

    def __init__(self) -> None:
        self.cash = dict(INITIAL_CASH)
        self.positions: dict[tuple[str, str], int] = {}
        self.settled: set[str] = set()
        self.unavailable = 0

    async def settle(
        self, key: str, account: str, symbol: str, quantity: int, amount: float
    ) -> None:
        """Move the cash and the shares once per key."""
        if self.unavailable:
            self.unavailable -= 1
            raise LedgerUnavailable("ledger did not answer")
        if key in self.settled:
            return
        self.cash[account] = round(self.cash[account] - amount, 2)
        self.positions[account, symbol] = self.positions.get((account, symbol), 0) + quantity
        self.settled.add(key)


class RiskDesk:
    """Holds on an account's cash, so that two trades cannot spend the same money."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.holds: dict[str, tuple[str, float]] = {}  # key -> account, amount

    async def hold(self, key: str, account: str, amount: float) -> None:
        """Set ``amount`` aside once per key, if the account can afford it."""
        if key in self.holds:
            return
        held = sum(a for acc, a in self.holds.values() if acc == account)
        free = self.ledger.cash.get(account, 0.0) - held
        if amount > free:
            raise OrderRefused(f"{account} has {free:,.2f} free, the trade needs {amount:,.2f}")
        self.holds[key] = (account, amount)

    async def release(self, key: str) -> bool:
        """Drop a hold; ``False`` when there was none."""
        return self.holds.pop(key, None) is not None


class Compliance:
    """Compliance's automatic screening of large trades, and the approvals people gave."""

    def __init__(self) -> None:
        self.approvals: dict[str, tuple[str, str]] = {}  # key -> symbol, approver

    async def screen(self, symbol: str, amount: float) -> None:
        """Refuse a large trade in a restricted symbol (changes nothing)."""
        if symbol in RESTRICTED:
            raise OrderRefused(f"compliance refuses a trade of {amount:,.2f} in {symbol}")

    async def record(self, key: str, symbol: str, approver: str) -> None:
        """Record once per key that ``approver`` approved a trade in ``symbol``."""
        self.approvals.setdefault(key, (symbol, approver))

    async def withdraw(self, key: str) -> bool:
        """Withdraw an approval; ``False`` when there was none."""
        return self.approvals.pop(key, None) is not None


class World:
    """Every service the trade saga talks to."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Initial cash, no positions, holds, approvals or fills; every service up."""
        self.exchange = Exchange()
        self.ledger = Ledger()
        self.risk = RiskDesk(self.ledger)
        self.compliance = Compliance()

    def describe(self) -> str:
        """Cash, positions, holds, approvals and fills, on one line."""
        cash = " ".join(f"{acc}={c:,.2f}" for acc, c in self.ledger.cash.items())
        positions = " ".join(f"{a}/{s}={n}" for (a, s), n in self.ledger.positions.items())
        return (
            f"cash {cash} | positions {positions or '-'} | holds {len(self.risk.holds)}"
            f" | approvals {len(self.compliance.approvals)} | fills {len(self.exchange.fills)}"
        )


world = World()
