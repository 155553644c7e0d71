"""Foundation types every layer shares: the domain model, stage events, the event bus, clocks, the exchange
calendar and the per-frame memo cache. Imports nothing above core.errors, core.vocabulary and utils."""
