"""Schemathesis against the live API, over real HTTP, on SQLite and PostgreSQL.

Every operation in ``/openapi.json`` is fuzzed (schema-valid and schema-violating requests) with the
operator's token, two consumers' tokens and the local agent's, and every answer is checked:

- no 5xx, ever (``not_a_server_error``);
- the body matches the schema the route declares for its status (``response_schema_conformance``; every
  4xx is declared as ``ErrorOut``);
- no ignored authentication: schemathesis' ``ignored_auth`` repeats a 2xx request without a token and with
  a wrong one, and on top of it every operation is called once with no token and once with a made-up one
  and must answer 401;
- tenant isolation: the second consumer, given the first consumer's job and tenant ids, never gets a 2xx.

One test per identity, each with its share of a time budget (``SUANWANG_SCHEMATHESIS_S``, default 200 s
per database, all identities together; ``IDENTITIES`` gives the shares).  Every identity calls every
operation: at most ``IDENTITIES[identity][0]`` requests each, fewer (never under ``MIN_EXAMPLES``) where the
identity's budget would not otherwise reach its last operation, and the output says how many runs were cut.
Under CI (the ``CI`` variable) generation is derandomised, so a red run reproduces (the failing request is
printed as a curl command either way); elsewhere each run draws new examples.

The schema does not declare the API's bearer token as a security scheme; the test adds one to every
operation but ``PUBLIC`` before loading, so schemathesis sends our tokens (not fuzzed ones) and knows
which operations need one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance

from suanwang.api.permissions import TABLE
from tests.conftest import postgres_schema_url
from tests.e2e.conftest import LivePlatform, _stop, free_port

pytestmark = pytest.mark.e2e

# identity -> (requests per operation at most, share of the budget).  The operator reaches the most code, so
# gets the most; the agent and the second consumer end most runs at their first 403 (62 and 36 of 77
# operations), and the second consumer is there for isolation (a 2xx on the first consumer's ids), which its
# first requests already aim at.
IDENTITIES = {"operator": (25, 0.45), "agent": (15, 0.15), "consumer": (15, 0.25), "consumer_b": (8, 0.15)}
MIN_EXAMPLES = 2  # requests per operation and identity however little budget is left
BUDGET_S = float(os.environ.get("SUANWANG_SCHEMATHESIS_S", "200"))  # per database, all identities together
CHECKS = [not_a_server_error, response_schema_conformance, ignored_auth]
# the API's public routes, as the permission table declares them (health; enrol, whose one-use token is in
# the body; the market's public data: depth, prices and volumes, never who)
PUBLIC = {f"{method} {path}" for (method, path), rule in TABLE.items() if rule.public and path.startswith("/api/")}


def bearer_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """The served schema with every operation but the public ones needing a bearer token.

    An ``authorization`` header parameter, where a route still declares one, is dropped: schemathesis would
    fuzz it instead of sending our tokens.
    """
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            operation["parameters"] = [p for p in params
                                       if not (p["in"] == "header" and p["name"].lower() == "authorization")]
            if f"{method.upper()} {path}" not in PUBLIC:
                operation["security"] = [{"bearer": []}]
    raw.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return raw


def seed(live: LivePlatform) -> tuple[dict[str, str], dict[str, str]]:
    """Tokens per identity and real ids for path parameters, so fuzzing gets past "not found"."""
    operator = live.client(live.token("operator"))
    tokens = {"operator": live.token("operator"), "consumer": live.token("consumer"), "agent": live.token("agent")}
    tenant_b = operator.post("/tenants", json={"name": "consumer-b", "kind": "consumer"}).json()["id"]
    tokens["consumer_b"] = operator.post("/tokens", json={"role": "consumer", "tenant_id": tenant_b}).json()["token"]
    provider = operator.post("/tenants", json={"name": "provider-p", "kind": "provider"}).json()["id"]
    agent = live.client(tokens["agent"])
    pool = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}
    assert agent.post("/agent/register", json={"pools": [pool]}).status_code == 200
    consumer = live.client(tokens["consumer"])
    job = consumer.post("/jobs", json={"command": ["true"]})
    assert job.status_code == 201, job.text
    now = time.time()
    voucher = {"id": "starter", "share_pct": 50, "cap_per_consumer_fen": 700, "valid_from": now,
               "valid_until": now + 86_400}
    assert operator.post("/vouchers", json=voucher).status_code == 201
    settlement = operator.post("/settlements", json={"start": 0, "end": now - 60})
    assert settlement.status_code == 201, settlement.text
    known = {"job_id": job.json()["id"], "consumer": job.json()["tenant_id"], "provider": provider, "name": "local",
             "programme": "starter", "settlement_id": str(settlement.json()["id"])}
    for client in (operator, agent, consumer):
        client.close()
    return tokens, known


def strategy_for(operation: Any, known: dict[str, str]) -> st.SearchStrategy[Any]:
    """Valid and invalid requests, half of those with path parameters aimed at objects that exist."""
    strategies = [operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE)]
    names = [p.name for p in operation.path_parameters]
    if names and all(n in known for n in names):
        existing = {n: int(known[n]) if n == "settlement_id" else known[n] for n in names}
        strategies.append(operation.as_strategy(path_parameters=existing))
    return st.one_of(strategies)


def tame(case: Any) -> None:
    """Keep a fuzzed long-poll from waiting its full 30 s: the lease route's wait is not what is tested."""
    body = case.body
    if (case.operation.path.endswith("/agent/lease") and isinstance(body, dict)
            and isinstance(body.get("wait_s"), int | float) and not isinstance(body["wait_s"], bool)):
        body["wait_s"] = min(body["wait_s"], 0.05) if body["wait_s"] > 0 else body["wait_s"]


