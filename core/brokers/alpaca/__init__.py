"""Alpaca (paper or live) behind the :class:`core.brokers.base.Broker` protocol, through alpaca-py's ``TradingClient``.

Paper and live differ only by the keys, ``paper=`` (which base URL alpaca-py uses) and ``name``; nothing in this
class branches on it. Every HTTP call goes through :func:`utils.http.configure_alpaca_client`: a default
``(connect, read)`` timeout of ``timeout_s`` (alpaca-py has none), a slot from the account's shared rate limiter
before each request, HTTP 429 retried by the SDK (``retry_attempts`` times) after the server's ``Retry-After``, and
504 *not* retried blindly. The SDK is synchronous: each call runs in a worker thread (``asyncio.to_thread``) so the
event loop never blocks, and one ``asyncio.Lock`` serialises the broker's operations.

Submitting without ever double-submitting
-----------------------------------------
Every order carries the caller's ``client_order_id`` (at most 128 characters; Alpaca refuses a reused one, even
of a cancelled order, with HTTP 422 ``client_order_id must be unique``). :meth:`AlpacaBroker.submit`:

1. returns the order at once if this instance already knows the id (no request);
2. if an earlier attempt with this id ended in doubt, looks it up by client id first (found: returned);
3. submits; on 422 ``client_order_id must be unique`` fetches ``GET /v2/orders:by_client_order_id`` and returns the
   existing order;
4. after a timeout, a connection error, a 408, a 5xx or a 2xx answer alpaca-py cannot read (the order may have
   been accepted even though the answer was lost) looks the order up by client id **before any new attempt**:
   found, it is returned; not found (404), the submission is retried with the *same* id, at most
   ``order_lookup_attempts`` submissions in all, then :class:`TemporaryBrokerError` is raised. The id then stays
   "in doubt": the next ``submit`` of it looks it up first, and the next ``sync`` looks it up and reports the order
   if Alpaca has it (otherwise it notes that and forgets the doubt).
   If the lookup itself fails, :class:`TemporaryBrokerError` is raised at once: never a blind resubmission.
   This in-memory doubt dies with the process; the daemon therefore also writes every order to the ledger before
   submitting it and resolves it after a restart with :meth:`AlpacaBroker.order_by_client_id` (see
   ``agents/execution_agent.py``). Even a
   request the server processes late cannot create a second order: the second one to arrive gets the 422;
5. a refusal (HTTP 4xx other than 401/408/429: 403 insufficient buying power or shares, 422 invalid order...)
   is not raised: it returns an :class:`~core.kernel.domain.Order` with status ``REJECTED`` and the server's reason, as
   :class:`~core.brokers.simulated.SimulatedBroker` does; resubmitting that id returns the same rejection.
   401 (keys) raises :class:`BrokerError`; 429 once the SDK's retries are spent raises :class:`TemporaryBrokerError`.

Order shapes
------------
* A **buy with both ``stop_loss`` and ``take_profit``** (``OrderType.BRACKET``, or a ``MARKET``/``LIMIT`` intent
  carrying both) is sent as one Alpaca **bracket** order (``order_class=bracket``, ``take_profit.limit_price``,
  ``stop_loss.stop_price``; a market entry, or a limit entry when ``limit_price`` is given), with
  ``time_in_force=gtc``: the legs inherit the entry's time in force, and with ``day`` the protective stop of a swing
  trade would expire at that day's close, leaving the position unprotected overnight. ``use_brackets=False`` sends the
  entry alone (the stop and target are then the caller's to manage; the order's reason says so).
  A bracket must be a whole-share buy with ``stop_loss < take_profit`` (otherwise ``REJECTED`` without a request).
* Everything else is a plain order: ``MARKET`` (``time_in_force=day``: after hours it waits for the next open),
  ``LIMIT`` and ``STOP`` (``gtc``, like the simulated broker's orders). Fractional quantities are sent as
  ``day`` orders (Alpaca's rule) and cannot be brackets.
* Prices are rounded to the cent at or above $1 (Alpaca rejects sub-penny prices there) and to $0.0001 below,
  half-up.
* Exits: on Alpaca a bracket's active legs *hold* the position's shares, so a plain sell of the position is refused
  (403 ``insufficient qty available``). With ``release_shares_on_exit=True`` (default) a ``SELL`` first cancels the
  symbol's working sell orders that hold shares (plain sells and the legs of filled entries), then submits; the
  position is unprotected only between those cancellations and the exit. If the exit is then refused, an error is
  logged and the returned order's reason says which protective orders were cancelled.

Order states (Alpaca ``status`` -> :class:`~core.kernel.domain.OrderStatus`, see :data:`ALPACA_STATUS_MAP`)
-----------------------------------------------------------------------------------------------------------
* ``new``, ``accepted``, ``pending_new``, ``accepted_for_bidding``, ``held`` (a bracket leg waiting or resting at
  Alpaca), ``pending_review``, ``pending_cancel``, ``pending_replace``, ``stopped``, ``suspended``,
  ``done_for_day`` -> ``SUBMITTED``, or ``PARTIALLY_FILLED`` when ``filled_qty > 0`` (working orders that may still
  execute);
* ``calculated`` (the day is complete, settlement pending) -> as above, ``FILLED`` once ``filled_qty`` = ``qty``;
* ``partially_filled`` -> ``PARTIALLY_FILLED``; ``filled`` -> ``FILLED``;
* ``canceled`` -> ``CANCELED``; ``replaced`` (superseded by a new order, e.g. by :meth:`AlpacaBroker.replace_stop`)
  -> ``CANCELED`` with a reason naming the replacement;
* ``expired`` -> ``EXPIRED``; ``rejected`` -> ``REJECTED``.

A status neither this table nor alpaca-py knows (Alpaca adds statuses; alpaca-py's enum would refuse the whole
answer with a validation error) is read anyway and treated as a working order in doubt: ``SUBMITTED``
(``PARTIALLY_FILLED`` / ``FILLED`` by ``filled_qty``, as ``calculated``), and the raw status is recorded in the
order's reason (``alpaca status 'x' (unknown: treated as working)``) and logged. Status changes of known orders go through
:meth:`Order.transition <core.kernel.domain.Order.transition>`, so an impossible one raises instead of being recorded.

Polling (``sync``) and fills
----------------------------
``GET /v2/orders``'s ``after`` filters on *submission* time, so "orders submitted since the last sync" alone would
miss a fill of an older order (a bracket's stop-loss filling weeks later). Each :meth:`AlpacaBroker.sync` therefore
reads, all with ``nested=true`` (bracket legs inside their entry) and ``limit=500`` (paged when full):
(1) every open order; (2) every order submitted since the previous sync (``status=all``, ``after`` = previous sync
minus a 5-minute overlap for clock skew), which also finds orders this instance did not submit; (3) by id, each
order this instance tracks as working that neither list returned (it has finished since), and by client id each
order still in doubt. Everything is fetched before anything is applied, so a failed request changes nothing.
It returns the orders that changed since the previous sync (submitted, rejected, filled, cancelled, replaced, or new
bracket legs), each once with its latest state, and the new fills.

Fills are derived from each order's cumulative ``filled_qty`` and ``filled_avg_price`` (alpaca-py's
``TradingClient`` does not expose the per-execution ``/v2/account/activities/FILL`` endpoint, which would give one
record per execution). When an order's ``filled_qty`` grows from ``q0`` to ``q1`` (average ``p0`` then ``p1``),
one fill is reported: quantity ``q1 - q0`` at price ``(q1 * p1 - q0 * p0) / (q1 - q0)`` (rounded to $0.0001), stamped
``filled_at`` (complete) or ``updated_at`` (partial). Several executions between two polls are therefore reported as
one fill at their average price; the sum of quantities and of notionals is exact. Commission is zero (Alpaca charges
no equity commission; regulatory fees on sells are separate account activities, not modelled here).
The fill id is ``"<client_order_id>@<cumulative filled quantity>"``: the same execution state always gets the same
id, and a fresh instance told what the ledger holds (:meth:`AlpacaBroker.resume`) continues from the recorded
quantities, so a restart neither repeats nor re-numbers a fill. (An instance that is *not* resumed reports an
order's whole filled quantity once, under the id of its cumulative quantity.)

Other operations
----------------
:meth:`~AlpacaBroker.cancel` (``DELETE /v2/orders/{id}``; a bracket entry's legs go with it),
:meth:`~AlpacaBroker.replace_stop` (``PATCH /v2/orders/{id}`` with a new ``stop_price``: Alpaca swaps the stop for a
new order in one step, so the position is never without a stop as it would be with cancel + new),
:meth:`~AlpacaBroker.account`, :meth:`~AlpacaBroker.positions`, :meth:`~AlpacaBroker.open_orders`,
:meth:`~AlpacaBroker.order_by_client_id`, :meth:`~AlpacaBroker.market_clock` and
:meth:`~AlpacaBroker.account_label`. The API keys never appear in messages, logs or reprs: error bodies are
redacted and exceptions are raised ``from None`` so the SDK's raw error is not chained.

Errors
------
Reads (``GET``) that meet a 5xx/408, a timeout or a connection error are retried by the HTTP layer
(:mod:`utils.http`, ``transient_retries`` times with back-off), a 429 after the server's ``Retry-After`` (capped at
``max_retry_after_s``), all within the iteration deadline (:mod:`utils.deadline`). What is still failing then raises
:class:`~core.brokers.base.TemporaryBrokerError` (also a :class:`~utils.deadline.TemporaryError`: the iteration is
recorded ``degraded``); 401 (and 403 on a read) raises :class:`~core.brokers.base.BrokerAuthError`.
:meth:`AlpacaBroker.identify` reads the account at start-up and refuses (:class:`~core.brokers.base.BrokerModeMismatch`)
a paper broker on a live account or a live broker on a paper account (paper account numbers start with ``PA``).
"""

from core.brokers.alpaca.broker import AlpacaBroker
from core.brokers.alpaca.mapping import (
    ALPACA_STATUS_MAP,
    MAX_CLIENT_ORDER_ID,
    AccountIdentity,
    MarketClock,
    fill_id,
    map_alpaca_status,
    mask_account_number,
    replacement_client_order_id,
    round_price,
)

__all__ = [
    "ALPACA_STATUS_MAP",
    "AccountIdentity",
    "AlpacaBroker",
    "MAX_CLIENT_ORDER_ID",
    "MarketClock",
    "fill_id",
    "map_alpaca_status",
    "mask_account_number",
    "replacement_client_order_id",
    "round_price",
]
