"""Where a local platform's url and tokens live: shared by the SDK and the CLI, so both find the same one."""

from __future__ import annotations

import os
from pathlib import Path

POINTER = "last-data-dir"  # in ~/.suanwang: the data directory the last `up --data-dir` or `demo` used
DEFAULT_URL = "http://127.0.0.1:8600"


def home_dir() -> Path:
    return Path(os.environ.get("SUANWANG_HOME") or Path.home() / ".suanwang")


def read_text(path: Path) -> str | None:
    """The file's stripped text, or None when it is missing, unreadable or empty."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def default_data_dir() -> Path:
    """SUANWANG_HOME, else the data directory of the last `up --data-dir` or `demo` while it still holds a
    platform's url, else ~/.suanwang: so the hints those commands print work as printed."""
    if os.environ.get("SUANWANG_HOME"):
        return home_dir()
    home = home_dir()
    pointed = read_text(home / POINTER)
    if pointed and (Path(pointed) / "url").is_file():
        return Path(pointed)
    return home


def find_platform(url: str | None, token: str | None, data_dir: Path | None = None,
                  token_files: tuple[str, ...] = ("consumer.token",)) -> tuple[str, str]:
    """The platform's url (no trailing slash) and a token: arguments, then SUANWANG_URL / SUANWANG_TOKEN, then
    the data directory (``url`` and the first of ``token_files`` there); "" when no token is found."""
    d = data_dir or default_data_dir()
    base = (url or os.environ.get("SUANWANG_URL") or read_text(d / "url") or DEFAULT_URL).rstrip("/")
    tok = token or os.environ.get("SUANWANG_TOKEN") or next(
        (t for t in (read_text(d / name) for name in token_files) if t), "")
    return base, tok
