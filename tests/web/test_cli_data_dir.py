"""Client commands find the data directory of the last `up --data-dir` or `demo` (their printed hints work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanwang.cli.client import POINTER, default_data_dir, remember_data_dir


def test_client_follows_the_last_data_dir_until_it_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUANWANG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home" / ".suanwang"
    assert default_data_dir() == home
    elsewhere = tmp_path / "grid"
    elsewhere.mkdir()
    remember_data_dir(elsewhere)
    assert default_data_dir() == home  # no platform's url there yet: a stale pointer is not followed
    (elsewhere / "url").write_text("http://127.0.0.1:8700\n")
    assert default_data_dir() == elsewhere.resolve()
    remember_data_dir(home)  # a later plain `up` points the clients home again
    assert not (home / POINTER).exists() and default_data_dir() == home
    monkeypatch.setenv("SUANWANG_HOME", str(tmp_path / "explicit"))
    remember_data_dir(elsewhere)
    assert default_data_dir() == tmp_path / "explicit"  # the environment always wins
