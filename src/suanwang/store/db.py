"""Engine and session setup for SQLite (embedded, WAL) and PostgreSQL.

Why WAL, BEGIN IMMEDIATE and a busy timeout: the platform and its background
loop write from several threads; WAL lets readers outside transactions
proceed, and taking the write lock at BEGIN turns contention into waiting
instead of "database is locked" errors.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from suanwang.store.files import private_dir, private_sqlite_file  # noqa: F401 - re-exported

ENV_URL = "SUANWANG_DATABASE_URL"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            private_sqlite_file(database)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # The ledger's unique keys land at random places in their indexes, so a batch of 1,000 charges
            # dirties pages all over them.  SQLite's defaults (a 2 MiB page cache, a checkpoint every 1,000
            # WAL pages, i.e. after nearly every batch) made each batch slower as the ledger grew: 45 ms at
            # the start of 100,000 ratings, 80 ms at the end.  A 64 MiB cache and a 64 MiB WAL between
            # checkpoints keep it near 45 ms (bench/ledger.py).  Durability is unchanged: WAL, NORMAL sync.
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute("PRAGMA wal_autocheckpoint=16384")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            # Take the write lock at BEGIN: a deferred transaction that reads and then writes can
            # fail at once with "database is locked" when another writer got there first; an
            # immediate one waits (busy_timeout) and then runs.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


class Database:
    """An engine plus a session factory; one instance per process."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time.  Waiting for it in SQLite's busy handler means sleeping in
        # steps of up to 100 ms while the lock sits free; waiting on a lock in this process wakes the
        # next writer the moment the last one commits.  A plain Lock, not an RLock: FastAPI may enter and
        # leave a dependency's transaction on different threads.
        self._writer = threading.Lock() if self.url.startswith("sqlite") else None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One database transaction per state change: commit on success, roll back on error."""
        if self._writer is None:
            with self.sessions() as session, session.begin():
                yield session
            return
        with self._writer, self.sessions() as session, session.begin():
            yield session

    def migrate(self) -> None:
        from suanwang.store.migrate import upgrade

        upgrade(self.url)

    def dispose(self) -> None:
        self.engine.dispose()


def url_from_env(default: str) -> str:
    return os.environ.get(ENV_URL) or default


@contextmanager
def scratch_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """A PostgreSQL URL whose search path is a new, empty schema, dropped on exit.

    For tests and benchmarks: each starts from nothing and leaves nothing behind, on a server that may
    hold other data.  Raises sqlalchemy's OperationalError when the server cannot be reached.
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in url else "?"
        try:
            yield f"{url}{sep}options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
