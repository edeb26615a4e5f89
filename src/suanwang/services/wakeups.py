"""Wake-ups on work instead of timers: an agent's long-poll and the control loop sleep until something happens.

A ``Wakeups`` holds one counter per topic (``lease:<site>``: jobs were placed at
the site; ``loop``: the control loop has work).  A waiter reads the topic's
counter *before* it looks at the database and then waits for the counter to move,
so a wake-up that lands between the look and the wait is never lost.

Across platform replicas on PostgreSQL the topics travel by LISTEN/NOTIFY:
``notify_sql`` queues a NOTIFY inside the transaction that made the change (it is
delivered only if that transaction commits), and a ``Listener`` per process turns
each one into a local wake-up.  SQLite has one process, so the local wake-up is
the whole story.  A NOTIFY can still be missed (the listener's connection dropped):
a listener that loses its connection wakes everyone once, and so does one that
reconnects, and while no listener is connected waiters also look at the database
on a safety timer (``Platform.lease_poll_s``).  A healthy listener is the whole
wake-up: its waiters look only when woken or when their own wait ends.  TCP
keepalives on its connection notice a server that vanished without a word.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import select
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("suanwang.wakeups")

LOOP = "loop"
ALL = "*"  # a wake-up of every topic (a listener that may have missed some)


def lease_topic(site: str) -> str:
    return f"lease:{site}"


class Wakeups:
    """Per-topic counters that waiters in threads or on an asyncio loop can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._counts: dict[str, int] = {}
        self._epoch = 0  # moves on a wake-up of every topic
        self._callbacks: dict[str, set[Callable[[], None]]] = {}

    def mark(self, topic: str) -> int:
        """The topic's current mark: pass it to ``wait`` after looking at the database."""
        with self._cond:
            return self._counts.get(topic, 0) + self._epoch

    def notify(self, topic: str) -> None:
        """Wake this process's waiters on ``topic`` (``ALL``: on every topic)."""
        with self._cond:
            if topic == ALL:
                self._epoch += 1
                callbacks = [cb for cbs in self._callbacks.values() for cb in cbs]
            else:
                self._counts[topic] = self._counts.get(topic, 0) + 1
                callbacks = list(self._callbacks.get(topic, ()))
            self._cond.notify_all()
        for cb in callbacks:
            cb()

    def wait(self, topic: str, mark: int, timeout: float) -> bool:
        """Block until the topic moves past ``mark`` or ``timeout`` passes; True when it moved."""
        with self._cond:
            return self._cond.wait_for(lambda: self.mark(topic) != mark, timeout=max(timeout, 0.0))

    async def wait_async(self, topic: str, mark: int, timeout: float) -> bool:
        """``wait`` for a coroutine: holds no thread while it waits."""
        loop = asyncio.get_running_loop()
        moved = asyncio.Event()

        def callback() -> None:
            loop.call_soon_threadsafe(moved.set)

        with self._cond:
            self._callbacks.setdefault(topic, set()).add(callback)
        try:
            if self.mark(topic) != mark:
                return True
            try:
                await asyncio.wait_for(moved.wait(), timeout=max(timeout, 0.0))
            except TimeoutError:
                return self.mark(topic) != mark
            return True
        finally:
            with self._cond:
                waiting = self._callbacks.get(topic)
                if waiting is not None:
                    waiting.discard(callback)
                    if not waiting:
                        del self._callbacks[topic]


def channel_for(url: str) -> str:
    """The NOTIFY channel of one database *and schema*: replicas sharing a schema hear each other, no one else."""
    digest = hashlib.sha256(make_url(url).render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return f"suanwang_{digest}"


def notify_sql(session: Session, channel: str, topics: set[str]) -> None:
    """Queue NOTIFYs for ``topics`` in the session's transaction (PostgreSQL; delivered only on commit)."""
    for topic in sorted(topics):
        session.execute(text("SELECT pg_notify(:c, :t)"), {"c": channel, "t": topic})


class Listener:
    """One PostgreSQL connection per process that LISTENs and turns NOTIFYs into local wake-ups.

    It sleeps in ``select`` on the connection's socket, so a quiet listener costs nothing: psycopg's own
    ``notifies(timeout=...)`` wakes every 100 ms to look for a Ctrl-C, a sixth of an idle platform's CPU.
    """

    # Dead-peer detection by the kernel: a server gone without closing the connection is noticed
    # within about keepalives_idle + keepalives_interval * keepalives_count seconds (60 s here).
    KEEPALIVES: ClassVar[dict[str, Any]] = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                                            "keepalives_count": 3}

    def __init__(self, url: str, wakeups: Wakeups, channel: str, *, retry_s: float = 2.0,
                 check_s: float = 5.0) -> None:
        self.url = url
        self.wakeups = wakeups
        self.channel = channel
        self.retry_s = retry_s
        self.check_s = check_s  # how often a quiet listener looks whether it should stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # set while LISTENing (tests wait on it)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suanwang-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # a daemon: one still inside select ends with the process

    def _run(self) -> None:
        import psycopg

        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=10, **self.KEEPALIVES) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.connected.set()
                    self.wakeups.notify(ALL)  # anything sent while we were not listening is found by looking
                    while not self._stop.is_set():
                        readable, _, _ = select.select([conn.fileno()], [], [], self.check_s)
                        if readable:  # notifications, or the server closing: notifies() then raises
                            for note in conn.notifies(timeout=0):
                                self.wakeups.notify(note.payload)
            except Exception as exc:  # the server went away: waiters fall back to their safety timer
                if self._stop.is_set():
                    break
                log.warning("NOTIFY listener lost its connection (%s); retrying in %.0f s", type(exc).__name__,
                            self.retry_s)
            finally:
                if self.connected.is_set():
                    self.connected.clear()  # first: the waiters woken below look again on the safety timer
                    self.wakeups.notify(ALL)  # what a waiter relying on us missed is found by looking
            self._stop.wait(self.retry_s)
