"""Engine and session setup for SQLite (embedded, WAL) and PostgreSQL.

Why WAL, BEGIN IMMEDIATE and a busy timeout: the platform and its background
loop write from several threads; WAL lets readers outside transactions
proceed, and taking the write lock at BEGIN turns contention into waiting
instead of "database is locked" errors.

Migrations are an explicit step (``suanwang migrate``, ``Database.migrate``)
taken under a lock, so replicas starting together never race: a PostgreSQL
advisory lock, or a lock file beside a SQLite database.  ``schema_problem``
tells a server that the schema is not the one its code expects.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.errors import StoreBusy, StoreConflict, StoreUnavailable
from suanwang.store import locks
from suanwang.store.cache import ReadCaches
from suanwang.store.files import private_dir, private_sqlite_file  # noqa: F401 - re-exported

ENV_URL = "SUANWANG_DATABASE_URL"
MIGRATION_LOCK = 0x5357_0002  # PostgreSQL advisory lock key: one migrator at a time (scheduling uses ..._0001)


# SQLSTATEs that mean "run the transaction again": serialization failure, deadlock, lock not available.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


@contextmanager
def translate_errors() -> Iterator[None]:
    """Raise the project's store errors for the driver's, the way HTTPX maps httpcore's at its transport.

    A unique key stored meanwhile is a StoreConflict; a deadlock, serialization failure or SQLite's
    "database is locked" a StoreBusy; a server that cannot be reached a StoreUnavailable.  Anything else
    (a trigger refusing an append-only row, a bad column) stays as it is: that is a bug, and stays loud.
    """
    try:
        yield
    except DBAPIError as exc:
        error = _translated(exc)
        if error is None:
            raise
        raise error from exc


def _translated(exc: DBAPIError) -> StoreConflict | StoreBusy | StoreUnavailable | None:
    orig = exc.orig
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    detail = str(orig).splitlines()[0][:300] if orig is not None else type(exc).__name__
    error: StoreConflict | StoreBusy | StoreUnavailable | None = None
    if isinstance(exc, IntegrityError) and (sqlstate == "23505" or "UNIQUE constraint failed" in str(orig)):
        error = StoreConflict("the request conflicts with data stored meanwhile; read the current state and retry",
                              detail=detail)
    elif sqlstate in _TRANSIENT_SQLSTATES or "database is locked" in str(orig):
        error = StoreBusy("the database is busy (a lock or a serialization conflict); retry", detail=detail)
    elif isinstance(exc, OperationalError) and (exc.connection_invalidated or sqlstate.startswith("08")
                                                 or (not sqlstate and "connect" in str(orig).lower())):
        error = StoreUnavailable(f"the database cannot be reached ({type(orig).__name__})")
    return error


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
    # A bounded connect: /health and start-up report an unreachable server instead of hanging on it.
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched.  ``Session.execute`` is typed to return a Result; for DML it is a
    CursorResult, which alone carries the count."""
    assert isinstance(result, CursorResult), type(result)
    return int(result.rowcount or 0)


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


class Database:
    """An engine plus a session factory; one instance per process."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.caches = ReadCaches()  # the services' read caches for this database (store.cache)
        # SQLite has one writer at a time.  Waiting for it in SQLite's busy handler means sleeping in
        # steps of up to 100 ms while the lock sits free; waiting on a lock in this process wakes the
        # next writer the moment the last one commits.  A plain Lock, not an RLock: FastAPI may enter and
        # leave a dependency's transaction on different threads.
        self._writer = threading.Lock() if self.url.startswith("sqlite") else None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One database transaction per state change: commit on success, roll back on error.

        Driver errors leave it as the project's store errors (:func:`translate_errors`)."""
        if self._writer is None:
            with translate_errors(), self.sessions(info={"caches": self.caches}) as session, session.begin():
                yield session
            return
        with translate_errors(), self._writer, self.sessions(info={"caches": self.caches}) as session, \
                session.begin():
            yield session

    def migrate(self) -> None:
        """Bring the schema to head under the migration lock; a second migrator waits, then finds nothing to do."""
        from suanwang.store.migrate import upgrade

        with self.migration_lock():
            upgrade(self.url)

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        if is_postgres(self.engine):
            with self.engine.connect() as conn:
                conn.execute(locks.SESSION, {"k": MIGRATION_LOCK})
                conn.commit()  # the lock is the session's; leave no transaction open while holding it
                try:
                    yield
                finally:
                    conn.execute(locks.SESSION_UNLOCK, {"k": MIGRATION_LOCK})
                    conn.commit()
            return
        path = self.engine.url.database
        if not path or path == ":memory:":
            yield  # one process's private database
            return
        with open(f"{path}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
            yield

    def schema_problem(self) -> str | None:
        """Why this code cannot run on the database's schema (not migrated, behind, ahead), or None."""
        from suanwang.store.migrate import current_revisions, head_revisions, known_revisions

        current, heads = current_revisions(self.engine), head_revisions()
        if current == heads:
            return None
        if not current:
            return "the database has no suanwang schema yet: run `suanwang migrate` (or serve with --migrate)"
        if current - known_revisions():
            return (f"the database is at revision {', '.join(sorted(current))}, which this suanwang does not know: "
                    "is this suanwang older than the database?")
        return (f"the database is at revision {', '.join(sorted(current))}, this suanwang needs "
                f"{', '.join(sorted(heads))}: run `suanwang migrate` (or serve with --migrate)")

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
