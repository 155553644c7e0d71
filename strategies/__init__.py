"""Strategies: pure, vectorised, causal signal functions of daily bars.

Modules: ``base`` (the interface), ``indicators`` (numpy indicator kernels), ``common`` (shared machinery),
``trend`` / ``reversion`` / ``relative`` (the ten strategies), ``registry`` (``build_registry``,
``STRATEGY_NAMES``), ``context`` (``MarketContext``, ``context_frame``, ``context_at``) and ``selector``
(``DeterministicSelector``).  Nothing is imported here, so ``import strategies.base`` stays cheap.
"""
