"""Who may call what: the one table that decides a route's roles.

Every (method, path template) the application serves has one entry here:
either public, or the roles that may call it and a note of the object-level
scoping the services apply on top (another tenant's object answers 404).
``suanwang.api.guard`` enforces it before a request body is read; a route
without an entry is refused (fail closed), and tests/api/test_permissions.py
asserts that every route has one.  ``suanwang admin permissions --markdown``
renders it into docs/permissions.md.

To add a route: add ``(METHOD, "/api/v1/...")`` to ``TABLE`` with
``allow(ROLES, "scope note")`` (or ``PUBLIC``), then re-render the doc.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.services.auth import Role

API = "/api/v1"

# One letter per role keeps TABLE one rule a line; O is the operator, never the digit.
O, P, C, A, G = Role.OPERATOR, Role.PROVIDER, Role.CONSUMER, Role.AUDITOR, Role.AGENT  # noqa: E741  (see above)
ROLE_ORDER = (O, P, C, A, G)


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    scope: str = ""
    public: bool = False
    metered: bool = True  # counts against the caller's rate limit
    session: bool = False  # a console route: the gate lets it through, the web layer checks cookie and roles

    def allows(self, role: Role) -> bool:
        return self.public or role in self.roles


def allow(roles: tuple[Role, ...], scope: str = "", *, metered: bool = True) -> Rule:
    return Rule(roles=frozenset(roles), scope=scope, metered=metered)


def console(roles: tuple[Role, ...], scope: str = "") -> Rule:
    """A console page or form: signed in by session cookie (suanwang.web.routes.signed_in checks ``roles``)."""
    return Rule(roles=frozenset(roles), scope=scope, public=True, session=True)


def public(why: str) -> Rule:
    return Rule(roles=frozenset(), scope=why, public=True)


OWN_TENANT = "consumer: own tenant only; auditor: read-only, all tenants"
JOB = "consumer: own tenant's jobs (another's id → 404); operator and auditor: all"
GRID = "the public shape of the grid: sites, pools, links (no tenant data)"
OWN_SITE = "agent: its own site only (another site's job → 404)"
DATA = "consumer: own datasets and those shared with it (another's id → 404); operator and auditor: all"
DATA_NEW = "the dataset belongs to the caller's tenant; replica sites must be in its region"
REPLICAS = "agent: replicas at its own site; sha256 must match the registered one"
RUN = "consumer: own tenant's workflow runs (another's id → 404); operator and auditor: all"
EVERYONE = (O, P, C, A)
READERS = (O, A)

# (method, path template) -> rule.  HEAD is checked as GET.
TABLE: dict[tuple[str, str], Rule] = {
    # meta, docs and the overview page
    ("GET", "/map.geojson"): public("the operator's approved map background (a file it chose), 404 when none"),
    ("GET", "/market"): public("the market board: depth, clearing prices and volumes, price books (never who)"),
    ("GET", "/"): public("the public grid map: sites, links, capacity, prices in force, job counts (no jobs)"),
    # the console (session cookie; POSTs need the session's CSRF token)
    ("GET", "/signin"): public("the sign-in form"),
    ("POST", "/signin"): public("a pasted token becomes an HttpOnly session cookie (double-submit CSRF)"),
    ("POST", "/signout"): public("ends the browser's session (CSRF token of the session)"),
    ("GET", "/lang/{code}"): public("the language switch: a cookie, then back to a local path"),
    ("GET", "/console"): public("redirects to the signed-in role's home, else to sign-in"),
    ("GET", "/console/wallet"): console((C,), "consumer: own tenant's wallet, vouchers and jobs"),
    ("GET", "/console/jobs"): console((C, O, A), JOB),
    ("GET", "/console/jobs/{job_id}"): console((C, O, A), JOB),
    ("GET", "/console/jobs/{job_id}/explain"): console((C, O, A), JOB),
    ("POST", "/console/jobs"): console((C,), "the job belongs to the caller's tenant"),
    ("POST", "/console/jobs/{job_id}/cancel"): console((C, O), JOB),
    ("POST", "/console/quote"): console((C,), "priced for the caller's tenant"),
    ("GET", "/console/provider"): console((P, O), "provider: its sites and earnings"),
    ("GET", "/console/statements"): console((C, P), "own tenant's statements only"),
    ("GET", "/console/statements/{settlement_id}"): console((C, P), "own statement; another's answers 404"),
    ("GET", "/console/statements/{settlement_id}/csv"): console((C, P), "own statement lines only; else 404"),
    ("POST", "/console/price-books"): console((P, O), "provider: prices only its own sites"),
    ("GET", "/console/operator"): console((O,)),
    ("GET", "/console/auditor"): console((A, O), "read-only: transfers and the audit log"),
    ("GET", "/metrics"): public("Prometheus scrape: counters and gauges, no tenant data"),
    ("GET", f"{API}/health"): public("liveness: the control loop and the database, no tenant data"),
    # the audit trail
    ("GET", f"{API}/audit"): allow((O, A), "every tenant's actions: operator and auditor only"),
    ("GET", f"{API}/audit/verify"): allow((O, A), "read-only check of the audit and ledger hash chains"),
    ("GET", "/openapi.json"): public("the API schema"),
    ("GET", "/docs"): public("the API schema"),
    ("GET", "/docs/oauth2-redirect"): public("the API schema"),
    ("GET", "/redoc"): public("the API schema"),
    # jobs
    ("POST", f"{API}/jobs"): allow((C, O), "the job belongs to the caller's tenant"),
    ("POST", f"{API}/jobs/batch"): allow((C, O), "the jobs belong to the caller's tenant"),
    ("GET", f"{API}/jobs"): allow((C, O, A), JOB),
    ("GET", f"{API}/jobs/{{job_id}}"): allow((C, O, A), JOB),
    ("POST", f"{API}/jobs/{{job_id}}/cancel"): allow((C, O), JOB),
    ("GET", f"{API}/jobs/{{job_id}}/explain"): allow((C, O, A), JOB),
    ("GET", f"{API}/jobs/{{job_id}}/events"): allow((C, O, A), JOB),
    ("GET", f"{API}/jobs/{{job_id}}/logs"): allow((C, O, A), JOB),
    ("GET", f"{API}/jobs/{{job_id}}/usage"): allow((C, O, A), JOB),
    ("GET", f"{API}/usage"): allow((C, O, A), "consumer: own tenant's usage; operator and auditor: all"),
    # the grid
    ("GET", f"{API}/sites"): allow(EVERYONE, GRID),
    ("POST", f"{API}/sites"): allow((O, P), "provider: the site is its own (owner ignored); operator names any owner"),
    ("GET", f"{API}/sites/{{name}}"): allow(EVERYONE, GRID),
    ("POST", f"{API}/sites/{{name}}/enrolments"): allow((O, P), "provider: own sites only (another's → 404)"),
    ("GET", f"{API}/links"): allow(EVERYONE, GRID),
    ("POST", f"{API}/links"): allow((O,)),
    ("GET", f"{API}/pools"): allow(EVERYONE, GRID),
    ("GET", f"{API}/capacity"): allow(EVERYONE, GRID),
    # tenants and tokens
    ("POST", f"{API}/tenants"): allow((O,)),
    ("POST", f"{API}/tokens"): allow((O,), "lifetime_s bounded to 10 years"),
    ("GET", f"{API}/tokens"): allow(READERS, "never the hash or plaintext"),
    ("POST", f"{API}/tokens/{{token_id}}/revoke"): allow((O,), "effective on every replica within 1 s"),
    ("POST", f"{API}/tokens/{{token_id}}/rotate"): allow((O,), "same role, tenant and site; the old token revoked"),
    ("GET", f"{API}/whoami"): allow((O, P, C, A, G), "the caller's own token"),
    # the agent protocol
    ("POST", f"{API}/agent/enrol"): public("authenticated by a one-use enrolment token in the body"),
    ("POST", f"{API}/agent/register"): allow((G,), "agent: registers its own site's pools"),
    ("POST", f"{API}/agent/heartbeat"): allow((G,), OWN_SITE + "; not rate-limited", metered=False),
    ("POST", f"{API}/agent/lease"): allow((G,), "agent: its own site's placed jobs; not rate-limited", metered=False),
    ("POST", f"{API}/agent/jobs/{{job_id}}/status"): allow((G,), OWN_SITE),
    ("POST", f"{API}/agent/usage"): allow((G,), OWN_SITE),
    ("POST", f"{API}/agent/logs"): allow((G,), OWN_SITE),
    # datasets and workflows (flows)
    ("POST", f"{API}/datasets"): allow((C, O), DATA_NEW),
    ("GET", f"{API}/datasets"): allow((C, O, A), DATA),
    ("GET", f"{API}/datasets/{{dataset_id}}"): allow((C, O, A), DATA),
    ("POST", f"{API}/datasets/{{dataset_id}}/shares"): allow((C, O), "consumer: own datasets only (another's → 404)"),
    ("POST", f"{API}/agent/replicas"): allow((G,), REPLICAS),
    ("POST", f"{API}/agent/replicas/{{dataset_id}}/deleted"): allow(
        (G,), "agent: a staged replica at its own site that the platform ordered deleted"),
    ("POST", f"{API}/agent/jobs/{{job_id}}/output"): allow((G,), OWN_SITE + "; the job's current attempt"),
    ("POST", f"{API}/agent/transfers"): allow((G,), "agent: transfers to or from its own site", metered=False),
    ("POST", f"{API}/agent/transfers/{{transfer_id}}/done"): allow((G,), "agent: transfers to its own site"),
    ("POST", f"{API}/agent/transfers/{{transfer_id}}/failed"): allow((G,), "agent: transfers to its own site"),
    ("GET", f"{API}/transfers"): allow((C, O, A), "consumer: own tenant's transfers; operator and auditor: all"),
    ("POST", f"{API}/workflows"): allow((C, O), "the run and its steps' jobs belong to the caller's tenant"),
    ("GET", f"{API}/workflows"): allow((C, O, A), RUN),
    ("GET", f"{API}/workflows/{{run_id}}"): allow((C, O, A), RUN),
    ("POST", f"{API}/workflows/{{run_id}}/cancel"): allow((C, O), RUN),
    # money
    # the compute market (docs/market.md)
    ("GET", f"{API}/market/sessions"): allow(EVERYONE, "sessions taking orders now"),
    ("POST", f"{API}/market/asks"): allow((P, O), "provider: its own sites only"),
    ("POST", f"{API}/market/bids"): allow((C,), "consumer: places a hold of limit x quantity"),
    ("GET", f"{API}/market/orders"): allow(EVERYONE, "own tenant's orders; operator and auditor: all"),
    ("PATCH", f"{API}/market/orders/{{order_id}}"): allow((P, C, O), "own orders until the gate: a new id, new hold"),
    ("DELETE", f"{API}/market/orders/{{order_id}}"): allow((P, C, O), "own orders until the gate (another's → 404)"),
    ("GET", f"{API}/market/sessions/{{session_id}}/result"): allow(
        EVERYONE, "prices and volumes for all; fills only the caller's own (operator, auditor: all)"),
    ("GET", f"{API}/market/contracts"): allow(EVERYONE, "contracts the caller buys or sells; operator, auditor: all"),
    ("GET", f"{API}/market/data/{{session_id}}"): public("depth, prices and volumes of a session; never who"),
    ("GET", f"{API}/wallet"): allow((C, O, A), "the caller's own tenant's wallet"),
    ("GET", f"{API}/wallets/{{consumer}}"): allow((C, O, A), OWN_TENANT + " (another's → 404)"),
    ("PUT", f"{API}/wallets/{{consumer}}/credit"): allow((O,)),
    ("POST", f"{API}/topups"): allow((O,)),
    ("GET", f"{API}/price-books"): allow(EVERYONE, "published prices are public to every role"),
    ("POST", f"{API}/price-books"): allow((O, P), "provider: prices only its own sites"),
    ("GET", f"{API}/contracts"): allow(READERS),
    ("PUT", f"{API}/contracts/{{provider}}"): allow((O,)),
    ("POST", f"{API}/quotes"): allow((C, O), "priced for the caller's tenant"),
    ("GET", f"{API}/vouchers"): allow((O, C, A), "programme terms, no balances of other tenants"),
    ("POST", f"{API}/vouchers"): allow((O,)),
    ("POST", f"{API}/vouchers/{{programme}}/fund"): allow((O,)),
    ("POST", f"{API}/settlements"): allow((O,)),
    ("GET", f"{API}/settlements"): allow(READERS),
    ("GET", f"{API}/settlements/{{settlement_id}}"): allow(READERS),
    ("GET", f"{API}/settlements/{{settlement_id}}/csv"): allow(READERS),
    ("GET", f"{API}/ledger/transfers"): allow((O, A, C, P), "consumer: own charges; provider: own earnings"),
    ("POST", f"{API}/ledger/reversals"): allow((O,)),
    ("GET", f"{API}/ledger/accounts"): allow(READERS),
    ("GET", f"{API}/ledger/reconcile"): allow(READERS),
}


def rule_for(method: str, path_template: str) -> Rule | None:
    """The rule of a route, or ``None`` when it has no entry (the caller must refuse)."""
    return TABLE.get(("GET" if method == "HEAD" else method, path_template))


def _mark(rule: Rule, role: Role) -> str:
    if rule.session:
        return "✓ (session)" if role in rule.roles else "—"
    return "*public*" if rule.public else "✓" if role in rule.roles else "—"


def render_markdown() -> str:
    """The table as docs/permissions.md (a test holds the committed file equal to this)."""
    head = ["method", "path", *[r.value for r in ROLE_ORDER], "scope"]
    lines = [
        "# Permissions",
        "",
        "Rendered from `src/suanwang/api/permissions.py` by `suanwang admin permissions --markdown`;",
        "do not edit by hand. ✓ may call; — refused with 403; *public* needs no token. A missing or unknown,",
        "revoked or expired token answers 401; a route missing from the table is refused.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for (method, path), rule in sorted(TABLE.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        marks = [_mark(rule, r) for r in ROLE_ORDER]
        lines.append(f"| {method} | `{path}` | " + " | ".join(marks) + f" | {rule.scope} |")
    return "\n".join(lines) + "\n"
