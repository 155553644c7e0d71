"""Backtesting on the live pipeline: robustness checks, the HTML report and an independent reference backtester.

* :mod:`core.backtest.robustness` — bootstrap confidence intervals, walk-forward windows, Ljung-Box / t-tests.
* :mod:`core.backtest.report` — a self-contained HTML report (inline CSS and SVG, no external resources).
* :mod:`core.backtest.reference` — a deliberately naive MA-crossover backtester used to cross-check the pipeline.

Import from the submodules; this package imports nothing on its own, so loading one part (e.g. the report) does
not pull in scipy/statsmodels.
"""
