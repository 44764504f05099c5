"""The Prometheus adapter's default histogram buckets, in seconds."""

from __future__ import annotations

#: Step and compensation durations, seconds: from a local call to a slow remote service.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
#: Whole-run durations, seconds: runs include retries' pauses, so they reach further.
DEFAULT_RUN_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
#: How long waits wait, seconds: from a prompt webhook to a week's cooling-off period.
DEFAULT_WAIT_BUCKETS: tuple[float, ...] = (
    0.1,
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    14400.0,
    86400.0,
    259200.0,
    604800.0,
)
