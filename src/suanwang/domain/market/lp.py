"""The clearing programme for one group of resource classes, on HiGHS.

Variables (all >= 0)::

    x[b, s, t]  units of divisible bid b run at site s in slot t   (<= rate_per_slot)
    y[b, s]     all-or-nothing bid b runs at site s (0/1; relaxed to [0, 1] for prices)
    z[a, t]     units of ask a sold in slot t                      (<= units_per_slot)

Objective (social welfare, fen)::

    max  sum (limit_b + eps_b) x  +  sum (limit_b + eps_b) r_b |W_b| y  -  sum (floor_a - eps_a) z

Constraints::

    node (s, c, t):   sum_b x[b,s,t] + sum_b r_b y[b,s] - sum_a z[a,t] = 0     dual: price
    bid b:            sum_{s,t} x[b,s,t] <= quantity_b           (only where it can bind)
    rate (b, t):      sum_s x[b,s,t] <= rate_per_slot_b          (only with several sites)
    gang b:           sum_s y[b,s] <= 1
    link (l, t):      sum d_b (x + r_b y) over bids crossing l <= gb_per_slot_l  dual: congestion

Columns exist only at nodes some ask supplies (no supply, no trade), and link rows only for the
(link, slot)s the caller says may bind.  ``eps`` is the explicit tie-break: below 1e-4 fen per unit-slot,
decreasing with the order's canonical rank, so at equal prices the earlier order wins; prices
are rounded to 0.01 fen afterwards, far above it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from suanwang.domain.market.order import Ask, Bid, LinkKey, ResourceClass, SiteId, Slot

Node = tuple[SiteId, ResourceClass, Slot]
EPS_FEN = 1e-4
INTEGRAL_TOL = 1e-9  # a relaxed all-or-nothing decision this close to 0 or 1 is taken as whole
# Parts with more all-or-nothing decisions than this are not searched (a MIP that size costs seconds): the
# relaxation's whole decisions are kept and its fractional ones refused, and the gap to its bound is stated.
RELAX_AND_FIX_OVER = 64
INF = highspy.kHighsInf


@dataclass(slots=True)
class Solved:
    """Raw solution of one group: float values keyed by model objects, before rounding."""

    status: str
    gap: float
    lp_welfare: float  # objective of the priced LP (integers fixed), without eps
    solve_s: float
    x: dict[tuple[int, SiteId, Slot], float]  # (bid index, site, slot) -> units
    y: dict[tuple[int, SiteId], float]  # (bid index, site) -> 0/1
    z: dict[tuple[int, Slot], float]  # (ask index, slot) -> units
    prices: dict[Node, float]
    congestion: dict[tuple[LinkKey, Slot], float]


class _Model:
    """Columns and rows as triplets; turned into a column-wise matrix once, at the end."""

    def __init__(self, links: dict[tuple[LinkKey, Slot], int]) -> None:
        self.links = links
        self.cost: list[float] = []
        self.true_cost: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.row_upper: list[float] = []
        self.row_is_node: list[bool] = []
        self.link_rows: dict[tuple[LinkKey, Slot], int] = {}
        self.x_cols: dict[int, tuple[int, SiteId, Slot]] = {}
        self.y_cols: dict[int, tuple[int, SiteId]] = {}
        self.z_cols: dict[int, tuple[int, Slot]] = {}

    def add_row(self, upper: float, *, node: bool = False) -> int:
        self.row_upper.append(upper)
        self.row_is_node.append(node)
        return len(self.row_upper) - 1

    def link_row(self, key: LinkKey, t: Slot) -> int:
        row = self.link_rows.get((key, t))
        if row is None:
            row = self.link_rows[(key, t)] = self.add_row(float(self.links[(key, t)]))
        return row

    def add_col(self, cost: float, true_cost: float, upper: float, entries: list[tuple[int, float]]) -> int:
        col = len(self.cost)
        self.cost.append(cost)
        self.true_cost.append(true_cost)
        self.upper.append(upper)
        for row, val in entries:
            self.rows.append(row)
            self.cols.append(col)
            self.vals.append(val)
        return col

    def add_sum_row(self, cols: list[int], upper: float) -> None:
        """``sum(cols) <= upper`` over columns already added."""
        row = self.add_row(upper)
        self.rows.extend([row] * len(cols))
        self.cols.extend(cols)
        self.vals.extend([1.0] * len(cols))

    def to_lp(self) -> highspy.HighsLp:
        n, n_rows = len(self.cost), len(self.row_upper)
        rows = np.asarray(self.rows, dtype=np.int32)
        cols = np.asarray(self.cols, dtype=np.int32)
        vals = np.asarray(self.vals, dtype=np.float64)
        order = np.argsort(cols, kind="stable")
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, n_rows
        lp.col_cost_ = np.asarray(self.cost)
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.asarray(self.upper)
        is_node = np.asarray(self.row_is_node, dtype=bool)
        lp.row_lower_ = np.where(is_node, 0.0, -INF)
        lp.row_upper_ = np.where(is_node, 0.0, np.asarray(self.row_upper))
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, n_rows
        lp.a_matrix_.start_ = np.searchsorted(cols[order], np.arange(n + 1)).astype(np.int32)
        lp.a_matrix_.index_ = rows[order]
        lp.a_matrix_.value_ = vals[order]
        lp.sense_ = highspy.ObjSense.kMaximize
        return lp


def solve_group(*, asks: Sequence[tuple[int, Ask]], bids: Sequence[tuple[int, Bid]], nodes: set[Node] | None = None,
                n_asks: int, n_orders: int, links: dict[tuple[LinkKey, Slot], int], time_limit_s: float,
                relax: bool = False, keep: list[Warm] | None = None) -> Solved:
    """Clear one connected part of the book.

    ``asks``/``bids`` carry their index in the canonical book; an ask's rank is its index, a bid's
    ``n_asks`` + its index (the tie-break).  Solution keys use those indexes.  ``nodes`` (default:
    every node the asks supply) limits the programme to one part of the book: columns elsewhere
    belong to another part.  ``relax``: all-or-nothing decisions continuous (row generation's rounds; the
    whole-number programme is solved once the link rows are known), any fraction counted as taken.
    ``keep``: where a programme with no integer decision enforced is kept for :func:`add_link_rows`.
    """
    started = time.perf_counter()
    m = _Model(links)
    rows: dict[Node, int] = {}
    for _, ask in asks:
        for t in range(ask.start_slot, ask.end_slot):
            key = (ask.site, ask.resource_class, t)
            if key not in rows and (nodes is None or key in nodes):
                rows[key] = m.add_row(0.0, node=True)
    for b_index, bid in bids:
        eps = EPS_FEN * (1.0 - (n_asks + b_index) / (n_orders + 1))
        if bid.all_or_nothing:
            _gang_cols(m, bid, b_index, eps, rows)
        else:
            _divisible_cols(m, bid, b_index, eps, rows)
    has_demand = bool(m.cost)
    for a_index, ask in asks:
        eps = EPS_FEN * (1.0 - a_index / (n_orders + 1))
        for t in range(ask.start_slot, ask.end_slot):
            row = rows.get((ask.site, ask.resource_class, t))
            if row is not None:
                col = m.add_col(-(ask.floor_fen - eps), -float(ask.floor_fen), float(ask.units_per_slot), [(row, -1.0)])
                m.z_cols[col] = (a_index, t)
    if not has_demand:
        return Solved("empty", 0.0, 0.0, time.perf_counter() - started, {}, {}, {}, dict.fromkeys(rows, 0.0), {})
    return _run(m, rows, started, time_limit_s, relax, keep)


def _run(m: _Model, nodes: dict[Node, int], started: float, time_limit_s: float, relax: bool,
         keep: list[Warm] | None = None) -> Solved:
    n = len(m.cost)
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.passModel(m.to_lp())
    status, gap, bound = "", 0.0, None
    if m.integer and not relax:
        cols = np.asarray(m.integer, dtype=np.int32)
        _solve(h)  # the relaxation first: when it is already whole, it is the MIP's optimum and no search is needed
        relaxed = np.asarray(h.getSolution().col_value)[cols]
        solved = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        if solved and np.all(np.abs(relaxed - np.round(relaxed)) <= INTEGRAL_TOL):
            status, fixed = "optimal", np.round(relaxed).clip(0, 1)
        elif solved and len(cols) > RELAX_AND_FIX_OVER:  # large: keep its whole decisions, refuse the fractional
            bound = float(h.getInfo().objective_function_value)  # no whole solution does better than the relaxation
            whole = np.abs(relaxed - np.round(relaxed)) <= INTEGRAL_TOL
            fixed = np.where(whole, np.round(relaxed), 0.0).clip(0, 1)
        else:
            h.changeColsIntegrality(len(cols), cols, np.full(len(cols), highspy.HighsVarType.kInteger))
            h.setOptionValue("mip_rel_gap", 1e-9)
            _solve(h)
            status = h.modelStatusToString(h.getModelStatus()).lower()
            info = h.getInfo()
            gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else 1.0
            has_solution = info.primal_solution_status == 2
            values = np.asarray(h.getSolution().col_value) if has_solution else np.zeros(n)
            fixed = np.round(values[cols]).clip(0, 1)
            h.changeColsIntegrality(len(cols), cols, np.full(len(cols), highspy.HighsVarType.kContinuous))
        h.changeColsBounds(len(cols), cols, fixed, fixed)  # prices: the LP with integers fixed
    _solve(h)
    lp_status = h.modelStatusToString(h.getModelStatus()).lower()
    status = status or lp_status
    if bound is not None:  # relax-and-fix: its gap to the relaxation's bound, stated
        gap = max(0.0, (bound - float(h.getInfo().objective_function_value)) / max(1.0, abs(bound)))
        status = "feasible" if gap > 1e-9 and status == "optimal" else status
    if keep is not None and (relax or not m.integer):  # a linear programme: the next round may extend it
        keep.append(Warm(h, m, nodes))
    return _extract(h, m, nodes, started, status, gap, relax)


class SolverError(RuntimeError):
    """HiGHS refused to solve (not a verdict on the book): the clear fails and is tried again, never booked empty."""


def _solve(h: highspy.Highs) -> None:
    if h.run() == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS failed to solve the clearing programme ({h.modelStatusToString(h.getModelStatus())})")


def _extract(h: highspy.Highs, m: _Model, nodes: dict[Node, int], started: float, status: str, gap: float,
             relax: bool) -> Solved:
    sol = h.getSolution()
    value = np.asarray(sol.col_value)
    dual = np.asarray(sol.row_dual)
    x = {key: float(value[c]) for c, key in m.x_cols.items() if value[c] > 1e-9}
    y = {key: 1.0 for c, key in m.y_cols.items() if value[c] > (1e-9 if relax else 0.5)}
    z = {key: float(value[c]) for c, key in m.z_cols.items() if value[c] > 1e-9}
    prices = {node: float(dual[row]) for node, row in nodes.items()}
    congestion = {key: max(0.0, float(dual[row])) for key, row in m.link_rows.items()}
    welfare = float(np.dot(np.asarray(m.true_cost), value))
    return Solved(status, gap, welfare, time.perf_counter() - started, x, y, z, prices, congestion)


@dataclass(slots=True)
class Warm:
    """A part's solved linear programme kept between rounds of row generation (no integer decisions
    enforced): the next round adds its new link rows and re-solves from the last basis."""

    h: highspy.Highs
    m: _Model
    nodes: dict[Node, int]


def add_link_rows(warm: Warm, links: dict[tuple[LinkKey, Slot], int], bids: Sequence[Bid], *,
                  relax: bool, fix_whole: bool = False) -> Solved:
    """Re-solve a kept part with ``links`` (a superset of its link rows): the new rows in one ``addRows``.

    ``fix_whole``: then relax-and-fix its all-or-nothing decisions (as :func:`solve_group` does for a part
    over ``RELAX_AND_FIX_OVER``), from the warm relaxation; the part stays a relaxation for the next round."""
    started = time.perf_counter()
    m = warm.m
    new = sorted(ks for ks in links if ks not in m.link_rows)
    at = {ks: i for i, ks in enumerate(new)}
    entries: list[list[tuple[int, float]]] = [[] for _ in new]
    for c, (b, site, t) in m.x_cols.items():
        bid = bids[b]
        key = bid.link_to(site)
        if key is not None and (key, t) in at:
            entries[at[(key, t)]].append((c, float(bid.data_gb_per_unit)))
    for c, (b, site) in m.y_cols.items():
        bid = bids[b]
        key = bid.link_to(site)
        if key is not None:
            for t in range(bid.start_slot, bid.end_slot):
                if (key, t) in at:
                    entries[at[(key, t)]].append((c, float(bid.rate_per_slot * bid.data_gb_per_unit)))
    m.links = links
    for ks in new:
        m.link_rows[ks] = m.add_row(float(links[ks]))
    starts = np.cumsum([0] + [len(e) for e in entries[:-1]]).astype(np.int32) if new else np.zeros(0, np.int32)
    index = np.asarray([c for e in entries for c, _ in e], dtype=np.int32)
    value = np.asarray([v for e in entries for _, v in e], dtype=np.float64)
    if new:
        warm.h.addRows(len(new), np.full(len(new), -INF), np.asarray([float(links[ks]) for ks in new]),
                       len(index), starts, index, value)
    h = warm.h
    _solve(h)
    status = h.modelStatusToString(h.getModelStatus()).lower()
    if not (fix_whole and m.integer and h.getModelStatus() == highspy.HighsModelStatus.kOptimal):
        return _extract(h, m, warm.nodes, started, status, 0.0, relax)
    cols = np.asarray(m.integer, dtype=np.int32)
    bound = float(h.getInfo().objective_function_value)
    relaxed = np.asarray(h.getSolution().col_value)[cols]
    fixed = np.where(np.abs(relaxed - np.round(relaxed)) <= INTEGRAL_TOL, np.round(relaxed), 0.0).clip(0, 1)
    h.changeColsBounds(len(cols), cols, fixed, fixed)
    _solve(h)
    status = h.modelStatusToString(h.getModelStatus()).lower()
    gap = max(0.0, (bound - float(h.getInfo().objective_function_value)) / max(1.0, abs(bound)))
    solved = _extract(h, m, warm.nodes, started, "feasible" if gap > 1e-9 and status == "optimal" else status, gap,
                      relax=False)
    h.changeColsBounds(len(cols), cols, np.zeros(len(cols)), np.ones(len(cols)))  # a relaxation again
    return solved


def _divisible_cols(m: _Model, bid: Bid, b_index: int, eps: float, nodes: dict[Node, int]) -> None:
    per_slot: dict[Slot, list[int]] = {}
    upper = float(min(bid.rate_per_slot, bid.quantity))
    for site in bid.sites:
        key = bid.link_to(site)
        for t in range(bid.start_slot, bid.end_slot):
            row = nodes.get((site, bid.resource_class, t))
            if row is None:
                continue
            entries = [(row, 1.0)]
            if key is not None and (key, t) in m.links:
                entries.append((m.link_row(key, t), float(bid.data_gb_per_unit)))
            col = m.add_col(bid.limit_fen + eps, float(bid.limit_fen), upper, entries)
            m.x_cols[col] = (b_index, site, t)
            per_slot.setdefault(t, []).append(col)
    for cols in per_slot.values():
        if len(cols) > 1:
            m.add_sum_row(cols, float(bid.rate_per_slot))
    if bid.quantity < bid.rate_per_slot * len(per_slot):
        m.add_sum_row([c for cols in per_slot.values() for c in cols], float(bid.quantity))


def _gang_cols(m: _Model, bid: Bid, b_index: int, eps: float, nodes: dict[Node, int]) -> None:
    cols: list[int] = []
    slots = range(bid.start_slot, bid.end_slot)
    rate = float(bid.rate_per_slot)
    for site in bid.sites:
        rows = [nodes.get((site, bid.resource_class, t)) for t in slots]
        if any(r is None for r in rows):
            continue  # a gang needs supply in every slot of its window at one site
        entries = [(r, rate) for r in rows if r is not None]
        key = bid.link_to(site)
        if key is not None:
            entries += [(m.link_row(key, t), rate * bid.data_gb_per_unit) for t in slots if (key, t) in m.links]
        col = m.add_col((bid.limit_fen + eps) * bid.quantity, float(bid.limit_fen) * bid.quantity, 1.0, entries)
        m.y_cols[col] = (b_index, site)
        m.integer.append(col)
        cols.append(col)
    if len(cols) > 1:
        m.add_sum_row(cols, 1.0)
