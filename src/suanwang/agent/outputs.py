"""A job's output, one file or a directory of files: collected without following links, hashed, capped, and
for a directory packed into one archive that staged transfers move and verify as one file.

**Manifest hash** (a directory dataset's ``sha256``): one line per regular file, ``<sha256 hex>  <path>\\n``
(``sha256sum``'s format), the path relative to the directory with ``/`` between parts, the lines sorted by the
paths' UTF-8 bytes; the hash is the SHA-256 of those lines.  Empty directories are not part of it.  Checked
from a shell: ``cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum``.

**Why one archive, not per-file transfers.**  A directory is packed once, at the site that wrote it, into a
deterministic uncompressed tar (files only, sorted per directory, mode 0644, owner 0, mtime 0); the dataset's
``size_bytes`` is that archive's length (what is stored, moved and billed) and ``archive_sha256`` its hash.
The staged-transfer path then moves it unchanged: one HTTP stream with Range resume, one hash checked before
one atomic rename, so a job never sees half a directory, and a set of 10,000 small files costs one request,
not 10,000.  Jobs reading it get it unpacked (and its manifest checked again) under ``.dirs/<id>``.

**What is refused** (the job fails with the reason): a symbolic link anywhere in the directory (a job linking
``/etc/shadow`` must not have the root agent export it; links are never followed, not even inside), anything
not a regular file or directory, a file with more than one hard link or owned by another user than the output
directory's (a hard link to a file the job could not read), a path that is not UTF-8 or holds a newline, and
more than ``SUANWANG_OUTPUT_MAX_FILES`` files (100,000) or ``SUANWANG_OUTPUT_MAX_BYTES`` bytes (1 TiB).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

CHUNK = 1 << 20
MAX_FILES = 100_000
MAX_BYTES = 1 << 40
UNPACKED = ".dirs"


class OutputRefused(Exception):
    """The job's output cannot be exported as written: the message says why, in words a user can read."""


@dataclass(frozen=True, slots=True)
class Collected:
    """What was stored: ``sha256`` is the file's hash, or for a directory its manifest hash."""

    kind: str  # "file" | "dir"
    size_bytes: int  # the stored file's length (for a directory, its archive's)
    sha256: str
    archive_sha256: str = ""  # a directory's archive, as transfers verify it
    files: int = 1


def limits() -> tuple[int, int]:
    """(max files, max bytes) of one output, from the agent's environment."""
    files = int(os.environ.get("SUANWANG_OUTPUT_MAX_FILES", "") or MAX_FILES)
    size = int(os.environ.get("SUANWANG_OUTPUT_MAX_BYTES", "") or MAX_BYTES)
    return max(1, files), max(0, size)


def manifest_hash(lines: list[tuple[str, str]]) -> str:
    """The manifest hash of ``(relative path, file sha256)`` pairs (any order)."""
    digest = hashlib.sha256()
    for path, sha in sorted(lines, key=lambda ps: ps[0].encode()):
        digest.update(f"{sha}  {path}\n".encode())
    return digest.hexdigest()


def check_file(st: os.stat_result, what: str, owner_uid: int | None) -> None:
    """A file fit to export: regular, one link, the job's own."""
    if stat.S_ISLNK(st.st_mode):
        raise OutputRefused(f"{what} is a symbolic link; links are not exported")
    if not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"{what} is not a regular file")
    if st.st_nlink != 1:
        raise OutputRefused(f"{what} has {st.st_nlink} hard links; only files with one are exported")
    if owner_uid is not None and st.st_uid != owner_uid:
        raise OutputRefused(f"{what} belongs to uid {st.st_uid}, not to the job's user")


def _check_path(rel: str) -> None:
    try:
        rel.encode()
    except UnicodeEncodeError:
        raise OutputRefused(f"output path {rel.encode(errors='surrogateescape')!r} is not UTF-8") from None
    if "\n" in rel or "\r" in rel:
        raise OutputRefused(f"output path {rel!r} holds a line break")


