"""The project's one error hierarchy, and the exit code each kind of error ends the program with.

A primitive: this module imports nothing from the project, so every layer (``utils``, ``config``, the adapters,
``main.py``) can derive its exceptions from it.

::

    TraderError                          exit 1 (unexpected)
    ├── ConfigurationError               exit 2: a setting, an input or a command line that cannot be used
    ├── OperationalError                 exit 1: the program's own machinery failed
    │   ├── StorageUnavailable           exit 3: the database cannot be reached, prepared or used
    │   ├── LockConflict                 exit 4: another process holds the database's lock (or took the lost one)
    │   └── LedgerWriteFailed            exit 5: an iteration could not be recorded
    └── ExternalError                    exit 1: a remote service (broker, market data, LLM) failed
        └── TemporaryError               exit 1: ... for now; retrying later may succeed

Project exceptions keep the built-in bases callers catch them by (``ValueError``, ``RuntimeError``) through multiple
inheritance. A class that belongs to two branches lists the one that decides its exit code first (the broker
refusing the API keys is a :class:`ConfigurationError` before it is an :class:`ExternalError`), because
:func:`exit_code_for` takes the first class of the exception's MRO that :data:`EXIT_CODES` names.
"""

from __future__ import annotations

from types import MappingProxyType
from collections.abc import Mapping

__all__ = [
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_OK",
    "ConfigurationError",
    "ExternalError",
    "LedgerWriteFailed",
    "LockConflict",
    "OperationalError",
    "StorageUnavailable",
    "TemporaryError",
    "TraderError",
    "exit_code_for",
]


class TraderError(Exception):
    """The root of every exception the project raises on purpose."""


class ConfigurationError(TraderError):
    """A setting, an input file or a command-line argument cannot be used; the message names it."""


class OperationalError(TraderError):
    """The program's own machinery (database, lock, ledger, bus) failed."""


class StorageUnavailable(OperationalError):
    """The database cannot be reached, prepared or used."""


class LockConflict(OperationalError):
    """Another process holds the database's daemon lock, or took it while this daemon's lock was lost."""


class LedgerWriteFailed(OperationalError):
    """An iteration could not be recorded: the daemon stops rather than trade without a ledger."""


class ExternalError(TraderError):
    """A remote service (the broker, a market-data source, an LLM provider) failed or answered unusably."""


class TemporaryError(ExternalError):
    """A remote service is unavailable for now (429, 5xx, 408, timeout, connection error, or the deadline came
    first). Retrying later may succeed; the iteration that met it is recorded ``degraded``.

    The one retryable type: the broker raises ``TemporaryBrokerError``; the HTTP layer the broker and market-data
    clients share raises ``DeadlineExceeded`` (and its rate limiter ``LimiterWaitTooLong``); the LLM providers retry
    a ``TemporaryAttemptFailure`` and give up with a ``TemporaryProviderCallError``. (The market-data providers do
    not raise: they return per-symbol reasons and note a transient failure as the iteration's degraded reason.)"""


EXIT_OK = 0
EXIT_ERROR = 1

#: The exit code of each kind of error (README "Exit codes"); :func:`exit_code_for` walks an exception's MRO.
EXIT_CODES: Mapping[type[BaseException], int] = MappingProxyType(
    {
        TraderError: EXIT_ERROR,
        ConfigurationError: 2,
        OperationalError: EXIT_ERROR,
        StorageUnavailable: 3,
        LockConflict: 4,
        LedgerWriteFailed: 5,
        ExternalError: EXIT_ERROR,
        TemporaryError: EXIT_ERROR,
    }
)


def exit_code_for(error: BaseException | type[BaseException]) -> int:
    """The exit code for ``error`` (an exception or its class): that of the first class of its MRO in
    :data:`EXIT_CODES`; 1 for anything outside the hierarchy."""
    cls = error if isinstance(error, type) else type(error)
    for base in cls.__mro__:
        code = EXIT_CODES.get(base)
        if code is not None:
            return code
    return EXIT_ERROR
