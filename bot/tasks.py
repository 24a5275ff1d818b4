"""Stopping background tasks reliably.

A cancellation can be lost: redis-py's pub/sub reads run under their own timeouts, and on
Python 3.11 a cancel() that lands just as such a timeout fires may be swallowed there, leaving
the task running (and a shutdown, or the event loop's close, waiting on it forever). Loops that
read from Redis therefore also check a stop flag, and `stop_task` cancels again until the task
has really ended or the time is up.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[object] | None, *, within: float = 3.0) -> bool:
    """Cancel `task` and wait until it has ended, cancelling again if a cancellation was lost;
    True when it ended within `within` seconds (it is left running, logged, otherwise)."""
    if task is None or task.done():
        return True
    deadline = time.monotonic() + within
    while not task.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("background task %s did not stop within %.1f s", task.get_name(), within)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.2, remaining))
    return True
