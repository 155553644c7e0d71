"""The state every part of :class:`.SimulatedBroker` shares, declared once for the type checker.

``SimulatedBroker`` is assembled from parts (matching, ledger, brackets, snapshot) that read and write one account;
:class:`_BrokerState` is their common base: it declares the attributes ``SimulatedBroker.__init__`` sets and, for the
type checker only, the methods one part calls on another. It adds nothing at run time (annotations only)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.brokers.base import AccountState
from core.brokers.costs import CommissionModel, SlippageModel
from core.brokers.simulated.book import _FrameView, _Holding, _Mark, _Record
from core.kernel.domain import Fill, Position


class _BrokerState:
    name: str
    _commission: CommissionModel
    _slippage: SlippageModel
    _fill_model: str
    _max_volume_share: float | None
    _share: Decimal | None
    _initial_cash: Decimal
    _cash: Decimal
    _total_commissions: Decimal
    _realized_total: Decimal
    _as_of: datetime | None
    _seq: int
    _records: dict[str, _Record]
    _open: dict[str, None]  # working client order ids, insertion-ordered
    _holdings: dict[str, _Holding]
    # per symbol: the holding's quantity, basis, mark, opened_at, realized, the average price and the Position built
    _position_cache: dict[str, tuple[int, Decimal, _Mark | None, datetime, Decimal, Decimal, Position]]
    _cursors: dict[str, pd.Timestamp]
    _marks: dict[str, _Mark]
    _checked_frames: dict[str, pd.DataFrame]
    _frames: dict[str, _FrameView]
    _used: dict[str, tuple[pd.Timestamp, int]]
    _fills: list[Fill]
    _reported_fills: int
    _changed: dict[str, None]
    _version: int
    _account: tuple[int, AccountState] | None
    _sessions: list[date]  # the last five sessions seen (bars), oldest first
    _day_trades: list[tuple[date, str]]  # (session, symbol) of each day trade within those sessions
    _bought_in: dict[str, date]  # the session of each symbol's latest buy fill
    _pattern_day_trader: bool

    if TYPE_CHECKING:  # defined by one part, called by another

        def _fill_cost(self, record: _Record, quantity: int, price: Decimal) -> Decimal: ...

        def _affordable(self, record: _Record, quantity: int, price: Decimal) -> int: ...

        def _fill(
            self, record: _Record, quantity: int, price: Decimal, at: datetime, child_anchor: pd.Timestamp
        ) -> None: ...

        def _held(self, symbol: str) -> int: ...

        def _count_day_trade(self, symbol: str, side: Any, session: date) -> None: ...

        def _grow_children(self, parent: _Record, quantity: int, at: datetime, anchor: pd.Timestamp) -> None: ...

        def _one_cancels_other(self, leg: _Record, at: datetime) -> None: ...

        def _cap_children(self, symbol: str, at: datetime) -> None: ...

        def _terminate(self, record: _Record, reason: str, at: datetime) -> None: ...

        def _working_records(self) -> list[_Record]: ...
