"""The shared vocabulary is the same text as the bare strings it replaced: nothing written or shown changes."""

import json

from core.kernel.domain import Decision
from core.vocabulary import AgentName, DecisionAction, StateKey, denied, state_key


def test_members_when_formatted_then_equal_their_plain_strings() -> None:
    assert [str(a) for a in AgentName] == [
        "data",
        "selector",
        "strategy",
        "quant",
        "risk",
        "execution",
        "audit",
        "positions",
    ]
    assert StateKey.RISK_STATE == "risk:state" and f"{StateKey.HEARTBEAT}" == "heartbeat"
    assert json.dumps({StateKey.LLM_BREAKER: DecisionAction.NOT_LISTED}) == '{"breaker:llm_selection": "not_listed"}'


def test_state_key_when_namespaced_then_run_id_prefix() -> None:
    assert state_key(StateKey.RISK_STATE) == "risk:state"
    assert state_key(StateKey.BROKER_BREAKER, "replay-1:") == "replay-1:breaker:broker"


def test_denied_when_given_a_rule_then_prefixed_action() -> None:
    assert denied("max_positions") == "denied:max_positions"


def test_decision_when_built_from_members_then_holds_plain_strings() -> None:
    d = Decision(AgentName.RISK, "AAPL", DecisionAction.SKIP, "why")
    assert type(d.agent) is str and type(d.action) is str
    assert d == Decision("risk", "AAPL", "skip", "why") and repr(d) == repr(Decision("risk", "AAPL", "skip", "why"))
