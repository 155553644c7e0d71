"""Research that does not fool its user: parameter studies (Optuna) over full pipeline backtests, true walk-forward
optimisation, and the overfitting statistics (deflated Sharpe ratio, probability of backtest overfitting, parameter
stability) that say how much of a winner is luck.

Modules: :mod:`core.research.storage` (where a study lives), :mod:`core.research.objective` (one trial = one
backtest), :mod:`core.research.study` (running a study in one or many processes), :mod:`core.research.walkforward`,
:mod:`core.research.overfitting`, :mod:`core.research.report` (the HTML report) and :mod:`core.research.cli`
(``main.py optimize``).
"""

OBJECTIVES = ("sharpe", "sortino", "calmar", "return")  # what a study can maximise (see core.research.objective)
