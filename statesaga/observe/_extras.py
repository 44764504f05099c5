"""Optional libraries the adapters need, imported at first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import StatesagaError


class MissingExtraError(StatesagaError, ImportError):
    """An adapter's library is not installed.

    Attributes:
        adapter: The adapter that needs it.
        module: The module that could not be imported.
        extra: The statesaga extra that installs it.
    """

    def __init__(self, adapter: str, module: str, extra: str) -> None:
        self.adapter = adapter
        self.module = module
        self.extra = extra
        super().__init__(
            f"{adapter} needs the {module!r} package, which is not installed; "
            f"install it with: pip install 'statesaga[{extra}]'"
        )


@contextmanager
def needs(adapter: str, module: str, extra: str) -> Iterator[None]:
    """Turn an ``ImportError`` raised in the block into a ``MissingExtraError``.

    Wrap the adapter's imports (made inside its constructor) in it::

        with needs("PrometheusObserver", "prometheus_client", "prometheus"):
            import prometheus_client
    """
    try:
        yield
    except ImportError as error:
        raise MissingExtraError(adapter, module, extra) from error
