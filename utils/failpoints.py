"""Crash-injection points for the crash-safety tests.

``AGENT_TRADER_FAILPOINT=<name>`` makes the process kill itself with SIGKILL when it reaches that point — no
cleanup, no flush, exactly like a power cut — so tests can prove that a restart neither duplicates orders nor loses
fills. Unset (always, in production) the check is a dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "AGENT_TRADER_FAILPOINT"
POINTS = ("after_catch_up", "before_submit", "after_submit", "after_persist", "after_command_pick")


def failpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
