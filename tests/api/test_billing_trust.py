"""Prices that cannot be weaponised, on SQLite and PostgreSQL: bounded numbers, one series of price books per
owner, holds a provider's price cannot inflate, and vouchers that do not show other consumers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Grid
from tests.api.test_billing_api import API, BOOK, JOB, priced, top_up

CPU = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}


def a_provider(grid: Grid, site: str = "qingyang") -> tuple[TestClient, str]:
    """A provider tenant owning ``site`` (region "west"), with an agent that registered a CPU pool there
    (its token in ``grid.provider_agent``)."""
    op = grid.operator
    tenant = op.post(f"{API}/tenants", json={"name": f"{site}-dc", "kind": "provider"}).json()["id"]
    provider = grid.as_(op.post(f"{API}/tokens", json={"role": "provider", "tenant_id": tenant}).json()["token"])
    assert provider.post(f"{API}/sites", json={"name": site, "region": "west"}).status_code == 201
    agent = op.post(f"{API}/tokens", json={"role": "agent", "tenant_id": tenant, "site": site}).json()["token"]
    assert grid.as_(agent).post(f"{API}/agent/register", json={"pools": [CPU]}).status_code == 200
    grid.provider_agent = agent  # type: ignore[attr-defined]
    return provider, tenant


def books(grid: Grid) -> list[tuple[str, int]]:
    return [(b["owner"], b["version"]) for b in grid.consumer.get(f"{API}/price-books").json()]


# ---- 1. every number is bounded before any arithmetic ----------------------------------------------------

ENTRY = {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "core_hour",
         "unit_price_fen": 1000}
FAR = "2999-01-01T00:00:00+00:00"


def raw(body: str) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": "application/json"}}


BAD_BOOKS = [  # (JSON text, words the 422 must say)
    ('{"entries": [{"unit_price_fen": 1, "tou": {"province": "Gansu", "multipliers": {"valley": 1e999999}}}]}',
     "tou multiplier for valley"),
    ('{"entries": [{"unit_price_fen": 1, "tou": {"province": "Gansu", "multipliers": {"peak": "1e-999999"}}}]}',
     "tou multiplier for peak"),
    ('{"entries": [{"unit_price_fen": 1, "tou": {"province": "Gansu", "multipliers": {"peak": "NaN"}}}]}',
     "tou multiplier for peak"),
    ('{"entries": [{"unit_price_fen": 1, "tou": {"bands": {"flat": [[0, 1e999999]]}}}]}', "hours must be integers"),
    ('{"entries": [{"unit_price_fen": 1e999999}]}', "unit price"),
    ('{"entries": [{"unit_price_fen": 1000000000000001}]}', "unit price"),
    ('{"entries": [{"unit_price_fen": 1, "green_discount_pct": 1e-999999}]}', "green discount percent"),
    ('{"entries": [{"unit_price_fen": 1}], "version": 9223372036854775807}', "version must lie within"),
    ('{"entries": [{"unit_price_fen": 1}], "version": 1180591620717411303424}', "version must lie within"),
    ('{"entries": [{"unit_price_fen": 1}], "version": 1e999999}', "version must be an integer"),
    ('{"entries": [{"unit_price_fen": 1}], "version": "two"}', "version must be an integer"),
    ('{"entries": [{"unit_price_fen": 1}], "effective_from": 1e17}', "effective_from"),
    ('{"entries": [{"unit_price_fen": 1}], "effective_from": 1e999999}', "effective_from"),
    (f'{{"entries": [{{"unit_price_fen": 1}}], "effective_from": "{FAR}"}}', "effective_from"),
    ('{"entries": [{"unit_price_fen": 1}], "effective_from": "NaN"}', "effective_from"),
    ('{"entries": [{"unit_price_fen": 1}], "effective_from": "abc"}', "effective_from"),
    ('{"entries": [{"unit_price_fen": 1}], "effective_from": "9999-12-31T23:59:59+00:00"}', "effective_from"),
    ('{"entries": [{"unit_price_fen": 1}], "effective_from": -1}', "effective_from"),
]


@pytest.mark.timeout(60)
def test_absurd_numbers_in_a_price_book_are_a_422_naming_the_field_and_write_nothing(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10**9)
    for body, words in BAD_BOOKS:
        t0 = time.perf_counter()
        r = grid.operator.post(f"{API}/price-books", **raw(body))
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
        assert time.perf_counter() - t0 < 2, body  # refused without building a million-digit number
    assert books(grid) == [("operator", 1)]
    grid.tick()  # a scheduling pass prices with what was accepted
    assert grid.client.get(f"{API}/health").status_code == 200
    assert grid.consumer.post(f"{API}/jobs", json=JOB).status_code == 201


BAD_VOUCHERS = [
    ({"share_pct": "1e999999"}, "share_pct"),
    ({"share_pct": "1e-999999"}, "share_pct"),
    ({"share_pct": "NaN"}, "share_pct"),
    ({"cap_per_consumer_fen": "1e999999"}, "voucher cap"),
    ({"cap_per_consumer_fen": 10**16}, "voucher cap"),
    ({"fund_fen": "1e999999"}, "fund_fen"),
    ({"fund_fen": -5}, "fund_fen"),
    ({"valid_until": 1e17}, "valid_until"),
    ({"valid_until": FAR}, "valid_until"),
    ({"valid_until": "NaN"}, "valid_until"),
    ({"valid_from": "abc"}, "valid_from"),
    ({"valid_from": 2.0, "valid_until": 1.0}, "valid_until must be after valid_from"),
]


def test_absurd_numbers_in_a_voucher_programme_are_a_422_naming_the_field(grid: Grid) -> None:
    now = time.time()
    good = {"id": "sme", "share_pct": 50, "cap_per_consumer_fen": 1000, "valid_from": now,
            "valid_until": now + 86_400}
    for change, words in BAD_VOUCHERS:
        r = grid.operator.post(f"{API}/vouchers", json=good | change)
        assert r.status_code == 422 and words in r.json()["detail"], (change, r.text)
    assert grid.operator.get(f"{API}/vouchers").json() == []
    assert grid.operator.post(f"{API}/vouchers", json=good | {"fund_fen": 5000}).status_code == 201


# ---- 2. one series per owner: nobody's book blocks or shadows another's ----------------------------------


def test_a_provider_cannot_lock_price_book_publishing_for_others(grid: Grid) -> None:
    grid.register()
    provider, tenant = a_provider(grid)
    own = [{"site": "qingyang", "unit_price_fen": 5}]
    for attack in ({"version": 2**63 - 1}, {"version": 2**70}, {"effective_from": FAR}):
        r = provider.post(f"{API}/price-books", json={"entries": own} | attack)
        assert r.status_code == 422, r.text
    # the most a provider may do: the top of its own series, a long way ahead
    ahead = time.time() + 700 * 86_400
    assert provider.post(f"{API}/price-books", json={"entries": own, "version": 2**31 - 1,
                                                     "effective_from": ahead}).status_code == 201
    assert grid.operator.post(f"{API}/price-books", json=BOOK).status_code == 201  # the operator's v1: unaffected
    assert grid.operator.post(f"{API}/price-books", json=BOOK).status_code == 201
    assert provider.post(f"{API}/price-books", json={"entries": own}).status_code == 422  # only its own is locked
    assert books(grid) == [("operator", 1), ("operator", 2), (tenant, 2**31 - 1)]


def test_the_pools_providers_book_prices_its_sites_then_the_operators_prices_the_rest(grid: Grid) -> None:
    consumer = priced(grid)  # the operator: 1000 fen per core-hour everywhere
    provider, tenant = a_provider(grid)
    assert provider.post(f"{API}/price-books", json={"entries": [ENTRY | {"site": "qingyang",
                                                                          "unit_price_fen": 600}]}).status_code == 201
    assert grid.operator.post(f"{API}/price-books", json=BOOK).status_code == 201  # a later operator book...
    quotes = {(q["site"], q["book_owner"], q["book_version"]): q["total"]["fen"]
              for q in grid.consumer.post(f"{API}/quotes", json=JOB).json()["pools"]}
    assert quotes == {("qingyang", tenant, 1): 1200, ("local", "operator", 2): 2000}  # ...shadows no provider
    top_up(grid, consumer, 10_000)
    # usage at the provider's site is rated with the provider's book (v1 of its series)
    job = grid.consumer.post(f"{API}/jobs", json=JOB | {"region": "west"}).json()
    assert job["spec"]["max_price_fen"] == 2000  # the operator's list price: the provider's is within it
    grid.tick()
    agent = grid.as_(grid.provider_agent)  # type: ignore[attr-defined]
    [task] = agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    start = time.time()  # after the books took effect; half an hour (API tests allow a day of clock skew)
    usage = {"job_id": job["id"], "attempt": task["attempt"], "seq": 0, "pool": "cpu", "start": start,
             "end": start + 1800, "wall_s": 3600 / 2, "cpu_s": 1.0, "peak_memory_bytes": 1}  # 1 core-hour
    assert agent.post(f"{API}/agent/usage", json={"records": [usage]}).json()["new"] == 1
    grid.tick()
    [charge] = [t for t in grid.operator.get(f"{API}/ledger/transfers", params={"job_id": job["id"]}).json()
                if t["kind"] == "charge"]
    assert (charge["provider"], charge["price_book_version"]) == (tenant, "1"), charge
    assert "hold:" in charge["postings"] and " -600" in charge["postings"], charge  # 1 core-hour at 600, from the hold
    assert grid.consumer.get(f"{API}/wallets/{consumer}").json()["held"]["fen"] == 2000 - 600


# ---- 3. a provider's price cannot inflate a hold -----------------------------------------------------------


def test_a_provider_pricing_its_site_at_10_15_fen_blocks_no_submit(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 5_000)  # enough for the operator's list price (2000), nowhere near 10^15
    provider, _ = a_provider(grid)
    dear = ENTRY | {"site": "qingyang", "unit_price_fen": 10**15}
    assert provider.post(f"{API}/price-books", json={"entries": [dear]}).status_code == 201
    quote = grid.consumer.post(f"{API}/quotes", json=JOB).json()
    assert quote["hold"]["fen"] == 2000
    r = grid.consumer.post(f"{API}/jobs", json=JOB)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["spec"]["max_price_fen"] == 2000  # the hold's bound is the job's price limit
    held = grid.consumer.get(f"{API}/wallets/{consumer}").json()["held"]["fen"]
    assert held == 2000
    for _ in range(3):
        grid.tick()
    placed = grid.consumer.get(f"{API}/jobs/{job['id']}").json()
    assert (placed["state"], placed["site"]) == ("placed", "local")


def test_a_job_never_runs_where_its_price_exceeds_its_limit(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 100_000)
    grid.register([CPU | {"cores": 2}])  # room for one JOB at the operator's site: the blocker takes it
    blocker = grid.consumer.post(f"{API}/jobs", json=JOB).json()
    grid.tick()
    assert grid.consumer.get(f"{API}/jobs/{blocker['id']}").json()["site"] == "local"
    provider, _ = a_provider(grid)
    cheap = ENTRY | {"site": "qingyang", "unit_price_fen": 1}
    assert provider.post(f"{API}/price-books", json={"entries": [cheap]}).status_code == 201
    job = grid.consumer.post(f"{API}/jobs", json=JOB | {"max_price_fen": 3000}).json()
    assert job["spec"]["max_price_fen"] == 3000
    # the provider raises its price after the submit, before any pass: the job must not go there
    dear = ENTRY | {"site": "qingyang", "unit_price_fen": 10**9}
    assert provider.post(f"{API}/price-books", json={"entries": [dear]}).status_code == 201
    for _ in range(3):
        grid.tick()
    waiting = grid.consumer.get(f"{API}/jobs/{job['id']}").json()
    assert waiting["state"] == "pending" and waiting["site"] is None, waiting
    explained = grid.consumer.get(f"{API}/jobs/{job['id']}/explain").json()
    assert "qingyang/cpu" in explained["ruled_out"], explained
    # a consumer that accepts the price says so with max_price_fen, and is held for it
    r = grid.consumer.post(f"{API}/jobs", json=JOB | {"max_price_fen": 10**9 * 2})
    assert r.status_code == 402, r.text  # the consumer's own bound is what it risks


def test_a_max_price_below_every_quote_is_refused_at_submit(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    r = grid.consumer.post(f"{API}/jobs", json=JOB | {"max_price_fen": 1999})
    assert r.status_code == 422 and "within max_price_fen 1999" in r.json()["detail"], r.text
    assert grid.consumer.get(f"{API}/wallets/{consumer}").json()["held"]["fen"] == 0


# ---- 4. vouchers do not show other consumers --------------------------------------------------------------


def test_a_consumer_sees_only_the_programmes_open_to_it_and_no_other_consumer(grid: Grid) -> None:
    consumer = priced(grid)
    other = grid.new_consumer("other")
    other_id = other.get(f"{API}/whoami").json()["tenant_id"]
    now = time.time()
    window = {"share_pct": 10, "cap_per_consumer_fen": 100, "valid_from": now, "valid_until": now + 86_400}
    for pid, consumers in (("open", None), ("both", [consumer, other_id]), ("theirs", [other_id])):
        body = window | {"id": pid} | ({"consumers": consumers} if consumers else {})
        assert grid.operator.post(f"{API}/vouchers", json=body).status_code == 201
    mine = {p["id"]: p["consumers"] for p in grid.consumer.get(f"{API}/vouchers").json()}
    assert mine == {"open": None, "both": [consumer]}
    everything = {p["id"]: p["consumers"] for p in grid.operator.get(f"{API}/vouchers").json()}
    assert everything == {"open": None, "both": sorted([consumer, other_id]), "theirs": [other_id]}


def test_a_book_stored_before_the_bounds_existed_cannot_freeze_the_platform(grid: Grid) -> None:
    """A multiplier of 1e999999 accepted by an older version is ignored (and logged), not computed with."""
    from suanwang.store.ledger_tables import PriceBookRow

    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    poisoned = {"version": 2, "effective_from": time.time() - 1,
                "entries": [{"unit_price_fen": "1", "tou": {"province": "Gansu", "multipliers": {"peak": "1e999999"}}}]}
    with grid.platform.db.transaction() as s:
        s.add(PriceBookRow(owner="", version=2, effective_us=int(time.time() * 1e6), created_at=time.time(),
                           created_by="old", body=poisoned))
    grid.tick()
    assert grid.client.get(f"{API}/health").status_code == 200
    assert books(grid) == [("operator", 1)]
    assert grid.consumer.post(f"{API}/jobs", json=JOB).status_code == 201


def test_an_unpriced_job_is_refused_under_the_operators_book_but_free_under_a_providers(grid: Grid) -> None:
    grid.register()
    provider, _ = a_provider(grid)
    gpu_only = ENTRY | {"site": "qingyang", "resource_class": "intelligent", "unit": "card_hour"}
    assert provider.post(f"{API}/price-books", json={"entries": [gpu_only]}).status_code == 201
    r = grid.consumer.post(f"{API}/jobs", json=JOB)  # a provider's book alone blocks no one's CPU job
    assert r.status_code == 201 and r.json()["spec"]["max_price_fen"] is None, r.text
    gpu_book = {"entries": [ENTRY | {"resource_class": "intelligent", "unit": "card_hour"}]}
    assert grid.operator.post(f"{API}/price-books", json=gpu_book).status_code == 201
    r = grid.consumer.post(f"{API}/jobs", json=JOB)  # the operator's book prices no CPU pool: ask the operator
    assert r.status_code == 422 and "ask the operator" in r.json()["detail"], r.text


def test_a_voucher_used_up_meanwhile_does_not_strand_a_queued_job(grid: Grid) -> None:
    """The price limit is gross (before vouchers): the voucher's state may change while a job waits."""
    consumer = priced(grid)
    top_up(grid, consumer, 100_000)
    now = time.time()
    assert grid.operator.post(f"{API}/vouchers", json={
        "id": "sme", "share_pct": 50, "cap_per_consumer_fen": 1000, "valid_from": now - 60,
        "valid_until": now + 86_400, "fund_fen": 100_000}).status_code == 201
    grid.register([CPU | {"cores": 2}])  # room for one JOB at a time
    first, second = (grid.consumer.post(f"{API}/jobs", json=JOB).json() for _ in range(2))
    assert second["spec"]["max_price_fen"] == 2000  # gross; the hold is what the voucher leaves: 1000
    assert grid.consumer.get(f"{API}/wallets/{consumer}").json()["held"]["fen"] == 2000
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    start = time.time()
    usage = {"job_id": first["id"], "attempt": task["attempt"], "seq": 0, "pool": "cpu", "start": start,
             "end": start + 1800, "wall_s": 3600 / 2, "cpu_s": 1.0, "peak_memory_bytes": 1}
    assert grid.agent.post(f"{API}/agent/usage", json={"records": [usage]}).json()["new"] == 1
    grid.tick()  # 1000 fen: the voucher pays 500 of its 1000 cap
    grid.agent.post(f"{API}/agent/jobs/{first['id']}/status", json={"attempt": task["attempt"],
                                                                     "phase": "succeeded", "exit_code": 0})
    grid.tick()
    assert grid.consumer.get(f"{API}/jobs/{second['id']}").json()["state"] == "placed"
