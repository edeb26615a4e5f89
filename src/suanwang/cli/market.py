"""Market commands: suanwang market sessions|ask|bid|book|result|contracts|withdraw (all with --json).

Each uses the token given by ``--token``/SUANWANG_TOKEN, else the data directory's consumer token (an ask
needs a provider's or the operator's).  See docs/market.md for the rules.

Tables print money in yuan (prices per unit-slot to 0.0001 yuan, the 0.01-fen tick) and times in UTC;
``--json`` prints the API's answer unchanged: exact integers, ``*_fen`` in fen and ``*_cf`` in centi-fen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from suanwang.cli.client import Client, console, print_json
from suanwang.cli.jobs import Json, Token, Url
from suanwang.domain.money import format_yuan

market = typer.Typer(help="The compute market: asks, bids, sessions, results, contracts.", no_args_is_help=True)
Window = Annotated[tuple[int, int], typer.Option("--slots", help="START END: slots of the session, end exclusive")]
SessionOpt = Annotated[str, typer.Option("--session", help="session id, e.g. da-2026-12-08 (see: market sessions)")]
ClassOpt = Annotated[str, typer.Option("--class", help="resource class: general, intelligent, super, quantum")]


def register(app: typer.Typer) -> None:
    app.add_typer(market, name="market")


def yuan_cf(cf: int) -> str:
    """Centi-fen as yuan to the price tick: ``12_345`` (123.45 fen) -> ``"1.2345"``."""
    fen, tick = divmod(abs(cf), 100)
    return f"{'-' if cf < 0 else ''}{format_yuan(fen)}{tick:02d}"


def _cell(column: str, value: Any) -> str:
    """A table cell: ``*_fen`` and ``*_cf`` amounts in yuan, ``*_at``/``slot_*`` instants in UTC."""
    if isinstance(value, int) and not isinstance(value, bool):
        if column.endswith("_fen"):
            return format_yuan(value)
        if column.endswith("_cf"):
            return yuan_cf(value)
    if isinstance(value, int | float) and (column.endswith("_at") or column in ("slot_start", "slot_end")):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def _header(column: str) -> str:
    for suffix, unit in (("_fen", " (yuan)"), ("_cf", " (yuan)")):
        if column.endswith(suffix):
            return column.removesuffix(suffix) + unit
    return column


def _show(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(*(_header(c) for c in columns), title=title)
    for row in rows:
        table.add_row(*(_cell(c, row.get(c, "")) for c in columns))
    console.print(table)


def _post(side: str, body: dict[str, Any], price_field: str, url: str | None, token: str | None, json: bool) -> None:
    """Post an ask or a bid and say what was posted (the two commands differ only in their fields)."""
    order = Client(url, token).call("POST", f"/market/{side}s", json=body)
    if json:
        print_json(order)
        return
    console.print(f"{side} {order['id']} posted to {order['session']}: slots {order['start_slot']}.."
                  f"{order['end_slot']}, {format_yuan(order[price_field])} yuan per unit-slot")


@market.command()
def sessions(url: Url = None, token: Token = None, json: Json = False) -> None:
    """Sessions taking orders now (day-ahead and intraday) with their gates."""
    rows = Client(url, token).call("GET", "/market/sessions")
    if json:
        print_json(rows)
        return
    _show(rows, ["id", "kind", "gate_at", "first_slot_at", "slot_s", "slots"], "open sessions")


@market.command()
def ask(session: SessionOpt, site: Annotated[str, typer.Option(help="your site")], slots: Window,
        units: Annotated[int, typer.Option(help="units per slot")], floor_fen: Annotated[int, typer.Option()],
        resource_class: ClassOpt = "intelligent", url: Url = None, token: Token = None, json: Json = False) -> None:
    """Offer capacity: suanwang market ask --session da-2026-12-08 --site qingyang --slots 0 8 --units 64 ..."""
    body = {"session": session, "site": site, "resource_class": resource_class, "start_slot": slots[0],
            "end_slot": slots[1], "units_per_slot": units, "floor_fen": floor_fen}
    _post("ask", body, "floor_fen", url, token, json)


@market.command()
def bid(session: SessionOpt, sites: Annotated[list[str], typer.Option("--site", help="acceptable site (repeat)")],
        slots: Window, quantity: Annotated[int, typer.Option(help="unit-slots in all")],
        rate: Annotated[int, typer.Option(help="at most this many units in one slot")],
        limit_fen: Annotated[int, typer.Option(help="most you pay per unit-slot, fen")],
        resource_class: ClassOpt = "intelligent",
        all_or_nothing: Annotated[bool, typer.Option("--all-or-nothing", help="a gang: rate units at one site "
                                                      "in every slot, or nothing")] = False,
        url: Url = None, token: Token = None, json: Json = False) -> None:
    """Ask for capacity; holds limit x quantity until the clear."""
    body = {"session": session, "sites": sites, "resource_class": resource_class, "start_slot": slots[0],
            "end_slot": slots[1], "quantity": quantity, "rate_per_slot": rate, "limit_fen": limit_fen,
            "all_or_nothing": all_or_nothing}
    _post("bid", body, "limit_fen", url, token, json)


@market.command()
def withdraw(order_id: str, url: Url = None, token: Token = None, json: Json = False) -> None:
    """Withdraw one of your orders before the gate (a bid's hold comes back)."""
    order = Client(url, token).call("DELETE", f"/market/orders/{order_id}")
    print_json(order) if json else console.print(f"{order['id']}: {order['state']}")


@market.command()
def book(session: Annotated[str, typer.Argument(help="session id")], url: Url = None, token: Token = None,
         json: Json = False) -> None:
    """Public depth of a session (what is offered and wanted; never who) and its prices once cleared."""
    data = Client(url, token).call("GET", f"/market/data/{session}")
    if json:
        print_json(data)
        return
    _show(data["offered"], ["site", "resource_class", "slot", "units"], f"{session}: offered")
    _show(data["wanted"], ["resource_class", "slot", "units"], f"{session}: wanted")
    if data["cleared"]:
        _show(data["prices"], ["site", "resource_class", "slot", "price_cf", "volume"], "prices per unit-slot")


@market.command()
def result(session: Annotated[str, typer.Argument(help="session id")], url: Url = None, token: Token = None,
           json: Json = False) -> None:
    """A cleared session: prices, volumes, and your own fills and payments."""
    data = Client(url, token).call("GET", f"/market/sessions/{session}/result")
    if json:
        print_json(data)
        return
    console.print(f"{data['session']}: {data['status']}")
    _show(data["prices"], ["site", "resource_class", "slot", "price_cf", "volume"], "prices per unit-slot")
    _show(data.get("bids", []), ["bid_id", "filled", "pays_fen", "congestion_fen", "make_whole_fen"], "your bids")
    _show(data.get("asks", []), ["ask_id", "sold", "earns_fen"], "your asks")


@market.command()
def contracts(url: Url = None, token: Token = None, json: Json = False) -> None:
    """Contract lines you bought or sold: capacity reserved at (site, class, slot)."""
    rows = Client(url, token).call("GET", "/market/contracts")
    if json:
        print_json(rows)
        return
    _show(rows, ["id", "site", "resource_class", "slot_start", "units", "buyer_price_cf", "seller_price_cf"],
          "contracts")
