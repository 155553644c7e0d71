"""Helpers shared by the backtest tests."""

from __future__ import annotations

import argparse
import io

from config.settings import Settings
from core.backtest.cli import add_backtest_parser, run_backtest_command


def backtest_cli(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """``main.py backtest ARGV`` through the command's real parser and runner with ``settings``: (exit code, stdout,
    stderr)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db")
    parser = argparse.ArgumentParser()
    add_backtest_parser(parser.add_subparsers(dest="command"), [common])
    args = parser.parse_args(["backtest", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_backtest_command(args, settings, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()
