"""Stage events: ``Event.find`` reaches an earlier stage of the iteration through ``previous``; the events stay
frozen, slotted and equal only by ``event_id``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from core.kernel.domain import BarsBatch
from core.kernel.events import (
    ApprovedReady,
    DataReady,
    Event,
    ExecutedReady,
    IterationStarted,
    SignalsReady,
    ValidatedReady,
)

AS_OF = datetime(2021, 3, 10, 21, tzinfo=UTC)
ITERATION = "run-000001"


def _chain() -> tuple[IterationStarted, DataReady, SignalsReady, ValidatedReady, ApprovedReady, ExecutedReady]:
    started = IterationStarted(iteration_id=ITERATION, as_of=AS_OF, seq=1)
    data = DataReady(iteration_id=ITERATION, as_of=AS_OF, previous=started, batch=BarsBatch(ITERATION, AS_OF, {}))
    signals = SignalsReady(iteration_id=ITERATION, as_of=AS_OF, previous=data)
    validated = ValidatedReady(iteration_id=ITERATION, as_of=AS_OF, previous=signals)
    approved = ApprovedReady(iteration_id=ITERATION, as_of=AS_OF, previous=validated)
    executed = ExecutedReady(iteration_id=ITERATION, as_of=AS_OF, previous=approved)
    return started, data, signals, validated, approved, executed


def test_find_when_the_stage_is_earlier_in_the_chain_then_that_very_event() -> None:
    started, data, signals, validated, approved, executed = _chain()

    assert approved.find(DataReady) is data
    assert approved.find(DataReady).batch is data.batch  # type: ignore[union-attr]
    assert executed.find(IterationStarted) is started
    assert executed.find(ValidatedReady) is validated
    assert signals.find(DataReady) is data


def test_find_when_the_event_is_itself_of_the_kind_then_the_event_itself() -> None:
    *_, approved, executed = _chain()

    assert approved.find(ApprovedReady) is approved
    assert executed.find(Event) is executed  # the nearest event of the kind: the event itself


def test_find_when_the_stage_is_later_than_the_event_then_none() -> None:
    started, data, *_ = _chain()

    assert data.find(ExecutedReady) is None  # the chain only leads back
    assert started.find(DataReady) is None


def test_find_when_the_chain_is_cut_before_the_stage_then_none() -> None:
    alone = ApprovedReady(iteration_id=ITERATION, as_of=AS_OF)  # a stage driven alone, without its previous
    cut = ApprovedReady(
        iteration_id=ITERATION,
        as_of=AS_OF,
        previous=ValidatedReady(iteration_id=ITERATION, as_of=AS_OF, previous=None),
    )

    assert alone.find(DataReady) is None
    assert cut.find(DataReady) is None
    assert cut.find(ValidatedReady) is cut.previous


def test_stage_events_when_find_is_added_then_still_frozen_slotted_and_equal_by_event_id() -> None:
    *_, approved, executed = _chain()
    twin = ExecutedReady(iteration_id=ITERATION, as_of=AS_OF, previous=approved)  # the same fields, a new event

    with pytest.raises(dataclasses.FrozenInstanceError):
        executed.previous = None  # type: ignore[misc]
    assert not hasattr(executed, "__dict__")
    assert twin != executed and twin.event_id != executed.event_id
    assert dataclasses.replace(twin) == twin  # the same event_id: the same event
    assert hash(executed) == hash(executed.event_id)
    assert twin.find(ApprovedReady) is approved
