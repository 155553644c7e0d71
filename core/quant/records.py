"""The track record of one strategy on one symbol, precomputed once per bars frame.

Track record (per symbol, per strategy)
---------------------------------------
A non-HOLD signal at bar *i* is **complete** at *t* when ``i + horizon <= t`` (its outcome is known). Its **signed
forward return** is ``r = d × (close[i + horizon] / close[i] − 1)`` with ``d = +1`` for BUY and ``−1`` for SELL (a
SELL wins when the price falls). The record at *t* is the last ``lookback_signals`` (N, default 20) complete signals,
in signal order, ``r_1 … r_n`` with ``n <= N``:

* **hit rate**, shrunk toward 1/2 with a Beta(1, 1) prior: ``(wins + 1) / (n + 2)`` where a win is ``r > 0``;
* **expectancy**: ``mean(r)`` (a fraction per signal; ``None`` when ``n = 0``);
* **Sharpe** of the signal-following returns: ``mean(r) / std(r)`` with the sample standard deviation (ddof = 1),
  per signal and not annualised (signals overlap in time, so ``sqrt(252 / horizon)`` would overstate it). It is the
  Sharpe of ``core.analytics.metrics`` with ``periods_per_year = 1`` and no risk-free rate. ``None`` when ``n < 2`` or the
  returns are constant;
* **maximum drawdown** of the compounded record, as if each signal in turn had been followed with the whole
  capital for ``horizon`` bars: ``E_0 = 1``, ``E_k = E_{k-1} × max(1 + r_k, 0)``, drawdown ``1 − E_k / max_{j<=k} E_j``
  (the starting value counts as a peak), maximum over ``k = 1..n``, in [0, 1]. This is the definition of
  ``core.analytics.metrics.drawdown_series`` applied to that curve. ``None`` when ``n = 0``.

Because the record only depends on *how many* signals are complete, all four statistics are precomputed for every
possible count ``k = 0..K`` (a sliding window over the signed returns, vectorised) and read at
``k = searchsorted(known_at, t, side="right")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from core.quant.config import ZERO_STD


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """The track record of one strategy on one symbol, precomputed for every number of complete signals.

    ``signal_idx``/``known_at``/``signed_return`` describe each signal whose outcome exists in the frame (in bar
    order, so ``known_at`` is increasing). The ``by_count`` arrays have ``K + 1`` rows: row ``k`` holds the statistics
    of the record when exactly ``k`` signals are complete (the last ``lookback`` of them).
    """

    signal_idx: np.ndarray
    known_at: np.ndarray
    signed_return: np.ndarray
    n: np.ndarray
    wins: np.ndarray
    expectancy: np.ndarray
    sharpe: np.ndarray
    max_drawdown: np.ndarray

    def completed_at(self, t: int) -> int:
        """How many signals are complete at bar ``t`` (outcome bar ``<= t``)."""
        return int(np.searchsorted(self.known_at, t, side="right"))


def signal_record(actions: np.ndarray, close: np.ndarray, horizon: int, lookback: int) -> SignalRecord:
    """Vectorised :class:`SignalRecord` of a signal column (1 BUY, −1 SELL, 0 HOLD) over closes of the same length."""
    actions = np.asarray(actions)
    close = np.asarray(close, dtype=float)
    if actions.shape != close.shape:
        raise ValueError(f"actions and close must have the same length, got {actions.shape} and {close.shape}")
    idx = np.flatnonzero(actions != 0)
    known = idx + horizon
    keep = known < len(close)
    idx, known = idx[keep], known[keep]
    direction = np.sign(actions[idx]).astype(float)
    r = direction * (close[known] / close[idx] - 1.0)

    # row k of `windows` is r[k - lookback : k], NaN-padded on the left: the record when k signals are complete
    padded = np.concatenate([np.full(lookback, np.nan), r])
    windows = sliding_window_view(padded, lookback)
    valid = ~np.isnan(windows)
    n = valid.sum(axis=1)
    wins = (windows > 0).sum(axis=1)  # NaN > 0 is False
    filled = np.where(valid, windows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, filled.sum(axis=1) / np.maximum(n, 1), np.nan)
        dev = np.where(valid, windows - mean[:, None], 0.0)
        var = np.where(n > 1, (dev * dev).sum(axis=1) / np.maximum(n - 1, 1), np.nan)
        std = np.sqrt(var)
        sharpe = np.where(std > ZERO_STD, mean / std, np.nan)
    growth = np.where(valid, np.maximum(1.0 + filled, 0.0), 1.0)
    equity = np.cumprod(np.concatenate([np.ones((len(windows), 1)), growth], axis=1), axis=1)
    peak = np.maximum.accumulate(equity, axis=1)  # >= 1: the start is a peak
    drawdown = np.where(n > 0, (1.0 - equity / peak).max(axis=1), np.nan)
    return SignalRecord(idx, known, r, n, wins, mean, sharpe, drawdown)
