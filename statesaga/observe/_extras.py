"""Optional libraries the adapters need, imported at first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import MissingExtraError as MissingExtraError


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
