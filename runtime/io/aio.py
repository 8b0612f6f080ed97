"""One asyncio event loop, in its own daemon thread, shared by every asyncio-based driver.

Drivers keep the Driver contract (blocking calls in their own poll thread) and hand their
coroutines to this loop with `run(coro, timeout_s)`, which blocks the caller for at most
`timeout_s`. A driver stuck on one device therefore never holds up the loop for the others:
each request waits on its own future while the loop keeps serving everybody else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new_loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.set_exception_handler(_log_once)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            threading.Thread(target=serve, name="io-asyncio", daemon=True).start()
            ready.wait()
            _loop = new_loop
        return _loop


_seen: set[str] = set()


def _log_once(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Errors inside protocol callbacks (an undecodable frame...) are logged once per kind;
    the driver that owns the connection sees and counts the consequence itself."""
    exc = context.get("exception")
    key = f"{context.get('message', '')}: {type(exc).__name__}: {exc}" if exc else str(context.get("message"))
    if key in _seen:
        log.debug("io loop: %s", key)
        return
    _seen.add(key)
    log.warning("io loop: %s", key)


def run(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Run `coro` on the shared loop; raise TimeoutError after `timeout_s` (and cancel it)."""
    future = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return future.result(timeout_s)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no result within {timeout_s:.2f} s") from None
