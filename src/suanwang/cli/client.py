"""Finding the platform and a token: flags, then environment, then a local `up`'s data directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


POINTER = "last-data-dir"  # in ~/.suanwang: the data directory the last `up --data-dir` or `demo` used


def home_dir() -> Path:
    return Path(os.environ.get("SUANWANG_HOME") or Path.home() / ".suanwang")


def default_data_dir() -> Path:
    """SUANWANG_HOME, else the data directory of the last `up --data-dir` or `demo` while it still holds a
    platform's url, else ~/.suanwang: so the hints those commands print work as printed."""
    if os.environ.get("SUANWANG_HOME"):
        return home_dir()
    home = home_dir()
    pointed = _read(home / POINTER)
    if pointed and (Path(pointed) / "url").is_file():
        return Path(pointed)
    return home


def remember_data_dir(d: Path) -> None:
    """Point client commands at ``d`` (or back at the home directory when ``d`` is it)."""
    home = home_dir()
    if os.environ.get("SUANWANG_HOME"):
        return
    try:
        if d.resolve() == home.resolve():
            (home / POINTER).unlink(missing_ok=True)
            return
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        (home / POINTER).write_text(str(d.resolve()) + "\n")
    except OSError as exc:  # a read-only home: the hints then need --data-dir or SUANWANG_HOME
        err.print(f"[yellow]could not note the data directory in {home}: {exc}[/yellow]")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Client:
    """A thin httpx wrapper that turns API errors into one clear line and exit code 1."""

    def __init__(self, url: str | None, token: str | None, data_dir: Path | None = None) -> None:
        d = data_dir or default_data_dir()
        self.url = (url or os.environ.get("SUANWANG_URL") or _read(d / "url") or "http://127.0.0.1:8600").rstrip("/")
        self.token = (token or os.environ.get("SUANWANG_TOKEN") or _read(d / "consumer.token")
                      or _read(d / "operator.token"))
        if not self.token:
            err.print("[red]no token: pass --token, set SUANWANG_TOKEN, or run `suanwang up` first[/red]")
            raise typer.Exit(2)
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=30.0)
        self.replayed = False  # the last answer was the stored first answer to its Idempotency-Key


    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            err.print(f"[red]cannot reach {self.url}: {exc}[/red]")
            raise typer.Exit(1) from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except json.JSONDecodeError:
                detail = resp.text
            err.print(f"[red]error {resp.status_code}: {detail}[/red]")
            raise typer.Exit(1)
        self.replayed = resp.headers.get("idempotent-replayed") == "true"
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def read_secret(path: Path) -> str:
    text = path.read_text().strip()
    if not text:
        err.print(f"[red]{path} is empty[/red]")
        raise typer.Exit(2)
    return text


def write_secret(path: Path, text: str) -> None:
    """Write a token readable by its owner only (0600 from creation, also when the file existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def enrol_agent(url: str, enrol_token: str) -> str:
    """Trade a one-use enrolment token for this site's agent token."""
    try:
        resp = httpx.post(url.rstrip("/") + "/api/v1/agent/enrol", json={"enrol_token": enrol_token}, timeout=30)
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach {url}: {exc}[/red]")
        raise typer.Exit(1) from exc
    if resp.status_code != 201:
        err.print(f"[red]enrolment refused ({resp.status_code}): {resp.text}[/red]")
        raise typer.Exit(1)
    return str(resp.json()["token"])
