"""Names the templates translate as values (roles, job states, classes, bands, transfer kinds).

Listed here so ``pybabel extract -k N_`` puts them in the catalogue; ``N_`` marks without translating.
"""

from __future__ import annotations


def N_(message: str) -> str:
    return message


LABELS = (
    # roles
    N_("operator"), N_("provider"), N_("consumer"), N_("auditor"), N_("agent"),
    # job states
    N_("pending"), N_("placed"), N_("queued_at_site"), N_("running"), N_("succeeded"), N_("failed"),
    N_("cancelled"), N_("lost"), N_("requeued"),
    # resource classes
    N_("general"), N_("intelligent"), N_("super"), N_("quantum"),
    # time-of-use bands
    N_("tip"), N_("peak"), N_("flat"), N_("valley"), N_("deep_valley"),
    # ledger transfer kinds
    N_("topup"), N_("hold_place"), N_("hold_release"), N_("hold_void"), N_("charge"), N_("voucher_fund"),
    N_("payout"), N_("reversal"), N_("adjustment"),
    # market: order sides and states, session kinds
    N_("ask"), N_("bid"), N_("live"), N_("withdrawn"), N_("day-ahead"), N_("intraday"),
    # earnings periods
    N_("day"), N_("week"), N_("month"),
)