class Refused(Exception):
    """The identity's role may not call the operation (403): further examples would test nothing new."""


def fuzz(operation: Any, strategy: st.SearchStrategy[Any], *, url: str, token: str, examples: int,
         session: requests.Session, extra_check: Callable[[Any, Any], str | None]) -> None:
    auth = {"Authorization": f"Bearer {token}"}

    @settings(max_examples=examples, deadline=None, derandomize=bool(os.environ.get("CI")), database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(case=strategy)
    def run(case: Any) -> None:
        tame(case)
        response = case.call(base_url=url, session=session, headers=auth, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=auth, transport_kwargs={"base_url": url})
        problem = extra_check(case, response)
        assert problem is None, f"{problem}\n{case.as_curl_command(headers=auth, base_url=url)}"
        if response.status_code == 403:
            raise Refused

    run()


def refuses_without_token(client: httpx.Client, method: str, path: str, known: dict[str, str]) -> list[str]:
    """A request with no token and with a made-up one: each must be a 401 (body ``{}`` where one is taken)."""
    filled = path
    for name, value in known.items():
        filled = filled.replace("{" + name + "}", value)
    problems = []
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = client.request(method, filled, json={} if method in {"POST", "PUT"} else None, headers=headers)
        if r.status_code != 401:
            problems.append(f"{method} {path} with {headers or 'no token'}: {r.status_code} {r.text[:200]}")
    return problems


def served_operations(live: LivePlatform, token: str) -> list[Any]:
    """Every operation of the served schema (with the bearer scheme added), sorted by label."""
    served = httpx.get(live.url + "/openapi.json", headers={"Authorization": f"Bearer {token}"},
                       timeout=30)  # with a token, in case a gate in front of the app keeps the schema private
    assert served.status_code == 200, served.text
    schema = schemathesis.openapi.from_dict(bearer_schema(served.json()))
    return sorted((r.ok() for r in schema.get_all_operations()), key=lambda o: o.label)


def examples_for(max_examples: int, *, left_s: float, operations_left: int, run_s: float, per_example_s: float) -> int:
    """Requests for the next operation: as many as its even share of what is left of the budget pays for (a
    run costs ``run_s`` however few requests it makes, and ``per_example_s`` a request), within
    [``MIN_EXAMPLES``, ``max_examples``], so the identity's last operation is still reached."""
    share = left_s / max(1, operations_left) - run_s
    return max(MIN_EXAMPLES, min(max_examples, int(share / max(per_example_s, 1e-3))))


@dataclass
class Served:
    """One live platform per database, seeded once, that every identity's test fuzzes in turn (as one test
    did before they were split: the state one identity leaves is the next one's)."""

    live: LivePlatform
    tokens: dict[str, str]
    known: dict[str, str]
    operations: list[Any]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    urls = iter([f"sqlite:///{data_dir / 'suanwang.db'}"]) if request.param == "sqlite" else postgres_schema_url()
    env_backup = os.environ.pop("SUANWANG_DATABASE_URL", None)
    live = LivePlatform(url=f"http://127.0.0.1:{free_port()}", data_dir=data_dir, db_url=next(urls))
    try:
        live.start_server()
        tokens, known = seed(live)
        yield Served(live, tokens, known, served_operations(live, tokens["operator"]))
    finally:
        for proc in reversed(live.procs):
            _stop(proc)
        for _ in urls:  # a PostgreSQL schema is dropped when its generator ends
            pass
        if env_backup is not None:
            os.environ["SUANWANG_DATABASE_URL"] = env_backup


def test_every_operation_refuses_a_missing_or_made_up_token(served: Served) -> None:
    with httpx.Client(base_url=served.live.url, timeout=30) as anonymous:
        failures = [problem for op in served.operations if op.label not in PUBLIC
                    for problem in refuses_without_token(anonymous, op.method.upper(), op.path, served.known)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("who", IDENTITIES)
def test_schemathesis_finds_no_server_error_and_no_ignored_auth(served: Served, who: str) -> None:
    live, tokens, known, operations = served.live, served.tokens, served.known, served.operations
    others = {known["job_id"], known["consumer"]}  # consumer A's; consumer B must never reach them

    def isolation(case: Any, response: Any) -> str | None:
        aimed = set(map(str, (case.path_parameters or {}).values())) & others
        if who == "consumer_b" and aimed and response.status_code < 300:
            return f"consumer B reached consumer A's {sorted(aimed)}: {response.status_code}"
        return None

    max_examples, share = IDENTITIES[who]
    budget_s = BUDGET_S * share
    session = requests.Session()  # one keep-alive connection, not one per request
    started = time.monotonic()
    spent: dict[str, float] = {}
    failures: list[str] = []
    refused, cut = 0, 0
    # what a run costs beside its requests (a run that ends at its first request, a 403, is nearly all that),
    # and what a request costs (from runs that made all theirs); guesses until the first runs say
    run_s, runs_at_403_s, full_s, full_runs, requested = 0.05, 0.0, 0.0, 0, 0
    for i, operation in enumerate(operations):
        per_example_s = max(0.0, full_s - run_s * full_runs) / requested if requested else 0.2
        examples = examples_for(max_examples, left_s=started + budget_s - time.monotonic(),
                                operations_left=len(operations) - i, run_s=run_s, per_example_s=per_example_s)
        cut += examples < max_examples
        began = time.monotonic()
        try:
            fuzz(operation, strategy_for(operation, known), url=live.url, token=tokens[who], examples=examples,
                 session=session, extra_check=isolation)
            requested += examples
            full_s += time.monotonic() - began
            full_runs += 1
        except Refused:
            refused += 1
            runs_at_403_s += time.monotonic() - began
            run_s = runs_at_403_s / refused
        except (Exception, BaseExceptionGroup) as exc:  # one failure must not hide the next (and
            # schemathesis' FailureGroup is a BaseExceptionGroup)
            failures.append(f"{operation.label} as {who}: {exc}"[:3000])
        spent[operation.label] = time.monotonic() - began
    slowest = ", ".join(f"{label} {s:.1f} s" for label, s in sorted(spent.items(), key=lambda i: -i[1])[:5])
    print(f"schemathesis as {who}: {time.monotonic() - started:.0f} s of {budget_s:.0f} s for all "
          f"{len(operations)} operations, {refused} ended at a 403, {cut} with fewer than {max_examples} "
          f"requests to stay within the budget; slowest: {slowest}")
    assert len(spent) == len(operations)
    assert not failures, "\n\n".join(failures)
