"""A simulated, long-only cash broker that fills orders on the iteration's daily bars.

The daemon, the paper runner, the replay demo and the backtester all talk to this class through the
:class:`core.brokers.base.Broker` protocol. It never reads a clock: time comes from ``batch.as_of`` (``sync``) and
from the ``now`` argument (``submit``, ``cancel``, ``replace_stop``); fills are stamped with the timestamp of the bar
they happened on.

Conventions (each one is exercised by ``tests/brokers``)
--------------------------------------------------------

Timing
    * ``fill_model="next-open"`` (default): an order may only fill on bars strictly after its *anchor*, the later of
      the symbol's last visible bar at submission and the submission date (``now`` truncated to midnight UTC). With
      daily bars that is the next session; its first chance is that session's open. A fill found by a later ``sync``
      is stamped with its bar's timestamp (session date, midnight UTC), i.e. after ``submitted_at``.
    * ``fill_model="same-close"``: at submission the order is tried once against the close of the symbol's last
      visible bar, as if that close were an opening price (a market order fills there; a limit or stop only if the
      close is through its price). Whatever is not filled keeps working from the next bar as above. Same-close fills
      are stamped ``now``. The close used is the symbol's latest known one, even if the symbol was missing from the
      most recent batch.
    * ``sync`` processes, for every symbol in the batch, every visible bar after the last one it processed, in time
      order across symbols, so missed iterations skip no bar. Symbols missing from a batch keep their orders working.
      A symbol seen for the first time has no orders (submission needs a price), so its history is not replayed.
    * Orders are good-till-cancelled; nothing expires.

Execution on one bar (two phases, sells before buys within each phase, then submission order)
    1. *Open*: market orders (and triggered stops) fill at the open; a limit whose price the open is already
       through fills at the open (never worse than the limit); a stop the open has gapped through fills at the open.
    2. *Intrabar*: a limit whose price lies within the bar's range fills at the limit (a touch is enough);
       a stop whose price lies within the range triggers and fills at the stop price. Stops are processed before
       limits, so when one bar touches both a bracket's stop-loss and its take-profit the stop wins (conservative).
    Slippage (:mod:`core.brokers.costs`) applies to every market-style price (market orders, the open, a triggered
    stop); a limit-style fill is never worse than its limit price (no slippage when filling at the limit).
    Bar prices (floats) become ``Decimal`` exactly (:func:`core.kernel.domain.data_price`): with zero slippage a market order
    fills at the data's own open, however many decimals it has. Prices the broker computes (slippage-adjusted fills,
    stop and limit levels of intents) are on the 0.0001 grid (:func:`core.kernel.domain.to_price`).

Order types (from :class:`core.kernel.domain.OrderIntent`)
    * ``MARKET``; ``LIMIT`` (needs ``limit_price``); ``STOP`` (needs ``stop_price``). A non-bracket intent's
      ``stop_loss``/``take_profit`` are ignored: a ``MARKET`` intent carrying them is a plain market order.
    * ``BRACKET`` (buy only; needs ``stop_loss < take_profit``): the entry is a limit order when ``limit_price`` is
      given, else a market order (the parent ``Order`` shows the entry limit as ``limit_price`` and the
      stop-loss as ``stop_price``; its take-profit lives on the ``-tp`` leg). When the entry fills, two children
      are created: ``"<id>-sl"`` (sell STOP at ``stop_loss``) and ``"<id>-tp"`` (sell LIMIT at ``take_profit``)
      for the filled quantity (grown by later partial entry fills). They are active from the bar *after* the entry
      fill and are one-cancels-other: the first fill of either leg cancels the other leg and any unfilled remainder
      of the entry. Cancelling a working bracket entry cancels its children too (the already-filled shares then have
      no protection); cancelling a filled entry raises, so cancel the legs by their own ids. Children are always
      capped at the shares held: when the position shrinks, a leg's quantity shrinks with it, and a leg with nothing
      left to protect is cancelled. ``replace_stop`` moves a stop in place (see its docstring).

Cash and positions (long-only cash account)
    * At submission a buy is REJECTED (``Order.reason`` says why) when its estimated cost exceeds the cash not already
      reserved by other working buys. Estimate: quantity × (last close + slippage) + full commission; a limit buy is
      estimated at its limit price; a buy stop at max(stop, last close) + slippage.
    * At fill time the cash is checked again: the fill is **reduced to the largest affordable quantity** and the
      unaffordable remainder is terminated (REJECTED when nothing was filled yet, else CANCELED), with a reason.
    * A sell is REJECTED at submission when it exceeds the shares held minus the shares of other working plain sells
      (bracket legs do not count: they are capped at fill time instead). At fill time every sell is capped at the
      shares held and the remainder is terminated as above: the broker never goes short.
    * Partial fills: with ``max_volume_share`` set, all of this broker's fills on one symbol and bar together take at
      most floor(volume × share) shares; the rest of an order stays working (PARTIALLY_FILLED) for later bars.
      A triggered stop that could not fill completely keeps filling at later opens.

Money
    * Fill prices are quantised to 0.0001; commissions to the cent. Cash moves by exactly ``quantity × fill price``
      plus or minus the commission (so cash is exact and can carry four decimals).
    * Commissions price whole orders: a partial fill is charged the increase of the order's cumulative commission
      (so a per-order minimum is charged once).
    * Positions use **average cost**. A position's cost basis is the sum of its buy notionals (commissions are *not*
      capitalised); selling ``q`` of ``Q`` shares removes ``basis × q / Q`` (rounded to 0.0001; all of it for a full
      exit) and realises ``proceeds − removed basis``. ``Position.average_price`` is basis / quantity rounded to
      0.0001 (display); the exact basis drives the P&L.
    * Marks: ``Position.last_price`` is the latest visible close seen by ``sync``.
    * Identities (exact ``Decimal`` equalities, tested with hypothesis)::

          equity == cash + Σ quantity × last_price
          equity − initial_cash == realized_pnl + unrealized_pnl − total_commissions

      where ``realized_pnl`` is gross of commissions and includes closed positions, ``unrealized_pnl`` is
      Σ (quantity × last_price − cost basis) and ``total_commissions`` is every commission ever charged.

Day trades (the pattern-day-trader guard's input)
    A sale of a symbol bought in the same session (the fill's bar date) is one day trade per symbol and session.
    ``AccountState.daytrade_count`` counts those within the last five sessions the broker has seen bars of (the
    current one included); a fourth within them sets ``pattern_day_trader`` for good. With daily bars and the
    ``next-open`` model an entry and its exit never fill in one session (bracket legs work from the bar after the
    entry), so the count stays 0 unless orders of one session fill together (``same-close``).
    :meth:`SimulatedBroker.market_buy_price` is the price a market buy sent now would fill at (the next open, or the
    last close with ``same-close``): the gap guard's price at submission in a backtest.

Reporting
    ``sync`` returns everything that happened at the broker since the previous ``sync``: fills (including same-close
    fills made inside ``submit``) and every order that changed (submitted, rejected, filled, cancelled, modified or
    created as a bracket child), each once with its latest state.

Persistence
    ``snapshot()`` returns the whole state as plain JSON-compatible data (decimals as strings, times as ISO 8601);
    ``restore(state)`` on a broker built with the same costs and fill rules rebuilds it exactly, including working
    orders, bracket legs, volume already used on the latest bar and the not-yet-reported fills.

Identifiers are deterministic (no randomness): ``broker_order_id`` is ``"sim-<n>"``, a fill id is
``"<client_order_id>-<k>"`` for the order's k-th fill.
"""

from core.brokers.simulated.book import FILL_MODELS, FillModel
from core.brokers.simulated.broker import SimulatedBroker
from core.brokers.simulated.snapshot import SNAPSHOT_VERSION

__all__ = ["FILL_MODELS", "FillModel", "SNAPSHOT_VERSION", "SimulatedBroker"]
