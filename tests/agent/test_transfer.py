"""Agent-to-agent transfers over real HTTP on this machine: ranges, resume, checksum, atomic rename."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

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
    return fetch(url, dest, **{**args, "timeout": 10.0, **kw})  # type: ignore[arg-type]


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


class _Source(BaseHTTPRequestHandler):
    """A source that misbehaves as told: ``cut`` ends the body after that many bytes, ``extra`` claims and sends
    more than the dataset, ``ignore_range`` answers 200 with the whole file to a ranged request."""

    protocol_version = "HTTP/1.1"
    cut: int | None = None
    extra = b""
    ignore_range = False
    ranges: ClassVar[list[str]] = []

    def log_message(self, fmt: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        rng = self.headers.get("Range", "")
        type(self).ranges.append(rng)
        start = 0 if self.ignore_range or not rng else int(rng[6:-1])
        body = DATA[start:] + self.extra
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body if self.cut is None else body[:self.cut])
        except (BrokenPipeError, ConnectionResetError):
            pass  # a receiver that refused what it was sent
        if self.cut is not None:
            self.close_connection = True


@pytest.fixture
def odd_source() -> Iterator[tuple[str, type[_Source]]]:
    handler = type("Handler", (_Source,), {"ranges": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/datasets/d-1", handler
    server.shutdown()
    server.server_close()


def test_a_cut_transfer_keeps_what_arrived_and_the_next_try_asks_only_for_the_rest(
        odd_source: tuple[str, type[_Source]], tmp_path: Path) -> None:
    url, handler = odd_source
    dest = DatasetStore(tmp_path / "west")
    handler.cut = 1_500_000  # the link drops mid-way: what arrived is on disk, never under the final name
    with pytest.raises(TransferError, match="ended after 1500000 of"):
        _fetch(url, dest)
    assert dest.partial_path("d-1", "t-1").stat().st_size == 1_500_000 and not dest.has("d-1")
    handler.cut = None
    got = _fetch(url, dest)
    assert (got.resumed_from, got.bytes_moved) == (1_500_000, len(DATA) - 1_500_000)
    assert handler.ranges == ["", "bytes=1500000-"] and dest.path("d-1").read_bytes() == DATA


def test_a_source_that_ignores_the_range_restarts_the_file(odd_source: tuple[str, type[_Source]],
                                                           tmp_path: Path) -> None:
    url, handler = odd_source
    dest = DatasetStore(tmp_path / "west")
    dest.partial_path("d-1", "t-1").write_bytes(b"Y" * 1000)  # a wrong prefix the 200 must overwrite
    handler.ignore_range = True
    got = _fetch(url, dest)
    assert (got.resumed_from, got.bytes_moved) == (0, len(DATA)) and dest.path("d-1").read_bytes() == DATA


def test_a_source_that_sends_more_than_registered_is_refused(odd_source: tuple[str, type[_Source]],
                                                             tmp_path: Path) -> None:
    url, handler = odd_source
    dest = DatasetStore(tmp_path / "west")
    handler.extra = b"more"
    with pytest.raises(TransferError, match="more than the"):
        _fetch(url, dest)
    assert not dest.has("d-1")
    with pytest.raises(TransferError, match="bad source url"):
        _fetch("file:///etc/passwd", dest)
