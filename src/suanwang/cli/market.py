"""Market commands: suanwang market sessions|ask|bid|book|result|contracts|withdraw (all with --json).

Each uses the token given by ``--token``/SUANWANG_TOKEN, else the data directory's consumer token (an ask
needs a provider's or the operator's).  See docs/market.md for the rules.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from suanwang.cli.client import Client, console, print_json
from suanwang.cli.jobs import Json, Token, Url

market = typer.Typer(help="The compute market: asks, bids, sessions, results, contracts.", no_args_is_help=True)
Window = Annotated[tuple[int, int], typer.Option("--slots", help="START END: slots of the session, end exclusive")]
SessionOpt = Annotated[str, typer.Option("--session", help="session id, e.g. da-2026-12-08 (see: market sessions)")]
ClassOpt = Annotated[str, typer.Option("--class", help="resource class: general, intelligent, super, quantum")]


def register(app: typer.Typer) -> None:
    app.add_typer(market, name="market")


def _show(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


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
    order = Client(url, token).call("POST", "/market/asks", json=body)
    print_json(order) if json else console.print(f"ask {order['id']} posted to {order['session']}")


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
    order = Client(url, token).call("POST", "/market/bids", json=body)
    print_json(order) if json else console.print(f"bid {order['id']} posted to {order['session']}")


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
        _show(data["prices"], ["site", "resource_class", "slot", "price_cf", "volume"], "prices (0.01 fen)")


@market.command()
def result(session: Annotated[str, typer.Argument(help="session id")], url: Url = None, token: Token = None,
           json: Json = False) -> None:
    """A cleared session: prices, volumes, and your own fills and payments."""
    data = Client(url, token).call("GET", f"/market/sessions/{session}/result")
    if json:
        print_json(data)
        return
    console.print(f"{data['session']}: {data['status']}")
    _show(data["prices"], ["site", "resource_class", "slot", "price_cf", "volume"], "prices (0.01 fen per unit-slot)")
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
