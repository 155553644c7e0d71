"""Notifications through apprise: the :class:`~core.notify.notifier.Notifier` the runtime owns.

The messages are built by the pure functions of :mod:`core.analytics.notifications`; this package delivers them
(Telegram, Slack, Discord, e-mail, JSON webhooks: any apprise URL) in a worker thread, bounded in time, and records
every outcome in the ``notifications`` table.
"""

from core.notify.notifier import Notifier, apprise_sender, build_notifier, session_end_rule

__all__ = ["Notifier", "apprise_sender", "build_notifier", "session_end_rule"]
