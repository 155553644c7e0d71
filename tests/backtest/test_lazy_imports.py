"""Import hygiene: a command that computes nothing does not load the statistics libraries, and a backtest does not
load the dashboard, the LLM SDKs or statsmodels (robustness checks off). Each check runs a fresh interpreter and reads
its ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NEVER_IN_A_BACKTEST = ("streamlit", "groq", "anthropic", "statsmodels")


def _loaded(code: str, cwd: Path) -> dict[str, bool]:
    watched = (*NEVER_IN_A_BACKTEST, "scipy", "scipy.signal", "scipy.stats")
    script = f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n{code}\nimport json\n"
    script += f"print(json.dumps({{m: m in sys.modules for m in {watched!r}}}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_main_module_loads_no_statistics_library(tmp_path: Path) -> None:
    loaded = _loaded("import main", tmp_path)
    assert [m for m, present in loaded.items() if present] == []


def test_a_backtest_loads_neither_dashboard_nor_llm_sdks_nor_statsmodels(tmp_path: Path, bundled_daily: Path) -> None:
    code = f"""
import asyncio
from datetime import date
from pathlib import Path
from config.settings import Settings
from core.backtest.runner import BacktestConfig, run_backtest
settings = Settings(_env_file=None, database_url="sqlite:///{tmp_path}/bt.db", log_dir=Path({str(tmp_path)!r}) / "logs",
                    bar_cache_dir=Path({str(tmp_path)!r}) / "cache")
config = BacktestConfig(data_dir=Path({str(bundled_daily)!r}), symbols=("AAPL", "IBM"), start=date(2000, 1, 3),
                        end=date(2000, 3, 31))
result = asyncio.run(run_backtest(settings, config))
assert result.iterations > 0
"""
    loaded = _loaded(code, tmp_path)
    assert {m: loaded[m] for m in NEVER_IN_A_BACKTEST} == dict.fromkeys(NEVER_IN_A_BACKTEST, False)
