from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, TradingMode, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_seed_values_and_paper_mode() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.trading_mode is TradingMode.PAPER and s.live_allowed is False
    assert (s.risk_per_trade, s.max_daily_loss, s.min_confidence, s.max_shares) == (0.02, 0.05, 0.3, 1000)
    assert s.symbols == ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]
    assert s.database_url.startswith("sqlite:///")


def test_symbols_from_environment_are_comma_separated_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOLS", " aapl, msft ,AAPL")
    assert load_settings(_env_file=None).symbols == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RISK_PER_TRADE", "abc"),
        ("RISK_PER_TRADE", "0.5"),
        ("MAX_SHARES", "0"),
        ("TRADING_MODE", "yolo"),
        ("DATA_PROVIDER", "ftp"),
        ("DATABASE_URL", "mysql://x"),
        ("SYMBOLS", ""),
        ("MIN_CONFIDENCE", "1.5"),
        ("LOG_LEVEL", "LOUD"),
        ("BUS_MODE", "threads"),
    ],
)
def test_invalid_value_stops_with_a_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert variable in str(info.value)


def test_secret_values_never_appear_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "PKSECRETVALUE123")
    monkeypatch.setenv("RISK_PER_TRADE", "nope")
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "PKSECRETVALUE123" not in str(info.value)
    monkeypatch.delenv("RISK_PER_TRADE")
    s = load_settings(_env_file=None)
    assert "PKSECRETVALUE123" not in repr(s) and "PKSECRETVALUE123" not in str(s.model_dump())
    assert s.secret_values == ["PKSECRETVALUE123"]


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("MAX_SHARES=250\nSYMBOLS=IBM,SPY\n")
    s = load_settings(_env_file=env)
    assert s.max_shares == 250 and s.symbols == ["IBM", "SPY"]


def test_env_example_lists_every_setting_with_its_default() -> None:
    example = (REPO_ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - names == set(), f"missing from .env.example: {sorted(expected - names)}"
    assert names - expected == set(), f"unknown in .env.example: {sorted(names - expected)}"


def test_env_example_and_readme_table_are_generated_from_the_settings() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "scripts/gen_settings_docs.py", "--check"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
