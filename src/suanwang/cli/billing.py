"""Money commands: quote, wallet, topup, credit, price-book, contract, voucher, settle, ledger.

Operator commands (topup, credit, price-book set, contract, voucher, settle)
use the operator token by default; the others the consumer's.  Money-moving
commands send an Idempotency-Key, so re-running one after a timeout is safe
when the same ``--key`` is given.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from suanwang.cli.client import Client, _read, console, default_data_dir, print_json
from suanwang.cli.jobs import Json, Token, Url
from suanwang.domain.money import format_yuan

price_book = typer.Typer(help="Price books: publish a new version, list versions.", no_args_is_help=True)
voucher = typer.Typer(help="Compute voucher (算力券) programmes.", no_args_is_help=True)
Key = Annotated[str | None, typer.Option("--key", help="idempotency key (default: a new random one)")]


def _operator(url: str | None, token: str | None) -> Client:
    d = default_data_dir()
    return Client(url, token or os.environ.get("SUANWANG_TOKEN") or _read(d / "operator.token"))


def _key(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key or uuid.uuid4().hex}


def _yuan(m: dict[str, Any]) -> str:
    return f"{m['yuan']} ({m['fen']} fen)"


def _wallet_line(w: dict[str, Any]) -> str:
    return (f"{w['consumer']}: balance {_yuan(w['balance'])}, held {_yuan(w['held'])}, "
            f"credit {_yuan(w['credit_limit'])}, available {_yuan(w['available'])}")


def register(app: typer.Typer) -> None:
    app.add_typer(price_book, name="price-book")
    app.add_typer(voucher, name="voucher")
    register_reverse(app)

    @app.command()
    def quote(
        command: Annotated[list[str], typer.Argument(help="the command, after --")],
        cores: int = 1, memory_gb: float = 1.0, devices: int = 0,
        resource_class: Annotated[str, typer.Option("--class")] = "general",
        device_model: str = "", duration_s: float = 3600.0, service_level: str = "standard", region: str = "",
        url: Url = None, token: Token = None, json: Json = False,
    ) -> None:
        """What a job would cost at each eligible pool: suanwang quote --cores 4 -- python train.py"""
        body = {"command": command, "cores": cores, "memory_gb": memory_gb, "devices": devices,
                "resource_class": resource_class, "device_model": device_model, "duration_s": duration_s,
                "service_level": service_level, "region": region}
        q = Client(url, token).quote(body)
        if json:
            print_json(q)
            return
        if not q["priced"]:
            console.print(q["note"])
            return
        table = Table("site/pool", "unit", "unit price (fen)", "units", "gross (yuan)", "voucher", "total (yuan)")
        for p in q["pools"]:
            table.add_row(f"{p['site']}/{p['pool']}", p["unit"], p["unit_price_fen"], p["units"], p["gross"]["yuan"],
                          p["voucher"]["yuan"], p["total"]["yuan"])
        console.print(table)
        console.print(f"hold at submit: {_yuan(q['hold'])}")

    @app.command()
    def wallet(consumer: Annotated[str | None, typer.Argument(help="tenant id (default: your own)")] = None,
               url: Url = None, token: Token = None, json: Json = False) -> None:
        """Your wallet (or a consumer's, for operators): balance, held, credit line, available."""
        w = Client(url, token).wallet(consumer or None)
        print_json(w) if json else console.print(_wallet_line(w))

    @app.command()
    def topup(consumer: str, amount_fen: int, reason: str = "", key: Key = None, url: Url = None, token: Token = None,
              json: Json = False) -> None:
        """Operator: add AMOUNT_FEN fen to CONSUMER's wallet (100 fen = 1 yuan)."""
        client = _operator(url, token)
        r = client.call("POST", "/topups", json={"consumer": consumer, "amount_fen": amount_fen, "reason": reason},
                        headers=_key(key))
        # a repeated key answers the first result again: say so, the money moved once
        label = f"{r['result']} earlier (same key; nothing moved now)" if client.replayed else r["result"]
        print_json(r) if json else console.print(f"{label}: {_wallet_line(r)}")

    @app.command()
    def credit(consumer: str, limit_fen: int, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Operator: set how far below zero CONSUMER's wallet may go."""
        r = _operator(url, token).call("PUT", f"/wallets/{consumer}/credit", json={"credit_limit_fen": limit_fen})
        print_json(r) if json else console.print(_wallet_line(r))

    @app.command()
    def contract(provider: str, fee_bps: int, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Operator: the platform fee charged on PROVIDER's earnings, in basis points (700 = 7%)."""
        r = _operator(url, token).call("PUT", f"/contracts/{provider}", json={"fee_bps": fee_bps})
        print_json(r) if json else console.print(f"{r['provider']}: fee {r['fee_bps']} bps")

    @app.command()
    def settle(start: Annotated[str, typer.Option(help="period start: ISO time or Unix seconds")],
               end: Annotated[str, typer.Option(help="period end (exclusive)")],
               csv: Annotated[bool, typer.Option("--csv", help="print the statements as CSV")] = False,
               no_payouts: bool = False, url: Url = None, token: Token = None, json: Json = False) -> None:
        """Operator: close [START, END): statements per consumer and provider, payouts; the period is then immutable."""
        c = _operator(url, token)
        s = c.call("POST", "/settlements", json={"start": _time(start), "end": _time(end), "payouts": not no_payouts})
        if csv:
            typer.echo(c.call("GET", f"/settlements/{s['id']}/csv"), nl=False)
        elif json:
            print_json(s)
        else:
            _print_settlement(s)

    @app.command()
    def ledger(job_id: str | None = None, consumer: str | None = None, limit: int = 100,
               reconcile: Annotated[bool, typer.Option("--reconcile", help="check the ledger instead")] = False,
               url: Url = None, token: Token = None, json: Json = False) -> None:
        """The audit view: each transfer with its usage record, job, price book version and actor."""
        c = Client(url, token)
        if reconcile:
            r = c.call("GET", "/ledger/reconcile")
            total = format_yuan(int(r["total_fen"]))
            print_json(r) if json else console.print(f"reconciled: {r['ok']} ({r['transfers']} transfers, "
                                                     f"{r['accounts']} accounts, total ¥{total})")
            if not r["ok"]:
                raise typer.Exit(1)
            return
        params = {k: v for k, v in {"job_id": job_id, "consumer": consumer, "limit": limit}.items() if v}
        rows = c.call("GET", "/ledger/transfers", params=params)
        if json:
            print_json(rows)
            return
        table = Table("seq", "kind", "booked", "job", "usage", "book", "actor", "postings")
        for t in rows:
            table.add_row(str(t["seq"]), t["kind"], t["booked_at"][:19], t["job_id"], t["usage_key"],
                          t["price_book_version"], t["actor"], t["postings"])
        console.print(table)


def register_reverse(app: typer.Typer) -> None:
    @app.command()
    def reverse(transfer: str, reason: Annotated[str, typer.Option(help="why (kept in the audit trail)")],
                url: Url = None, token: Token = None, json: Json = False) -> None:
        """Operator: correct a transfer by booking its exact negation (a transfer is reversed once)."""
        r = _operator(url, token).call("POST", "/ledger/reversals", json={"transfer": transfer, "reason": reason})
        print_json(r) if json else console.print(f"{r['result']}: {r['key']} ({r['postings']})")


def _time(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value


def _print_settlement(s: dict[str, Any]) -> None:
    console.print(f"settlement {s['id']}: {s['start']} .. {s['end']} ({s['transfer_count']} transfers)")
    table = Table("consumer", "opening ¥", "top-ups ¥", "charged ¥", "vouchers ¥", "closing ¥", "held ¥")
    for c in s["consumers"]:
        table.add_row(c["consumer"], *(format_yuan(int(c[k])) for k in (
            "opening_fen", "topups_fen", "charged_fen", "voucher_fen", "closing_fen", "closing_held_fen")))
    console.print(table)
    table = Table("provider", "fee bps", "opening ¥", "gross ¥", "fee ¥", "earned ¥", "payouts ¥", "closing ¥")
    for p in s["providers"]:
        table.add_row(p["provider"], str(p["fee_bps"]), *(format_yuan(int(p[k])) for k in (
            "opening_fen", "gross_fen", "fee_fen", "earned_fen", "payouts_fen", "closing_fen")))
    console.print(table)
    for p in s["payouts"]:
        console.print(f"payout {p['provider']}: {p['yuan']} yuan")


@price_book.command("set")
def price_book_set(file: Path, url: Url = None, token: Token = None, json: Json = False) -> None:
    """Publish FILE (JSON: {"entries": [...], "effective_from": ..., "version": ...}) as a new version."""
    r = _operator(url, token).call("POST", "/price-books", content=file.read_bytes(),
                                   headers={"Content-Type": "application/json"})
    if json:
        print_json(r)
    else:
        console.print(f"price book {r['owner']} v{r['version']} effective {r['effective_from']} "
                      f"({len(r['entries'])} entries)")
        if r["stand_in_tou"]:
            console.print(f"note: stand-in time-of-use windows for {', '.join(r['stand_in_tou'])}")


@price_book.command("list")
def price_book_list(url: Url = None, token: Token = None, json: Json = False) -> None:
    """Every price book version, per owner (the operator's series, then each provider's)."""
    rows = Client(url, token).call("GET", "/price-books")
    if json:
        print_json(rows)
        return
    table = Table("owner", "version", "effective from", "entries")
    for b in rows:
        table.add_row(b["owner"], str(b["version"]), b["effective_from"], str(len(b["entries"])))
    console.print(table)


@voucher.command("create")
def voucher_create(
    programme: str, share_pct: str, cap_fen: int,
    valid_from: Annotated[str, typer.Option(help="ISO time or Unix seconds")],
    valid_until: Annotated[str, typer.Option(help="ISO time or Unix seconds (exclusive)")],
    resource_class: Annotated[list[str] | None, typer.Option("--class", help="eligible class (repeat)")] = None,
    consumer: Annotated[list[str] | None, typer.Option("--consumer", help="eligible consumer (repeat)")] = None,
    fund_fen: int = 0, key: Key = None, url: Url = None, token: Token = None, json: Json = False,
) -> None:
    """Operator: a programme paying SHARE_PCT % of eligible charges, up to CAP_FEN per consumer."""
    body: dict[str, Any] = {"id": programme, "share_pct": share_pct, "cap_per_consumer_fen": cap_fen,
                            "valid_from": _time(valid_from), "valid_until": _time(valid_until)}
    if resource_class:
        body["resource_classes"] = resource_class
    if consumer:
        body["consumers"] = consumer
    if fund_fen:
        body["fund_fen"] = fund_fen
    r = _operator(url, token).call("POST", "/vouchers", json=body, headers=_key(key))
    print_json(r) if json else console.print(f"{r['id']}: {r['share_pct']}% up to {_yuan(r['cap_per_consumer'])}, "
                                             f"fund {_yuan(r['fund'])}")


@voucher.command("fund")
def voucher_fund(programme: str, amount_fen: int, key: Key = None, url: Url = None, token: Token = None,
                 json: Json = False) -> None:
    """Operator: add AMOUNT_FEN to a programme's fund."""
    r = _operator(url, token).call("POST", f"/vouchers/{programme}/fund", json={"amount_fen": amount_fen},
                                   headers=_key(key))
    print_json(r) if json else console.print(f"{r['id']}: fund {_yuan(r['fund'])}, spent {_yuan(r['spent'])}")


@voucher.command("list")
def voucher_list(url: Url = None, token: Token = None, json: Json = False) -> None:
    """Programmes, their funds and what they have paid."""
    rows = Client(url, token).call("GET", "/vouchers")
    if json:
        print_json(rows)
        return
    table = Table("id", "share %", "cap", "valid", "fund", "spent")
    for v in rows:
        table.add_row(v["id"], v["share_pct"], v["cap_per_consumer"]["yuan"],
                      f"{v['valid_from'][:10]}..{v['valid_until'][:10]}", v["fund"]["yuan"], v["spent"]["yuan"])
    console.print(table)
