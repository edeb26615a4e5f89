"""File modes for what the platform and its agents keep on disk: directories 0700, secrets and databases 0600.

Apart from the database engine (no SQLAlchemy here), so that an agent can use it without loading one.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700, and tighten it when it is ours; a shared one (sticky, as /tmp, or
    another user's) is left as it is."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid() and not st.st_mode & 0o1000:
        os.chmod(path, 0o700)
    return path


def private_sqlite_file(path: str | Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644), and tighten an older one.

    SQLite gives its -wal and -shm files the database file's mode, so all three stay private: a job
    or a local user must not read tokens' hashes, tenants and the ledger from them.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            if p.stat().st_uid == os.geteuid() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            pass
