"""A job's declared datasets at the agent: where it finds its inputs, where it writes its output, and the
output's hash reported when it ends (docs/workflows.md, "Jobs and data").

The job is told paths in its environment: ``SUANWANG_INPUTS`` (every input, ``os.pathsep``-separated),
``SUANWANG_INPUT_<NAME>`` (one per input, the name upper-cased, other characters ``_``) and
``SUANWANG_OUTPUT`` (a file, or a directory of files, to write: :mod:`suanwang.agent.outputs`).  Inputs are
the verified replicas at ``<datasets root>/<id>`` (a directory's unpacked under ``.dirs/<id>``): a staged
file is renamed there only after its hash matched, so a job never reads a partial one.  The output is read
without following links (a job cannot make the agent publish a file it could not read itself), copied (or
packed) into the store while hashed and fsynced, and only then renamed to ``<root>/<reserved id>``.  The
output's directory is the job's own user's, mode 0700: only it and the agent (root) may enter it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

from suanwang.agent.outputs import Collected, OutputRefused, check_file, limits, pack_dir, unpacked
from suanwang.agent.transfer import CHUNK, DatasetStore

OUT_DIR = ".out"


class InputMissing(Exception):
    """An input the platform said is here is not: the attempt fails with this reason."""


def _var(name: str) -> str:
    return "SUANWANG_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def prepare(root: Path, job_id: str, attempt: int, inputs: list[dict[str, Any]],
            output: dict[str, str], *, owner: tuple[int, int] | None = None) -> dict[str, str]:
    """The environment that points the job at its inputs and output; the output's directory made for it.

    ``owner`` (uid, gid) is the user the job runs as (the local executor's per-tenant uid when the agent is
    root); None: the agent's own user (an engine that runs jobs as the agent's user, or a shared-user agent).
    """
    store = DatasetStore(root)
    os.chmod(root, 0o711)  # nosec B103  # traverse only: jobs reach their inputs by id; none lists the rest
    env: dict[str, str] = {}
    paths = []
    for i in inputs:
        path = store.path(str(i["dataset_id"]))
        if not path.is_file():
            raise InputMissing(f"input {i.get('name')}@{i.get('version')} ({i['dataset_id']}) is not at this site")
        os.chmod(path, 0o644)  # the job runs as its tenant's uid; whatever the agent's umask was
        if i.get("kind") == "dir":  # a set of files: the job reads them unpacked, its manifest checked
            try:
                path = unpacked(root, str(i["dataset_id"]), path, str(i.get("sha256", "")), store.partial)
            except (OutputRefused, tarfile.TarError) as exc:
                raise InputMissing(f"input {i.get('name')}@{i.get('version')}: {exc}") from exc
        paths.append(str(path))
        env[_var(str(i.get("name", i["dataset_id"])))] = str(path)
    if paths:
        env["SUANWANG_INPUTS"] = os.pathsep.join(paths)
    if output:
        store.path(output["dataset_id"])  # a well-formed id, or TransferError
        out = output_dir(root, job_id, attempt)
        out.parent.mkdir(mode=0o711, exist_ok=True)
        os.chmod(out.parent, 0o711)  # nosec B103  # traverse only: a job enters its own directory; none lists others
        _private_dir(out, owner)
        env["SUANWANG_OUTPUT"] = str(out / "data")
    return env


def _private_dir(path: Path, owner: tuple[int, int] | None) -> None:
    """``path`` a directory only the job's user may enter (0700, owned by it).

    Made by the agent inside a parent only the agent may write (``.out``, 0711), so nobody can plant a link
    there first; checked anyway, and chowned without following links.
    """
    path.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise InputMissing(f"{path} is not a directory")
    if owner is not None:
        os.chown(path, owner[0], owner[1], follow_symlinks=False)
    os.chmod(path, 0o700)


def output_dir(root: Path, job_id: str, attempt: int) -> Path:
    return Path(root) / OUT_DIR / f"{DatasetStore(root).path(job_id).name}-{int(attempt)}"


def collect(root: Path, job_id: str, attempt: int, dataset_id: str) -> Collected:
    """The written output stored as ``dataset_id``: a file copied while hashed, or a directory packed
    (:mod:`suanwang.agent.outputs`); fsynced, then renamed into place.  OSError if nothing was written,
    OutputRefused if what was written may not be exported."""
    store = DatasetStore(root)
    out = output_dir(root, job_id, attempt)
    owner_uid = os.lstat(out).st_uid
    owner = None if owner_uid == os.geteuid() else owner_uid  # the job's own user (not the agent's): its files only
    tmp = store.partial / f"{store.path(dataset_id).name}.out"
    try:
        mode = os.lstat(out / "data").st_mode
        if stat.S_ISLNK(mode):
            raise OutputRefused("$SUANWANG_OUTPUT is a symbolic link; links are not exported")
        if stat.S_ISDIR(mode):
            got = pack_dir(out / "data", tmp, owner_uid=owner)
        else:
            got = _copy_file(out / "data", tmp, owner)
        os.chmod(tmp, 0o644)
        os.replace(tmp, store.path(dataset_id))
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)  # stored or refused: the attempt's directory is done with
    return got


def _copy_file(path: Path, tmp: Path, owner: int | None) -> Collected:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        check_file(os.fstat(fd), "$SUANWANG_OUTPUT", owner)
        _, max_bytes = limits()
        digest, size = hashlib.sha256(), 0
        with os.fdopen(os.dup(fd), "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise OutputRefused(f"output is larger than {max_bytes} bytes (SUANWANG_OUTPUT_MAX_BYTES)")
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    finally:
        os.close(fd)
    return Collected("file", size, digest.hexdigest())
