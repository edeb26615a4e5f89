"""Finding the platform and a token: flags, then environment, then a local `up`'s data directory."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

import suanwang.client as sdk
from suanwang.client import ApiError
from suanwang.client._config import POINTER, find_platform, home_dir
from suanwang.client._config import default_data_dir as default_data_dir  # the commands' (and tests') names
from suanwang.client._config import read_text as _read  # noqa: F401  (billing and audit commands use it)

console = Console()
err = Console(stderr=True)


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


class Client(sdk.Client):
    """The SDK's client (``suanwang.client``: the same calls, HTTP layer and errors) as a command uses it: the
    platform found from flags, environment or the data directory (a consumer's token, else the operator's),
    and a refused call (:class:`ApiError`) or an unreachable platform turned into one red line and exit 1."""

    def __init__(self, url: str | None, token: str | None, data_dir: Path | None = None) -> None:
        self.url, self.token = find_platform(url, token, data_dir, ("consumer.token", "operator.token"))
        if not self.token:
            err.print("[red]no token: pass --token, set SUANWANG_TOKEN, or run `suanwang up` first[/red]")
            raise typer.Exit(2)
        super().__init__(http_client=httpx.Client(base_url=self.url + "/api/v1",
                                                  headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0))

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, content: bytes | None = None) -> Any:
        try:
            return super().request(method, path, json=json, params=params, headers=headers, content=content)
        except ApiError as exc:
            err.print(f"[red]error {exc.status}: {exc.message}[/red]")
            raise typer.Exit(1) from None
        except httpx.HTTPError as exc:
            err.print(f"[red]cannot reach {self.url}: {exc}[/red]")
            raise typer.Exit(1) from exc

    call = request  # the operator commands' form: ``call("POST", "/tenants", json=...)``


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
