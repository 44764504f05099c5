"""Trade execution: a saga with a pivot (the trade) and a step that applies only to some trades."""

from .main import TradeExecutionSaga

__all__ = ["TradeExecutionSaga"]
