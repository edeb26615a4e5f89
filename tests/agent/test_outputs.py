"""Directory outputs: the manifest hash as documented, one deterministic archive, links and special files
refused, caps with a reason, and an archive from another site unpacked only as plain files."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from suanwang.agent.outputs import OutputRefused, manifest_hash, pack_dir, unpacked

FILES = {"model.bin": b"\x00weights" * 1000, "cfg/a.json": b"{}", "cfg/b/c.txt": b"deep", "a0": b"after a/",
         "a-b": b"before a/", "\u00e9t\u00e9.txt": b"summer"}


def _tree(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _expected(files: dict[str, bytes]) -> str:
    lines = sorted((rel.encode(), hashlib.sha256(d).hexdigest()) for rel, d in files.items())
    return hashlib.sha256(b"".join(f"{sha}  ".encode() + rel + b"\n" for rel, sha in lines)).hexdigest()


def test_the_manifest_hash_is_the_documented_one_and_the_archive_is_deterministic(tmp_path: Path) -> None:
    top = _tree(tmp_path / "out")
    (top / "empty").mkdir()  # empty directories are not part of it
    a = pack_dir(top, tmp_path / "a.tar", owner_uid=None)
    b = pack_dir(top, tmp_path / "b.tar", owner_uid=None)
    assert a.sha256 == _expected(FILES) and a.files == len(FILES) and a.kind == "dir"
    assert (a.archive_sha256, a.size_bytes) == (b.archive_sha256, b.size_bytes)
    data = (tmp_path / "a.tar").read_bytes()
    assert hashlib.sha256(data).hexdigest() == a.archive_sha256 and len(data) == a.size_bytes
    shell = subprocess.run(  # the docstring's shell check
        "find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
        shell=True, cwd=top, capture_output=True, check=True, text=True)  # nosec B602
    assert shell.stdout.split()[0] == a.sha256


@pytest.mark.parametrize("plant", ["file_link", "dir_link", "hard_link", "fifo"])
def test_links_and_special_files_are_refused_with_the_reason(tmp_path: Path, plant: str) -> None:
    top = _tree(tmp_path / "out")
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret")
    if plant == "file_link":
        (top / "cfg" / "shadow").symlink_to("/etc/shadow")
        why = "cfg/shadow is a symbolic link"
    elif plant == "dir_link":
        (top / "etc").symlink_to("/etc")
        why = "etc is a symbolic link"
    elif plant == "hard_link":
        os.link(secret, top / "stolen")
        why = "stolen has 2 hard links"
    else:
        os.mkfifo(top / "pipe")
        why = "pipe is not a regular file"
    with pytest.raises(OutputRefused, match=why):
        pack_dir(top, tmp_path / "a.tar", owner_uid=None)


def test_another_users_file_is_refused(tmp_path: Path) -> None:
    top = _tree(tmp_path / "out", {"x": b"x"})
    with pytest.raises(OutputRefused, match="belongs to uid"):
        pack_dir(top, tmp_path / "a.tar", owner_uid=os.geteuid() + 1)


def test_caps_on_files_and_bytes_fail_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = _tree(tmp_path / "out")
    monkeypatch.setenv("SUANWANG_OUTPUT_MAX_FILES", "3")
    with pytest.raises(OutputRefused, match="more than 3 files"):
        pack_dir(top, tmp_path / "a.tar", owner_uid=None)
    monkeypatch.setenv("SUANWANG_OUTPUT_MAX_FILES", "100")
    monkeypatch.setenv("SUANWANG_OUTPUT_MAX_BYTES", "1000")
    with pytest.raises(OutputRefused, match="larger than 1000 bytes"):
        pack_dir(top, tmp_path / "a.tar", owner_uid=None)


def test_unpacked_for_a_job_with_its_manifest_checked(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / ".partial").mkdir(parents=True)
    got = pack_dir(_tree(tmp_path / "out"), root / "d-1", owner_uid=None)
    dest = unpacked(root, "d-1", root / "d-1", got.sha256, root / ".partial")
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == FILES
    assert unpacked(root, "d-1", root / "d-1", got.sha256, root / ".partial") == dest  # once
    with pytest.raises(OutputRefused, match="do not match its manifest"):
        unpacked(root, "d-2", root / "d-1", "0" * 64, root / ".partial")
    assert not (root / ".dirs" / "d-2").exists()


@pytest.mark.parametrize("member", ["../escaped", "/abs", "ok/../../escaped", "link"])
def test_an_archive_from_another_site_is_unpacked_only_as_plain_files(tmp_path: Path, member: str) -> None:
    root = tmp_path / "store"
    (root / ".partial").mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    (root / "d-x").write_bytes(buf.getvalue())
    with pytest.raises(OutputRefused, match="is not a plain file"):
        unpacked(root, "d-x", root / "d-x", manifest_hash([]), root / ".partial")
    assert not (tmp_path / "escaped").exists() and not (root / "escaped").exists()
    assert not (root / ".dirs" / "d-x").exists()


def test_an_output_that_is_itself_a_link_is_refused(tmp_path: Path) -> None:
    from suanwang.agent import job_data

    root = tmp_path / "store"
    job_data.prepare(root, "j-1", 1, [], {"dataset_id": "d-out"})
    out = job_data.output_dir(root, "j-1", 1)
    (out / "data").symlink_to("/etc")
    with pytest.raises(OutputRefused, match="is a symbolic link"):
        job_data.collect(root, "j-1", 1, "d-out")
    assert not (root / "d-out").exists() and not out.exists()
