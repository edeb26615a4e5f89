"""The agent's durable local state: an outbox of reports and the tasks it runs.

Both live in one SQLite file, and every change to a task's progress is
written in the same local transaction as the reports it produces, so an
agent killed at any instant restarts with nothing lost and nothing sent
twice under a new key (a resent report keeps its original key, and the
platform ignores keys it already has).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suanwang.store.files import private_sqlite_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    job_id TEXT NOT NULL, attempt INTEGER NOT NULL, handle TEXT NOT NULL, task TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0, reported TEXT NOT NULL DEFAULT '{}', last_end REAL NOT NULL,
    log_offset INTEGER NOT NULL DEFAULT 0, kill INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, attempt));
"""
_COLUMNS = "job_id, attempt, handle, task, seq, reported, last_end, log_offset, kill, started"


@dataclass
class TaskRecord:
    job_id: str
    attempt: int
    handle: str
    task: dict[str, Any]
    seq: int
    reported: dict[str, float]
    last_end: float
    log_offset: int
    kill: bool
    started: bool = False  # its "started" report is queued: the engine started it


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        private_sqlite_file(path)  # reports carry job logs: this agent's user only
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(tasks)")}
        if "started" not in columns:  # a data dir from before the queued_at_site state
            self._db.execute("ALTER TABLE tasks ADD COLUMN started INTEGER NOT NULL DEFAULT 0")
        self._lock = threading.Lock()

    # --- reports -------------------------------------------------------------------------
    def pending(self, limit: int = 200) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT id, path, body FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(i, p, json.loads(b)) for i, p, b in rows]

    def done(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    # --- tasks ---------------------------------------------------------------------------
    def tasks(self) -> list[TaskRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM tasks ORDER BY job_id, attempt").fetchall()  # nosec B608  # a constant column list, no input
        return [TaskRecord(r[0], r[1], r[2], json.loads(r[3]), r[4], json.loads(r[5]), r[6], r[7], bool(r[8]),
                           bool(r[9])) for r in rows]

    def add_task(self, rec: TaskRecord) -> None:
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO tasks ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (rec.job_id, rec.attempt, rec.handle, json.dumps(rec.task), rec.seq,
                              json.dumps(rec.reported), rec.last_end, rec.log_offset, int(rec.kill), int(rec.started)))

    def commit(self, rec: TaskRecord, reports: list[tuple[str, dict[str, Any]]], *, finished: bool) -> None:
        """Save a task's progress and enqueue its reports atomically."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for path, body in reports:
                    self._db.execute("INSERT INTO outbox (path, body) VALUES (?, ?)", (path, json.dumps(body)))
                if finished:
                    self._db.execute("DELETE FROM tasks WHERE job_id = ? AND attempt = ?", (rec.job_id, rec.attempt))
                else:
                    self._db.execute(
                        "UPDATE tasks SET seq=?, reported=?, last_end=?, log_offset=?, kill=?, started=? "
                        "WHERE job_id=? AND attempt=?",
                        (rec.seq, json.dumps(rec.reported), rec.last_end, rec.log_offset, int(rec.kill),
                         int(rec.started), rec.job_id, rec.attempt))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()
