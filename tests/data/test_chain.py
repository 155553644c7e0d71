"""FallbackChain over real providers: which provider served each symbol, and every provider's reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.kernel.calendar import MarketCalendar
from core.data.base import BarProvider, ProviderResult
from core.data.chain import ChainResult, FallbackChain
from core.data.files import FileProvider
from core.data.synthetic import SyntheticProvider

END = datetime(2021, 4, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def primary_dir(tmp_path: Path, daily_dir: Path) -> Path:
    directory = tmp_path / "primary"
    directory.mkdir()
    (directory / "AAPL.csv").write_bytes((daily_dir / "AAPL.csv").read_bytes())
    (directory / "SPY.csv").write_text("")  # present but unusable: must fall back
    return directory


def test_chain_satisfies_the_protocol_and_returns_a_provider_result(daily_dir: Path) -> None:
    chain = FallbackChain([FileProvider(daily_dir)])
    assert isinstance(chain, BarProvider)
    assert isinstance(chain.history(["SPY"], END), ProviderResult)


def test_chain_asks_next_provider_only_for_failed_symbols_and_records_served_by(
    primary_dir: Path, daily_dir: Path
) -> None:
    primary = FileProvider(primary_dir, name="primary")
    secondary = FileProvider(daily_dir, name="bundled")
    result = FallbackChain([primary, secondary]).history(["AAPL", "SPY", "IBM"], END)
    assert isinstance(result, ChainResult) and result.provider == "chain"
    assert result.served_by == {"AAPL": "primary", "SPY": "bundled", "IBM": "bundled"}
    assert result.errors == {}
    assert "primary" in result.fallbacks["SPY"] and "SPY.csv" in result.fallbacks["SPY"]
    assert "no file for IBM" in result.fallbacks["IBM"]
    assert "AAPL" not in result.fallbacks
    pd.testing.assert_frame_equal(result.frames["SPY"], secondary.history(["SPY"], END).frames["SPY"])


def test_chain_when_no_provider_serves_a_symbol_then_every_reason_joined(primary_dir: Path, daily_dir: Path) -> None:
    chain = FallbackChain([FileProvider(primary_dir, name="primary"), FileProvider(daily_dir, name="bundled")])
    result = chain.history(["MSFT"], END)
    assert result.frames == {} and result.served_by == {}
    reason = result.errors["MSFT"]
    assert reason.startswith("primary: no file for MSFT") and "; bundled: no file for MSFT" in reason


def test_chain_when_a_provider_raises_data_error_then_falls_back_with_its_message(
    tmp_path: Path, calendar: MarketCalendar
) -> None:
    missing = FileProvider(tmp_path / "absent", name="files")
    synthetic = SyntheticProvider(seed=1, start=date(2020, 1, 1), sessions=None, calendar=calendar)
    result = FallbackChain([missing, synthetic]).history(["AAA", "BBB"], END)
    assert result.served_by == {"AAA": "synthetic", "BBB": "synthetic"}
    assert "does not exist" in result.fallbacks["AAA"]


def test_chain_with_duplicate_provider_names_then_value_error(daily_dir: Path) -> None:
    with pytest.raises(ValueError, match="repeated"):
        FallbackChain([FileProvider(daily_dir), FileProvider(daily_dir)])


def test_chain_without_providers_then_value_error() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        FallbackChain([])
