"""Staged transfers between two sites' agents: plain HTTP with Range requests, SHA-256 verified.

Why agent-to-agent HTTP rather than rclone or S3: every site already runs an agent and nothing else
can be assumed of it (an edge box has no object store, a Slurm site no rclone remote); the agent
already holds the site's identity, so the platform can hand both ends a one-use secret for one
transfer; and HTTP Range gives resume for free.  A site that has S3 can still serve its store
through the agent.

The receiving side never lets a job see a partial file: bytes go to ``.partial/<id>.<transfer>``,
are hashed in full once complete, and only a file whose SHA-256 matches the registered one is
renamed (``os.replace``, atomic on one filesystem) to ``<root>/<dataset id>``.  A transfer cut
mid-way (the receiving agent killed) resumes from the partial file's length with
``Range: bytes=N-``; a source that ignores the range (200 instead of 206) restarts it from zero.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import httpx

CHUNK = 1 << 20
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


def fetch(client: httpx.Client, url: str, store: DatasetStore, *, dataset_id: str, transfer_id: str, sha256: str,
          size_bytes: int, secret: str, on_progress: Callable[[int], None] | None = None) -> Fetched:
    """Pull one dataset from the source agent into ``store``: resume, verify, then rename atomically."""
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
    digest = hashlib.sha256()  # one pass: the kept prefix first, then each chunk as it arrives
    if have:
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    headers = {"Authorization": f"Bearer {secret}"}
    if 0 < have < size_bytes:
        headers["Range"] = f"bytes={have}-"
    if have < size_bytes:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 200:
                have, digest = 0, hashlib.sha256()  # the source sent the whole file: start again
            elif resp.status_code != 206:
                raise TransferError(f"source answered {resp.status_code} for dataset {dataset_id}")
            with open(part, "r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()
                for chunk in resp.iter_raw():
                    if have + moved + len(chunk) > size_bytes:
                        raise TransferError(f"source sent more than the {size_bytes} bytes registered")
                    out.write(chunk)
                    digest.update(chunk)
                    moved += len(chunk)
                    if on_progress:
                        on_progress(have + moved)
                out.flush()
                os.fsync(out.fileno())
    got = have + moved
    if got != size_bytes:
        raise TransferError(f"source ended after {got} of {size_bytes} bytes; the next try resumes")
    if not hmac.compare_digest(digest.hexdigest(), sha256):
        part.unlink()
        raise TransferError(f"dataset {dataset_id}: checksum mismatch (sha256 differs); partial file dropped")
    os.replace(part, final)
    return Fetched(moved, time.perf_counter() - start, have)


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
