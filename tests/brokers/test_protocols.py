"""The broker protocols: the simulated broker is the one the runtime persists (snapshot/restore); Alpaca's is resumed
from the ledger (tests/alpaca_trading/test_account.py)."""

from __future__ import annotations

from decimal import Decimal

from core.brokers.base import Broker, PersistentBroker, ResumableBroker
from core.brokers.simulated import SimulatedBroker


def test_simulated_broker_when_checked_then_a_persistent_broker_and_not_a_resumable_one() -> None:
    broker = SimulatedBroker(Decimal("10000"))

    assert isinstance(broker, Broker) and isinstance(broker, PersistentBroker)
    assert not isinstance(broker, ResumableBroker)
    restored = SimulatedBroker(Decimal("500"))
    restored.restore(broker.snapshot(history=10))  # what the runtime does across a restart
    assert restored.snapshot() == broker.snapshot()
