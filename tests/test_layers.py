"""Imports only point down the layers (the README's "Architecture" section).

Every module of the project belongs to one layer of ``LAYERS`` (the longest matching prefix); a module may import its
own layer and the layers listed before it, never one listed after it. The check reads every ``import`` statement with
``ast``, including the ones inside functions (a lazy import is still a dependency), so moving an import into a function
does not hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first: each entry may import itself and anything above it in this list
LAYERS: tuple[str, ...] = (
    "core",  # the package marker itself; a core module missing from this list falls here and may import nothing
    "core.errors",
    "core.vocabulary",
    "utils",
    "core.kernel",
    "strategies",
    "core.brokers",
    "core.data",
    "core.llm",
    "core.persistence",
    "config",
    "core.risk",
    "core.analytics",
    "core.quant",
    "core.notify",
    "agents",
    "core.runtime",
    "core.backtest",
    "core.research",
    "core.dashboard",
    "scripts",
    "main",
)

SOURCE_DIRS = ("core", "agents", "strategies", "utils", "config", "scripts")


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of the longest layer that ``module`` is or sits inside; None for third-party modules."""
    best: tuple[int, int] | None = None
    for index, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            if best is None or len(layer) > best[0]:
                best = (len(layer), index)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; ``from x import y`` also yields ``x.y`` (y may be a
    submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = ".".join(base_parts[: len(base_parts) - drop] if drop else base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*")
    return found


def project_sources() -> list[Path]:
    files = [ROOT / "main.py"]
    for folder in SOURCE_DIRS:
        files.extend(p for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts or p.name != "env.py")
    return sorted(files)


def upward_imports() -> list[str]:
    problems: list[str] = []
    for path in project_sources():
        module = module_name(path)
        own = layer_of(module)
        assert own is not None, f"{path.relative_to(ROOT)} belongs to no layer: add it to LAYERS"
        for line, target in imported_modules(path, module):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer > own:
                problems.append(
                    f"{path.relative_to(ROOT)}:{line} ({LAYERS[own]}) imports {target} ({LAYERS[target_layer]})"
                )
    return sorted(set(problems))


def test_every_import_points_down_the_layers() -> None:
    problems = upward_imports()
    assert not problems, "imports that point up the layers:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("core.kernel.domain", "core.kernel"),
        ("core.risk.positions", "core.risk"),
        ("core.analytics.reporting.trips", "core.analytics"),
        ("agents.risk_agent", "agents"),
        ("core.runtime.app", "core.runtime"),
        ("scripts.query_trades", "scripts"),
    ],
)
def test_modules_map_to_their_layer(module: str, expected: str) -> None:
    index = layer_of(module)
    assert index is not None and LAYERS[index] == expected


def test_the_check_sees_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text("def f():\n    from agents.risk_agent import RiskAgent\n    return RiskAgent\n", encoding="utf-8")
    targets = [target for _, target in imported_modules(source, "core.kernel.sample")]
    assert "agents.risk_agent" in targets
    assert layer_of("agents.risk_agent") > layer_of("core.kernel.sample")  # type: ignore[operator]


def test_relative_imports_resolve_to_the_package() -> None:
    path = ROOT / "core" / "brokers" / "alpaca" / "__init__.py"
    targets = {target for _, target in imported_modules(path, "core.brokers.alpaca")}
    assert all(not t.startswith(".") for t in targets)