class _Hashing:
    """A file object that hashes (and counts) what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.digest, self.n = raw, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.n += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.n += len(data)
        return self.raw.write(data)


def _walk(top: Path) -> Iterator[tuple[str, str, int]]:
    """(relative path, name, directory fd) of each entry to export, sorted per directory; links refused."""
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        base = os.path.relpath(dirpath, top)
        for name in dirnames:  # a link to a directory is listed here, never entered: refuse it
            if stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                raise OutputRefused(f"{_rel(base, name)} is a symbolic link; links are not exported")
        dirnames.sort(key=str.encode)
        for name in sorted(filenames, key=str.encode):
            yield _rel(base, name), name, dirfd


def _rel(base: str, name: str) -> str:
    return name if base == "." else f"{base}/{name}"


def pack_dir(top: Path, archive: Path, *, owner_uid: int | None) -> Collected:
    """Walk ``top`` (never following a link), write its files into a deterministic tar at ``archive`` (fsynced),
    and return its manifest hash, archive hash and length.  OutputRefused names what is wrong."""
    max_files, max_bytes = limits()
    lines: list[tuple[str, str]] = []
    total = 0
    with open(archive, "wb") as raw:
        out = _Hashing(raw)  # type: ignore[arg-type]
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for rel, name, dirfd in _walk(top):
                _check_path(rel)
                if len(lines) >= max_files:
                    raise OutputRefused(f"output has more than {max_files} files (SUANWANG_OUTPUT_MAX_FILES)")
                check_file(os.stat(name, dir_fd=dirfd, follow_symlinks=False), rel, owner_uid)
                try:  # checked again on the open file: it may have been swapped since
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
                except OSError as exc:
                    raise OutputRefused(f"{rel} cannot be opened without following a link: {exc.strerror}") from exc
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(fd)
                    check_file(st, rel, owner_uid)
                    total += st.st_size
                    if total > max_bytes:
                        raise OutputRefused(f"output is larger than {max_bytes} bytes (SUANWANG_OUTPUT_MAX_BYTES)")
                    info = tarfile.TarInfo(rel)
                    info.size, info.mode, info.mtime, info.type = st.st_size, 0o644, 0, tarfile.REGTYPE
                    src = _Hashing(f)  # type: ignore[arg-type]
                    tar.addfile(info, src)
                    lines.append((rel, src.digest.hexdigest()))
        raw.flush()
        os.fsync(raw.fileno())
    return Collected("dir", out.n, manifest_hash(lines), out.digest.hexdigest(), len(lines))


def unpacked(root: Path, dataset_id: str, archive: Path, manifest_sha256: str, partial: Path) -> Path:
    """A directory dataset unpacked for the jobs reading it, ``<root>/.dirs/<id>`` (once; its manifest checked).

    Only regular-file members with plain relative paths are written, each created anew without following
    links; anything else in the archive refuses it (it came from another site: trust its hash, not its paths).
    """
    base = Path(root) / UNPACKED
    base.mkdir(mode=0o711, exist_ok=True)
    os.chmod(base, 0o711)  # nosec B103  # traverse only: a job enters its inputs by id, lists none
    dest = base / dataset_id
    if dest.is_dir() and not dest.is_symlink():
        return dest
    tmp = partial / f"{dataset_id}.unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    lines: list[tuple[str, str]] = []
    with tarfile.open(archive, mode="r:") as tar:
        for m in tar:
            parts = PurePosixPath(m.name).parts
            if not m.isreg() or not parts or m.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise OutputRefused(f"dataset {dataset_id}: archive member {m.name!r} is not a plain file")
            d = tmp
            for p in parts[:-1]:
                d = d / p
                d.mkdir(mode=0o755, exist_ok=True)
                if d.is_symlink() or not d.is_dir():
                    raise OutputRefused(f"dataset {dataset_id}: archive member {m.name!r} crosses a file")
            src = tar.extractfile(m)
            assert src is not None
            fd = os.open(d / parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                h = _Hashing(f)  # type: ignore[arg-type]
                while chunk := src.read(CHUNK):
                    h.write(chunk)
            os.chmod(d / parts[-1], 0o644)
            lines.append(("/".join(parts), h.digest.hexdigest()))
    if manifest_hash(lines) != manifest_sha256:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputRefused(f"dataset {dataset_id}: unpacked files do not match its manifest hash")
    for dirpath, _dirs, _files in os.walk(tmp):
        os.chmod(dirpath, 0o755)  # nosec B103  # the job (another uid) lists and reads its input
    try:
        os.replace(tmp, dest)
    except OSError:  # unpacked meanwhile (another agent on this root): theirs stands
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():
            raise
    return dest


def forget(root: Path, dataset_id: str) -> None:
    """The unpacked copy of a dataset this site no longer holds."""
    shutil.rmtree(Path(root) / UNPACKED / dataset_id, ignore_errors=True)
