"""Staged transfers between two sites' agents: plain HTTP with Range requests, SHA-256 verified.

Why agent-to-agent HTTP rather than rclone or S3: every site already runs an agent and nothing else
can be assumed of it (an edge box has no object store, a Slurm site no rclone remote); the agent
already holds the site's identity, so the platform can hand both ends a one-use secret for one
transfer; and HTTP Range gives resume for free.  A site that has S3 can still serve its store
through the agent.

The receiving side never lets a job see a partial file: bytes go to ``.partial/<id>.<transfer>``,
are hashed as they arrive (one pass), and only a file whose SHA-256 matches the registered one is
renamed (``os.replace``, atomic on one filesystem) to ``<root>/<dataset id>``.  A transfer cut
mid-way (the receiving agent killed) resumes from the partial file's length with
``Range: bytes=N-``; a source that ignores the range (200 instead of 206) restarts it from zero.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import os
import re
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

CHUNK = 1 << 20
BLOCK, RING = 1 << 20, 4  # a receive buffer (one recv_into fills what arrived, up to this) and how many rotate
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class TransferError(Exception):
    """A transfer that cannot complete as asked; ``message`` says why in words a user can read."""


@dataclass(frozen=True, slots=True)
class Fetched:
    bytes_moved: int  # bytes that crossed the link in this call (a resumed transfer counts only the rest)
    seconds: float
    resumed_from: int


class DatasetStore:
    """A site's datasets on disk: ``<root>/<dataset id>`` once verified, partial files apart."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.partial = self.root / ".partial"
        self.partial.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, dataset_id: str) -> Path:
        if not ID_RE.match(dataset_id):
            raise TransferError(f"bad dataset id {dataset_id!r}")
        return self.root / dataset_id

    def has(self, dataset_id: str) -> bool:
        return self.path(dataset_id).is_file()

    def put_file(self, dataset_id: str, source: Path) -> str:
        """Register bytes already at this site (a consumer's upload, a job's output): copied in, hash returned."""
        tmp = self.partial / f"{dataset_id}.local"
        digest = hashlib.sha256()
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path(dataset_id))
        return digest.hexdigest()

    def partial_path(self, dataset_id: str, transfer_id: str) -> Path:
        if not ID_RE.match(transfer_id):
            raise TransferError(f"bad transfer id {transfer_id!r}")
        return self.partial / f"{self.path(dataset_id).name}.{transfer_id}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, headers: dict[str, str], timeout: float) -> tuple[http.client.HTTPConnection,
                                                                     http.client.HTTPResponse]:
    """``GET url`` on a fresh connection straight to the source agent (no proxy: one hop over the link)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransferError(f"bad source url {url!r}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", urlunsplit(("", "", parts.path or "/", parts.query, "")), headers=headers)
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def fetch(url: str, store: DatasetStore, *, dataset_id: str, transfer_id: str, sha256: str, size_bytes: int,
          secret: str, timeout: float = 30.0) -> Fetched:
    """Pull one dataset from the source agent into ``store``: resume, verify, then rename atomically.

    The body is read with ``recv_into`` into a few reused buffers (what arrived, up to ``BLOCK``: no per-chunk
    allocation or HTTP parsing) and written as it comes, so a killed receiver keeps what it got; SHA-256 runs
    on its own thread over the same buffers (``hashlib`` releases the GIL), in the same single pass.  The
    file is fsynced once, at the end.
    """
    final = store.path(dataset_id)
    if final.is_file():
        return Fetched(0, 0.0, size_bytes)  # already here (an earlier try finished before its report was sent)
    part = store.partial_path(dataset_id, transfer_id)
    have = part.stat().st_size if part.exists() else 0
    if have > size_bytes:
        part.unlink()
        have = 0
    start = time.perf_counter()
    moved = 0
    digest = hashlib.sha256()
    headers = {"Authorization": f"Bearer {secret}"}
    if 0 < have < size_bytes:
        headers["Range"] = f"bytes={have}-"
    try:
        if have < size_bytes:
            conn, resp = _open(url, headers, timeout)
            with contextlib.closing(conn):
                if resp.status == 200:
                    have = 0  # the source sent the whole file: start again
                elif resp.status != 206:
                    raise TransferError(f"source answered {resp.status} for dataset {dataset_id}")
                if resp.length is not None and resp.length > size_bytes - have:
                    raise TransferError(f"source would send more than the {size_bytes} bytes registered")
                with open(part, "r+b" if have else "wb") as out:
                    _hash_prefix(out, have, digest)  # one pass: the kept prefix first, then each block
                    out.truncate()
                    moved = _receive(resp, out, digest, size_bytes - have)
                    out.flush()
                    os.fsync(out.fileno())
    except http.client.HTTPException as exc:
        raise TransferError(f"source broke the HTTP exchange ({type(exc).__name__}); the next try resumes") from exc
    got = have + moved
    if got != size_bytes:
        raise TransferError(f"source ended after {got} of {size_bytes} bytes; the next try resumes")
    if not hmac.compare_digest(digest.hexdigest(), sha256):
        part.unlink()
        raise TransferError(f"dataset {dataset_id}: checksum mismatch (sha256 differs); partial file dropped")
    os.replace(part, final)
    return Fetched(moved, time.perf_counter() - start, have)


def _hash_prefix(f: BinaryIO, length: int, digest: Any) -> None:
    f.seek(0)
    left = length
    while left and (chunk := f.read(min(CHUNK, left))):
        digest.update(chunk)
        left -= len(chunk)
    if left:
        raise TransferError("the partial file shrank while resuming")


def _receive(resp: http.client.HTTPResponse, out: BinaryIO, digest: Any, limit: int) -> int:
    """Read at most ``limit`` body bytes into ``out`` and ``digest``; how many came before the source stopped."""
    read = resp.readinto if resp.chunked or resp.fp is None else resp.fp.readinto1  # readinto1: what arrived
    ring = [memoryview(bytearray(BLOCK)) for _ in range(RING)]
    pending: list[Future[None] | None] = [None] * RING
    moved = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="suanwang-sha256") as hasher:  # FIFO: in order
        k = 0
        while moved < limit:
            if (waiting := pending[k]) is not None:
                waiting.result()  # the hasher is done with this buffer
            buf = ring[k]
            n = read(buf[:min(BLOCK, limit - moved)])
            if not n:
                break
            block = buf[:n]
            out.write(block)
            pending[k] = hasher.submit(digest.update, block)
            moved += n
            k = (k + 1) % RING
        for waiting in pending:
            if waiting is not None:
                waiting.result()
    return moved


class Serving:
    """What this agent lets others fetch: dataset id → secret, for each transfer it is the source of."""

    def __init__(self) -> None:
        self._allowed: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def allow(self, dataset_id: str, secret: str) -> None:
        with self._lock:
            self._allowed.setdefault(dataset_id, set()).add(secret)

    def permits(self, dataset_id: str, secret: str) -> bool:
        with self._lock:
            return any(hmac.compare_digest(secret, s) for s in self._allowed.get(dataset_id, ()))


def make_server(store: DatasetStore, serving: Serving, host: str = "127.0.0.1", port: int = 0, *,
                rate_bps: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``GET /datasets/<id>`` with ``Range: bytes=N-`` (206), one secret per transfer.

    ``rate_bps`` > 0 caps each response at that many bytes a second (a site shaping what it serves over a
    link, and tests that must catch a transfer mid-way); 0 sends at full speed with ``sendfile``.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:  # the agent's own log says what matters
            return

        def _refuse(self, code: int, why: str) -> None:
            body = why.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            m = re.fullmatch(r"/datasets/([A-Za-z0-9_-]{1,40})", self.path)
            if not m:
                return self._refuse(404, "not found")
            dataset_id = m.group(1)
            auth = self.headers.get("Authorization", "")
            secret = auth[7:] if auth.startswith("Bearer ") else ""
            if not secret or not serving.permits(dataset_id, secret) or not store.has(dataset_id):
                return self._refuse(404, "not found")  # no oracle: an unknown id and a wrong secret look alike
            path = store.path(dataset_id)
            size = path.stat().st_size
            start = 0
            rng = self.headers.get("Range", "")
            ranged = re.fullmatch(r"bytes=(\d{1,19})-", rng)
            if rng and (not ranged or int(ranged.group(1)) >= size):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if ranged:
                start = int(ranged.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            with open(path, "rb") as f:
                try:
                    self.wfile.flush()
                    if rate_bps > 0:
                        _paced(self.connection, f, start, size - start, rate_bps)
                    else:
                        self.connection.sendfile(f, offset=start, count=size - start)  # zero-copy where it can
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the receiver went away; it resumes with a range
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True  # a receiver's idle keep-alive connection must not hold the agent's exit
    server.block_on_close = False
    return server



def _paced(sock: socket.socket, f: BinaryIO, offset: int, count: int, rate_bps: int) -> None:
    """Send ``count`` bytes from ``offset`` at no more than ``rate_bps`` (slices of a tenth of a second)."""
    f.seek(offset)
    step = max(1, rate_bps // 10)
    began, sent = time.monotonic(), 0
    while sent < count:
        chunk = f.read(min(step, count - sent))
        if not chunk:
            return
        sock.sendall(chunk)
        sent += len(chunk)
        ahead = sent / rate_bps - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)
