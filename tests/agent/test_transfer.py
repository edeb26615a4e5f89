"""Agent-to-agent transfers over real HTTP on this machine: ranges, resume, checksum, atomic rename."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from suanwang.agent.transfer import DatasetStore, Serving, TransferError, fetch, make_server

DATA = os.urandom(3 * (1 << 20) + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[str, DatasetStore, Serving]]:
    store = DatasetStore(tmp_path / "east")
    src = tmp_path / "upload"
    src.write_bytes(DATA)
    assert store.put_file("d-1", src) == SHA
    serving = Serving()
    serving.allow("d-1", "s3cret")
    server = make_server(store, serving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/datasets/d-1", store, serving
    server.shutdown()
    server.server_close()


def _fetch(url: str, dest: DatasetStore, **kw: object):  # type: ignore[no-untyped-def]
    args = {"dataset_id": "d-1", "transfer_id": "t-1", "sha256": SHA, "size_bytes": len(DATA), "secret": "s3cret"}
    with httpx.Client(timeout=10) as client:
        return fetch(client, url, dest, **{**args, **kw})  # type: ignore[arg-type]


def test_whole_transfer_verified_and_renamed(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = source
    dest = DatasetStore(tmp_path / "west")
    got = _fetch(url, dest)
    assert (got.bytes_moved, got.resumed_from) == (len(DATA), 0)
    assert dest.path("d-1").read_bytes() == DATA
    assert list(dest.partial.iterdir()) == []
    assert _fetch(url, dest).bytes_moved == 0  # already here: nothing moves twice


def test_resume_moves_only_the_rest(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = source
    dest = DatasetStore(tmp_path / "west")
    cut = len(DATA) // 3
    dest.partial_path("d-1", "t-1").write_bytes(DATA[:cut])  # what a killed receiver left behind
    assert not dest.has("d-1")  # a job never sees the partial file
    got = _fetch(url, dest)
    assert (got.bytes_moved, got.resumed_from) == (len(DATA) - cut, cut)
    assert dest.path("d-1").read_bytes() == DATA


def test_a_wrong_checksum_is_never_renamed(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = source
    dest = DatasetStore(tmp_path / "west")
    dest.partial_path("d-1", "t-1").write_bytes(b"X" * 100)  # corrupt prefix: resumed, then caught by the hash
    with pytest.raises(TransferError, match="checksum"):
        _fetch(url, dest)
    assert not dest.has("d-1") and not dest.partial_path("d-1", "t-1").exists()
    assert _fetch(url, dest).bytes_moved == len(DATA)  # the next try starts clean


def test_secret_and_id_are_checked(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = source
    dest = DatasetStore(tmp_path / "west")
    with pytest.raises(TransferError, match="404"):
        _fetch(url, dest, secret="guess")
    with pytest.raises(TransferError, match="bad dataset id"):
        _fetch(url, dest, dataset_id="../../etc/passwd")
    with httpx.Client() as c:
        r = c.get(url, headers={"Authorization": "Bearer s3cret", "Range": f"bytes={len(DATA)}-"})
        assert r.status_code == 416
