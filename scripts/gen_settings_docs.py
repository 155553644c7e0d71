#!/usr/bin/env python3
"""Regenerate `.env.example` and the configuration table of README.md from config/settings.py.

python scripts/gen_settings_docs.py          # rewrite both
python scripts/gen_settings_docs.py --check  # exit 1 if either is out of date (the test suite runs this check)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.settings import Settings  # noqa: E402

GROUPS = [
    (
        "Universe and schedule",
        [
            "symbols",
            "strategy",
            "schedule",
            "run_at_minutes_after_open",
            "loop_interval_seconds",
            "iteration_deadline_seconds",
            "history_bars",
            "benchmark_symbol",
            "strategy_params",
            "shadow_ledger",
            "bus_mode",
        ],
    ),
    (
        "Trading mode and broker (paper is the default; live needs TRADING_MODE=live AND LIVE_ALLOWED=true)",
        [
            "trading_mode",
            "live_allowed",
            "broker",
            "initial_cash",
            "commission_per_share",
            "commission_minimum",
            "commission_max_pct",
            "slippage_bps",
        ],
    ),
    (
        "Market data",
        [
            "data_provider",
            "data_dir",
            "synthetic_seed",
            "data_fallback",
            "bar_cache_dir",
            "bar_cache_ttl_seconds",
            "alpaca_data_feed",
            "alpaca_data_url",
            "alpaca_trading_url",
            "alpaca_trade_stream",
            "alpaca_stream_url",
            "alpaca_timeout_seconds",
            "alpaca_rate_limit_per_minute",
            "alpaca_max_retry_wait_seconds",
        ],
    ),
    (
        "Persistence, logging and health",
        [
            "database_url",
            "db_statement_timeout_seconds",
            "db_lock_timeout_seconds",
            "log_level",
            "log_dir",
            "log_retention_days",
            "log_json",
            "health_grace_minutes",
        ],
    ),
    (
        "Risk limits and circuit breakers",
        [
            "risk_per_trade",
            "max_daily_loss",
            "min_confidence",
            "max_shares",
            "stop_atr_multiple",
            "kelly_fraction",
            "data_quality_min",
            "data_gap_sessions",
            "drawdown_lock",
            "drawdown_lock_sessions",
            "drawdown_reducing_sessions",
            "drawdown_reducing_size",
            "drawdown_halt",
            "trail_atr_multiple",
            "trail_percent",
            "time_stop_sessions",
            "pdt_guard",
            "gap_guard",
            "broker_error_threshold",
            "broker_backoff_seconds",
        ],
    ),
    (
        "LLM strategy selection and audit narration (optional)",
        [
            "llm_selector_provider",
            "llm_fallback_provider",
            "groq_model",
            "anthropic_model",
            "audit_model",
            "llm_selection",
            "audit_narrative",
            "llm_timeout_seconds",
            "llm_chunk_size",
            "llm_daily_max_calls",
            "llm_daily_max_usd",
            "llm_breaker_threshold",
            "llm_breaker_cooldown_seconds",
            "llm_blind_past",
            "llm_sim_daily_max_calls",
            "llm_sim_daily_max_usd",
            "groq_reasoning_effort",
            "llm_provider_order",
            "groq_base_url",
            "anthropic_base_url",
        ],
    ),
    (
        "Notifications (optional; NOTIFY_URLS is a secret: its tokens are never logged or stored)",
        ["notify_urls", "notify_kinds", "notify_timeout_seconds"],
    ),
    (
        "Secrets (never logged or stored; leave empty to run offline)",
        ["alpaca_api_key", "alpaca_secret_key", "groq_api_key", "anthropic_api_key"],
    ),
]
PATH_DEFAULTS = {
    "data_dir": "data/daily",
    "log_dir": "logs",
    "bar_cache_dir": "var/bars",
    "database_url": "sqlite:///var/trading.db",
}
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def default_text(name: str) -> str:
    field = Settings.model_fields[name]
    if name in PATH_DEFAULTS:
        return PATH_DEFAULTS[name]
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if name == "symbols":
        return ",".join(value)
    if value is None:
        return ""
    if hasattr(value, "value"):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def env_example() -> str:
    grouped = [n for _, names in GROUPS for n in names]
    missing = set(Settings.model_fields) - set(grouped)
    if missing:
        raise SystemExit(f"settings missing from GROUPS in {__file__}: {sorted(missing)}")
    out = [
        "# agent-trader settings. Copy to .env and uncomment what you change; every line shows the default.",
        "# Environment variables override .env. An invalid value stops start-up with a message naming the variable.",
        "# Relative paths are relative to the working directory; the defaults live under the project directory.",
        "",
    ]
    for title, names in GROUPS:
        out.append(f"# --- {title} ---")
        for name in names:
            out.append(f"# {Settings.model_fields[name].description}")
            out.append(f"# {name.upper()}={default_text(name)}")
        out.append("")
    return "\n".join(out)


def readme_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for _, names in GROUPS:
        for name in names:
            description = Settings.model_fields[name].description
            if description is None:
                raise SystemExit(f"setting {name} has no description: every setting needs one for the README")
            default = default_text(name).replace("|", "\\|")
            rows.append(
                f"| `{name.upper()}` | `{default}` | {description.replace('|', '/')} |"
                if default
                else f"| `{name.upper()}` | | {description} |"
            )
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{readme_table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    env_path, readme_path = ROOT / ".env.example", ROOT / "README.md"
    readme = readme_path.read_text()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {BEGIN} ... {END} markers")
    wanted = {env_path: env_example(), readme_path: readme_with_table(readme)}
    stale = [p.name for p, text in wanted.items() if p.read_text() != text]
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run python scripts/gen_settings_docs.py)")
            return 1
        return 0
    for path, text in wanted.items():
        path.write_text(text)
    print("wrote " + ", ".join(p.name for p in wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
