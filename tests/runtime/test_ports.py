"""The orchestrator depends on the ports, not on the agents: it imports no agent module, and the Audit and
Execution agents provide every member of :class:`AuditPort` / :class:`ExecutionPort` with compatible parameters."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agents.audit_agent import AuditAgent
from agents.execution_agent import ExecutionAgent
from core.brokers.simulated import SimulatedBroker
from core.kernel.clock import SimulatedClock
from core.persistence.db import open_database
from core.persistence.repository import Repository
from core.runtime import orchestrator
from core.runtime.ports import AuditPort, ExecutionPort

AS_OF = datetime(2021, 3, 10, 21, tzinfo=UTC)


def _imported_modules(module: Any) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _members(port: type) -> list[str]:
    return [name for name in vars(port) if not name.startswith("_")]


def test_orchestrator_module_when_its_imports_are_read_then_none_is_an_agent_module() -> None:
    imported = _imported_modules(orchestrator)

    assert "core.runtime.ports" in imported
    assert not [name for name in imported if name == "agents" or name.startswith("agents.")]


@pytest.mark.parametrize(("port", "agent"), [(AuditPort, AuditAgent), (ExecutionPort, ExecutionAgent)])
def test_agent_when_compared_with_its_port_then_every_method_takes_the_parameters_the_orchestrator_passes(
    port: type, agent: type
) -> None:
    for name in _members(port):
        wanted = vars(port)[name]
        if isinstance(wanted, property):
            continue  # the ``last_*`` attributes: set in the agent's __init__, checked below
        have = getattr(agent, name)
        assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(wanted), name
        have_params = inspect.signature(have).parameters
        for param in inspect.signature(wanted).parameters.values():
            assert param.name in have_params, f"{agent.__name__}.{name} takes no {param.name!r}"
            assert have_params[param.name].kind == param.kind, f"{agent.__name__}.{name}({param.name})"


def test_audit_agent_when_constructed_then_it_has_every_attribute_the_port_reads(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        audit = AuditAgent(
            Repository(engine), SimulatedBroker(Decimal(100_000), started_at=AS_OF), SimulatedClock(AS_OF), "r"
        )

        for name in _members(AuditPort):
            if isinstance(vars(AuditPort)[name], property):
                assert getattr(audit, name) is None, name  # nothing recorded yet
    finally:
        engine.dispose()
