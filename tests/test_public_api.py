from __future__ import annotations

import statesaga


def test_public_api_is_pinned() -> None:
    """The curated public names stay exactly these (sorted, explicit)."""
    assert statesaga.__all__ == sorted(statesaga.__all__)
    assert {
        "Saga",
        "Step",
        "Retry",
        "SagaStatus",
        "SagaResult",
        "compile_saga",
        "CompiledSaga",
        "NonRetryableError",
        "StatesagaError",
        "InvalidSagaError",
    } <= set(statesaga.__all__)
    for name in statesaga.__all__:
        assert hasattr(statesaga, name), name


def test_status_values_are_strings() -> None:
    """SagaStatus compares equal to its documented string values."""
    assert [s.value for s in statesaga.SagaStatus] == ["completed", "compensated", "failed"]
    assert statesaga.SagaStatus.COMPLETED == "completed"


def test_error_hierarchy_has_one_root() -> None:
    """Every statesaga error derives from StatesagaError."""
    for name in statesaga.__all__:
        obj = getattr(statesaga, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, statesaga.StatesagaError), name


def test_testing_kit_is_importable() -> None:
    """fail_step lives in statesaga.testing."""
    from statesaga.testing import FakeClock, fail_step

    assert callable(fail_step)
    assert callable(FakeClock)
