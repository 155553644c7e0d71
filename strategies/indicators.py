"""Causal, vectorised indicator kernels on numpy arrays.

Every function takes 1-D float arrays (one value per bar, oldest first) and returns a new float64 array of the
same length; the value at position ``t`` depends only on positions ``<= t``.  Positions without enough data are
NaN.  Each also takes a 2-D array of several series of the same length (one per row, bars along the last axis) and
treats every row exactly as it would the row alone: the same operations in the same order, so each output row equals
the 1-D result bit for bit (``tests/strategies/test_batch.py``).  That is how the shadow ledger evaluates a strategy
over 500 symbols in one pass instead of 500 (numpy's cost on a 300-bar series is mostly per call, not per bar).

Why not call pandas-ta directly?  The definitions below are pandas-ta's (``tests/strategies/test_indicators.py``
checks each one against ``pandas_ta`` on the bundled daily bars), but pandas-ta 0.4.71b0 costs 0.5-2 ms per call
for RSI/ATR/Bollinger/Donchian/ADX on 300 bars (the strategy budget is ~0.2 ms per symbol per strategy),
``pandas_ta.sma(length=1)`` raises, and importing ``pandas_ta`` emits a ``Pandas4Warning`` (so it fails under
``-W error``).

NaN policy: a rolling window containing a NaN yields NaN; Wilder smoothing skips NaN inputs (the average carries
over the gap and the output is NaN on the NaN bar itself).  Divisions by zero yield NaN/inf silently (callers treat
non-finite values as "no signal"); no numpy warning escapes these functions.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike

FloatArray = np.ndarray


def preload() -> None:
    """Import now what the kernels load on first use (scipy.signal: 0.5-1 s of CPU). The daemon calls it at start-up,
    so that its first iteration after the close does not pay it; commands that compute nothing never do."""
    import scipy.signal  # noqa: F401


def _as_float(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _check_length(length: int) -> None:
    if int(length) != length or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")


def _windows(x: FloatArray, length: int) -> np.ndarray:
    """Read-only ``(..., n - length + 1, length)`` view of the trailing windows of ``x`` along its last axis
    (``length <= n``).

    ``as_strided`` instead of ``sliding_window_view``: the same view without ~6 us of argument checking per call.
    """
    step = x.strides[-1]
    shape = (*x.shape[:-1], x.shape[-1] - length + 1, length)
    return as_strided(x, shape=shape, strides=(*x.strides[:-1], step, step), writeable=False)


def shift(x: FloatArray, periods: int = 1) -> FloatArray:
    """``x`` moved ``periods`` (>= 0) bars later; the first ``periods`` values are NaN."""
    x = _as_float(x)
    if periods < 0:
        raise ValueError("shift only looks backwards: periods must be >= 0")
    out = np.full(x.shape, np.nan)
    if periods < x.shape[-1]:
        out[..., periods:] = x[..., : x.shape[-1] - periods]
    return out


def sma(x: FloatArray, length: int) -> FloatArray:
    """Simple moving average over ``length`` bars (``pandas_ta.sma``); ``length=1`` is ``x`` itself."""
    _check_length(length)
    x = _as_float(x)
    out = np.full(x.shape, np.nan)
    if length <= x.shape[-1]:
        out[..., length - 1 :] = np.add.reduce(_windows(x, length), axis=-1) / length
    return out


def rolling_max(x: FloatArray, length: int) -> FloatArray:
    _check_length(length)
    x = _as_float(x)
    out = np.full(x.shape, np.nan)
    if length <= x.shape[-1]:
        out[..., length - 1 :] = np.maximum.reduce(_windows(x, length), axis=-1)
    return out


def rolling_min(x: FloatArray, length: int) -> FloatArray:
    _check_length(length)
    x = _as_float(x)
    out = np.full(x.shape, np.nan)
    if length <= x.shape[-1]:
        out[..., length - 1 :] = np.minimum.reduce(_windows(x, length), axis=-1)
    return out


def rolling_std(x: FloatArray, length: int, ddof: int = 0) -> FloatArray:
    """Rolling standard deviation (divisor ``length - ddof``); NaN where the divisor would be <= 0."""
    _check_length(length)
    x = _as_float(x)
    out = np.full(x.shape, np.nan)
    if length <= x.shape[-1] and length - ddof > 0:
        out[..., length - 1 :] = _windows(x, length).std(axis=-1, ddof=ddof)
    return out


def wilder(x: FloatArray, length: int, *, seed: str = "first") -> FloatArray:
    """Wilder's moving average (``pandas_ta.rma``: an EMA with ``alpha = 1/length``, ``adjust=False``).

    ``seed="first"``: the first finite value starts the average (pandas-ta's ``rma``, used by its RSI).
    ``seed="sma"``: the value at position ``length - 1`` is the mean of the finite values among the first
    ``length`` inputs and everything before it is NaN (pandas-ta's ATR "presma" seeding).
    """
    _check_length(length)
    if seed not in ("first", "sma"):
        raise ValueError(f"seed must be 'first' or 'sma', got {seed!r}")
    x = _as_float(x)
    if x.ndim == 2:
        return _wilder_rows(x, length, seed)
    return _wilder_1d(x, length, seed)


def _wilder_1d(x: FloatArray, length: int, seed: str) -> FloatArray:
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n == 0:
        return out
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    if seed == "sma":
        if n < length:
            return out
        head = finite[:length]
        if all_finite:
            start = length - 1
            start_value = float(np.add.reduce(x[:length]) / length)
        elif head.any():
            start = length - 1
            start_value = float(np.add.reduce(x[:length][head]) / np.count_nonzero(head))
        else:
            # No usable seed in the first window: the first finite value afterwards starts the average.
            later = np.flatnonzero(finite[length:])
            if later.size == 0:
                return out
            start = length + int(later[0])
            start_value = float(x[start])
    else:
        if all_finite:
            start = 0
        else:
            valid = np.flatnonzero(finite)
            if valid.size == 0:
                return out
            start = int(valid[0])
        start_value = float(x[start])

    out[start] = start_value
    if start + 1 == n:
        return out
    from scipy.signal import lfilter  # scipy.signal takes ~1 s to import: only when an indicator is computed

    decay = 1.0 - 1.0 / length
    numerator, denominator = np.array([1.0 / length]), np.array([1.0, -decay])
    zi = np.array([decay * start_value])
    tail, tail_finite = x[start + 1 :], finite[start + 1 :]
    if all_finite or tail_finite.all():
        out[start + 1 :] = lfilter(numerator, denominator, tail, zi=zi)[0]
    else:
        segment = out[start + 1 :]
        segment[tail_finite] = lfilter(numerator, denominator, tail[tail_finite], zi=zi)[0]
    return out


def _wilder_rows(x: FloatArray, length: int, seed: str) -> FloatArray:
    """:func:`wilder` of every row of ``x``. Rows whose NaNs are all leading (the usual case: none, or the first bar's
    undefined change) are smoothed together, grouped by where their average starts, with the 1-D path's arithmetic;
    any other row goes through the 1-D path itself."""
    from scipy.signal import lfilter

    rows, n = x.shape
    out = np.full(x.shape, np.nan)
    if n == 0 or rows == 0:
        return out
    finite = np.isfinite(x)
    leading = np.where(finite.any(axis=1), finite.argmax(axis=1), n)  # NaNs before the first finite value
    # leading NaNs only: every value from the first finite one on is finite
    simple = finite.sum(axis=1) == n - leading
    for r in np.flatnonzero(~simple):
        out[r] = _wilder_1d(x[r], length, seed)
    decay = 1.0 - 1.0 / length
    numerator, denominator = np.array([1.0 / length]), np.array([1.0, -decay])
    for k in np.unique(leading[simple]):
        group = np.flatnonzero(simple & (leading == k))
        k = int(k)
        if k >= n:  # nothing finite: all NaN, as the 1-D path
            continue
        if seed == "sma":
            if n < length:
                continue
            if k == 0:
                start = length - 1
                start_value = np.add.reduce(x[group, :length], axis=-1) / length
            elif k < length:
                start = length - 1
                start_value = np.add.reduce(x[group, k:length], axis=-1) / (length - k)
            else:
                start = k
                start_value = x[group, k]
        else:
            start = k
            start_value = x[group, k]
        out[group, start] = start_value
        if start + 1 == n:
            continue
        zi = (decay * start_value)[:, None]
        out[group, start + 1 :] = lfilter(numerator, denominator, x[group, start + 1 :], axis=-1, zi=zi)[0]
    return out


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """max(high - low, |high - prev close|, |low - prev close|); the first bar is high - low (NaN terms skipped)."""
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    prev_close = shift(close, 1)
    return np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))


def atr(high: FloatArray, low: FloatArray, close: FloatArray, length: int = 14) -> FloatArray:
    """Average true range, Wilder smoothing seeded with the SMA of the first ``length`` true ranges
    (``pandas_ta.atr``); first value at position ``length - 1``."""
    return wilder(true_range(high, low, close), length, seed="sma")


def roc(x: FloatArray, length: int) -> FloatArray:
    """Rate of change in percent: ``100 * (x[t] / x[t - length] - 1)`` (``pandas_ta.roc``)."""
    _check_length(length)
    x = _as_float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (x / shift(x, length) - 1.0)


def rsi(close: FloatArray, length: int = 14) -> FloatArray:
    """Relative strength index with Wilder smoothing (``pandas_ta.rsi`` without TA-Lib).

    Gains and losses are smoothed from the first price change on; 0/0 (a flat stretch since the start) is NaN.
    """
    _check_length(length)
    close = _as_float(close)
    change = np.empty(close.shape)
    change[..., :1] = np.nan
    np.subtract(close[..., 1:], close[..., :-1], out=change[..., 1:])
    gain = np.maximum(change, 0.0)  # NaN stays NaN
    loss = np.maximum(-change, 0.0)
    avg_gain = wilder(gain, length, seed="first")
    avg_loss = wilder(loss, length, seed="first")
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * avg_gain / (avg_gain + avg_loss)


def adx(
    high: FloatArray, low: FloatArray, close: FloatArray, length: int = 14
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Average directional index and the directional indicators ``(adx, plus_di, minus_di)``
    (``pandas_ta.adx`` without TA-Lib: ATR without the first bar's true range, Wilder smoothing)."""
    _check_length(length)
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    tr = true_range(high, low, close)
    if tr.size:
        tr[..., 0] = np.nan
    average_range = wilder(tr, length, seed="sma")
    up = high - shift(high, 1)
    down = shift(low, 1) - low
    plus_dm = np.where((up > down) & (up > 0.0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0.0), down, 0.0)
    undefined = np.isnan(up) | np.isnan(down)
    plus_dm[undefined] = np.nan
    minus_dm[undefined] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = 100.0 * wilder(plus_dm, length, seed="first") / average_range
        minus_di = 100.0 * wilder(minus_dm, length, seed="first") / average_range
        dx = 100.0 * np.abs(plus_di - minus_di) / (plus_di + minus_di)
    dx[~np.isfinite(dx)] = np.nan
    return wilder(dx, length, seed="first"), plus_di, minus_di


def crossed_above(x: FloatArray, level: FloatArray | float) -> np.ndarray:
    """True where ``x`` moves from ``<= level`` on the previous bar to ``> level`` on this bar (NaN: False)."""
    x = _as_float(x)
    if np.ndim(level) == 0:
        return (shift(x, 1) <= level) & (x > level)
    level = _as_float(level)
    return (shift(x, 1) <= shift(level, 1)) & (x > level)


def crossed_below(x: FloatArray, level: FloatArray | float) -> np.ndarray:
    """True where ``x`` moves from ``>= level`` on the previous bar to ``< level`` on this bar (NaN: False)."""
    x = _as_float(x)
    if np.ndim(level) == 0:
        return (shift(x, 1) >= level) & (x < level)
    level = _as_float(level)
    return (shift(x, 1) >= shift(level, 1)) & (x < level)
