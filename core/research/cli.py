"""``python main.py optimize``: an Optuna study over a strategy's declared parameter space, each trial a full pipeline
backtest, with the overfitting statistics of the winner and, on request, a true walk-forward.

``main.py`` registers the sub-command with :func:`add_optimize_parser` and dispatches to
:func:`run_optimize_command`. Output: a summary on stdout (or with ``--json`` one JSON object), a progress bar on
stderr when stderr is a terminal or with ``--progress``, the HTML study report with ``--report PATH.html``.

Exit codes: 0 done (also after Ctrl-C: the study is stored, the same command resumes it), 1 the report could not be
written, 2 invalid options, unusable data or a study name taken by another request.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from config.settings import Settings
from core.backtest.cli import _amount, _positive_int, _symbols, _train_test
from core.backtest.config import DEFAULT_CALENDAR, BacktestConfig, BacktestError, parse_param, resolve_data_dir
from core.brokers.simulated import FILL_MODELS
from core.errors import EXIT_ERROR, EXIT_OK, exit_code_for
from core.research import OBJECTIVES
from strategies.registry import STRATEGY_NAMES
from utils.cli import iso_date
from utils.jsonable import jsonable

if TYPE_CHECKING:  # the study machinery (the backtester, Optuna) loads only when a study runs
    from core.research.study import StudySpec

__all__ = ["add_optimize_parser", "run_optimize_command", "spec_from_args"]


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], e.g. 0.25: {value!r}")
    return number


def add_optimize_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "optimize",
        parents=list(parents),
        help="search a strategy's parameters (Optuna), judge the winner for overfitting, walk forward",
        description=(
            "An Optuna study over the parameter space the strategy declares; each trial is a full backtest through "
            "the daemon's agents with the risk rules as configured. The study is stored next to the database and "
            "resumed by the same command; several processes (--jobs) or machines sharing a PostgreSQL database work "
            "on one study."
        ),
    )
    p.add_argument(
        "--strategy", required=True, choices=STRATEGY_NAMES, help="the strategy whose parameters are searched"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a parameter outside the space (repeatable)",
    )
    data = p.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", help="directory of SYMBOL.csv/.parquet files (default DATA_DIR)")
    data.add_argument("--symbols", type=_symbols, metavar="A,B,...", help="symbols (default: every file)")
    data.add_argument("--start", type=iso_date, help="first session of the study (default: the data's first bar)")
    data.add_argument("--end", type=iso_date, help="last session of the study (default: the data's last bar)")
    data.add_argument("--calendar", default=DEFAULT_CALENDAR, metavar="auto|XNYS|CODE|data", help="as for backtest")
    broker = p.add_argument_group("simulated broker and risk (as for backtest)")
    broker.add_argument("--cash", type=_amount, help="starting cash (default INITIAL_CASH)")
    broker.add_argument("--commission", type=_amount, metavar="PER_SHARE", help="commission per share")
    broker.add_argument("--commission-min", type=_amount, metavar="USD", help="minimum commission per order")
    broker.add_argument("--slippage", type=_amount, metavar="BPS", help="slippage in basis points")
    broker.add_argument("--fill", choices=FILL_MODELS, default="next-open", help="fill model (default next-open)")
    broker.add_argument("--sizing", default="risk", metavar="risk|fixed-qty:N|fixed-fraction:F", help="position sizing")
    broker.add_argument("--no-risk-limits", action="store_true", help="sizing only, no risk gates (as for backtest)")
    legs = broker.add_mutually_exclusive_group()
    legs.add_argument("--brackets", dest="brackets", action="store_const", const=True, help="stop/target legs")
    legs.add_argument("--no-brackets", dest="brackets", action="store_const", const=False, help="plain entries")
    study = p.add_argument_group("study")
    study.add_argument("--objective", choices=OBJECTIVES, default="sharpe", help="what to maximise (default sharpe)")
    study.add_argument(
        "--min-trades", type=int, default=1, metavar="N", help="fewest closed trades of a feasible trial (default 1)"
    )
    study.add_argument(
        "--max-drawdown", type=_fraction, metavar="FRACTION", help="largest drawdown of a feasible trial, e.g. 0.25"
    )
    study.add_argument("--trials", type=_positive_int, default=50, help="finished trials the study holds (default 50)")
    study.add_argument("--jobs", type=_positive_int, default=1, help="local worker processes (default 1)")
    study.add_argument("--study", metavar="NAME", help="study name (default: derived from the request, so it resumes)")
    study.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    study.add_argument("--no-prune", action="store_true", help="run every trial to the end (no median pruning)")
    study.add_argument(
        "--walk-forward",
        type=_train_test,
        metavar="TRAIN:TEST",
        help="also walk forward: optimise on TRAIN sessions, trade the winner on the next TEST sessions, roll",
    )
    study.add_argument("--anchored", action="store_true", help="walk-forward training windows all start at --start")
    study.add_argument(
        "--promote",
        action="store_true",
        help="record the winner as the strategy's next champion version when its walk-forward (out-of-sample) "
        "improvement over the current champion is significant (one-sided paired t-test, p < 0.05)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--report", type=Path, metavar="PATH.html", help="write the HTML study report")
    out.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    p.set_defaults(command="optimize")
    return p


def spec_from_args(args: argparse.Namespace, settings: Settings) -> StudySpec:
    from core.research.objective import TrialSpec
    from core.research.study import StudySpec

    backtest = BacktestConfig(
        data_dir=resolve_data_dir(args.data_dir, settings),
        symbols=args.symbols,
        start=args.start,
        end=args.end,
        cash=args.cash,
        commission_per_share=args.commission,
        commission_minimum=args.commission_min,
        slippage_bps=args.slippage,
        strategy=args.strategy,
        params=dict(parse_param(text) for text in args.param),
        sizing=args.sizing.strip(),
        risk_limits=not args.no_risk_limits,
        fill=args.fill,
        brackets=args.brackets,
        shadow=False,
        calendar=args.calendar.strip(),
    )
    trial = TrialSpec(backtest, objective=args.objective, min_trades=args.min_trades, max_drawdown=args.max_drawdown)
    spec = StudySpec(
        trial, trials=args.trials, jobs=args.jobs, name=args.study, seed=args.seed, prune=not args.no_prune
    )
    spec.check()
    return spec


def _print_summary(payload: dict[str, Any], out: TextIO) -> None:
    best = payload["best"]
    print(
        f"Study {payload['study']} in {payload['storage']}: {payload['trials_by_state']}; "
        f"{payload['trials_run_here']} trials run here in {payload['elapsed_s']:.1f}s "
        f"({payload['trials_per_minute']:.1f} trials/min, {payload['jobs']} process(es))",
        file=out,
    )
    if best is None:
        print("  no feasible trial: no winner", file=out)
        return
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    print(f"  best trial #{best['number']}: {params}; objective {best['objective']:.4g}", file=out)
    print(
        f"  in sample: Sharpe {best['sharpe']}, total return {best['total_return']}, max drawdown "
        f"{best['max_drawdown']}, {best['closed_trades']} closed trades",
        file=out,
    )
    over = payload["overfitting"] or {}
    dsr, pbo, stab = over.get("deflated_sharpe"), over.get("pbo"), over.get("stability")
    if dsr:
        print(
            f"  deflated Sharpe ratio {dsr['dsr']:.3f} (Sharpe/session {dsr['sharpe']:.4f} vs {dsr['expected_max_sharpe']:.4f} "
            f"expected from the best of {dsr['trials']} unskilled trials)",
            file=out,
        )
    if pbo:
        print(f"  probability of backtest overfitting {pbo['pbo']:.2f} ({pbo['combinations']} CSCV splits)", file=out)
    if stab:
        print(
            f"  stability: {stab['neighbours']} neighbouring trials, median/chosen objective {stab['neighbour_ratio']}",
            file=out,
        )
    promotion = payload.get("promotion")
    if promotion:
        print(f"  promotion: {promotion['reason']}", file=out)
    for flag in over.get("flags", []):
        print(f"  FLAG: {flag}", file=out)
    if not over.get("flags"):
        print("  no overfitting flag raised", file=out)
    wf = payload.get("walk_forward")
    if wf:
        print(
            f"  walk-forward ({wf['mode']}, {wf['train_sessions']}:{wf['test_sessions']}, {len(wf['windows'])} windows): "
            f"OOS objective {wf['oos']['objective']}, OOS return {wf['oos']['total_return']}, "
            f"efficiency {wf['walk_forward_efficiency']}, objective ratio {wf['objective_ratio']}",
            file=out,
        )


def run_optimize_command(
    args: argparse.Namespace, settings: Settings, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    from core.research.optimize import optimize
    from core.research.study import progress_printer

    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    promote = getattr(args, "promote", False)
    if promote and args.walk_forward is None:
        print("error: --promote needs --walk-forward TRAIN:TEST (the out-of-sample record it tests)", file=err)
        return 2
    try:
        spec = spec_from_args(args, settings)
        show = args.progress or err.isatty()
        outcome = optimize(
            settings,
            spec,
            walk_forward=args.walk_forward,
            anchored=args.anchored,
            rerun_best=args.report is not None,
            progress=progress_printer(err) if show else None,
            on_window=(lambda k, n: print(f"\nwalk-forward window {k + 1}/{n}", file=err)) if show else None,
        )
    except BacktestError as exc:
        print(f"error: {exc}", file=err)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("\ninterrupted: the finished trials are stored; run the same command to resume", file=err)
        return EXIT_OK
    payload = outcome.as_json()
    if promote:
        from core.research.promotion import promote as promote_winner

        promotion = promote_winner(settings, outcome)
        payload["promotion"] = jsonable(promotion.as_dict(), decimals="float", infinities="text")
    if args.json:
        json.dump(payload, out, allow_nan=False)
        out.write("\n")
    else:
        _print_summary(payload, out)
    out.flush()
    if args.report is not None:
        from core.research.report import write_study_report

        try:
            path = write_study_report(args.report, outcome.report_data())
        except OSError as exc:
            print(f"error: cannot write the report to {args.report}: {exc}", file=err)
            return EXIT_ERROR
        print(f"report written to {path}", file=err if args.json else out)
    return EXIT_OK
