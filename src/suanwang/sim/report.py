"""Simulation report: one HTML page with PNG plots comparing policies on one trace and grid.

Plots (matplotlib, Agg backend, no display needed): utilisation per site over
time (one panel per policy), busy share of the grid's cards and of its cores
(never added together), wait-time distribution (CDF), and bars of cost (yuan),
carbon, deadline misses and p99 waits per policy, each bar labelled with its
value.  The table holds the figures a reader compares (``COLUMNS``), money in
yuan, and fits the page (it scrolls on its own when the page is narrower).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from suanwang.sim.engine import SimResult


def write_report(results: Sequence[SimResult], out_dir: str | Path, *, title: str = "Simulation report") -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = [
        _bars(results, out / "cost_carbon_misses.png"),
        _resources(results, out / "cards_cores.png"),
        _utilisation(results, out / "utilisation.png"),
        _waits(results, out / "wait_cdf.png"),
    ]
    rows = [r.summary() for r in results]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(row.get(key)))}</td>" for key, _, fmt in COLUMNS) + "</tr>"
        for row in rows
    )
    figs = "".join(f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
                   for p in images)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in notes_for(rows))
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em auto;max-width:1100px;padding:0 1em}}
.t{{overflow-x:auto}}table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;
padding:3px 6px;text-align:right;white-space:nowrap}}th{{white-space:normal;vertical-align:bottom}}
td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Cost in yuan (¥); carbon in kg CO<sub>2</sub>; waits in seconds (a job never started counts its wait to the
end of the replay); <i>dl</i> = jobs with a deadline, <i>no dl</i> = without; utilisation = mean busy share of
the grid's cards and, separately, of its cores.</p><ul>{notes}</ul>
<div class="t"><table><tr>{head}</tr>{table}</table></div>{figs}</body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _yuan(v: object) -> str:
    return "-" if v is None else f"¥{int(v) / 100:,.2f}"  # type: ignore[call-overload]


def _num(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _pct(v: object) -> str:
    return "-" if v is None else f"{float(v) * 100:.1f} %"  # type: ignore[arg-type]


def _ratio(v: object) -> str:
    return "-" if v is None else f"{float(v):.3f}×"  # type: ignore[arg-type]


COLUMNS: tuple[tuple[str, str, Callable[[object], str]], ...] = (
    ("policy", "policy", str),
    ("cost_fen", "cost", _yuan),
    ("cost_ratio_to_bound", "cost / bound", _ratio),
    ("carbon_kg", "carbon kg", _num),
    ("deadline_misses", "deadline misses", _num),
    ("wait_p50_s", "wait p50", _num),
    ("wait_p99_s", "wait p99", _num),
    ("wait_p99_deadline_s", "p99 dl", _num),
    ("wait_p50_no_deadline_s", "p50 no dl", _num),
    ("wait_p99_no_deadline_s", "p99 no dl", _num),
    ("util_cards_mean", "cards busy", _pct),
    ("gpu_fragmentation_mean", "GPU fragmentation", _pct),
    ("util_cores_mean", "cores busy", _pct),
    ("refused", "refused at submit", _num),
    ("never_started", "never started", _num),
    ("makespan_s", "makespan s", _num),
)


def notes_for(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """What the reader needs to know to read the table: refusals, and why a bound ratio is missing."""
    out = []
    if rows and rows[0].get("refused"):
        out.append(f"{rows[0]['refused']} of {rows[0]['jobs']} jobs were refused at submit (no pool can run them, "
                   "or none can meet their deadline); they count in no figure.")
    if rows and rows[0].get("cost_ratio_to_bound") is None:
        out.append("cost / bound: not computed (trace larger than the bound's limit, or the LP had no optimum).")
    return out


def _labels(ax: Any, bars: Any, fmt: Callable[[float], str]) -> None:
    heights = [float(b.get_height()) for b in bars]
    ax.bar_label(bars, labels=[fmt(h) for h in heights], fontsize=7, padding=2)
    ax.set_ylim(0, max(max(heights, default=0.0) * 1.15, 1.0))


def _resources(results: Sequence[SimResult], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), sharey=True)
    for ax, attr, label in ((axes[0], "util_cards", "cards"), (axes[1], "util_cores", "cores")):
        for r in results:
            v = getattr(r, attr)
            if v is not None and len(v):
                ax.plot(r.util_t / 3600.0, v, label=r.policy, linewidth=1)
        ax.set_title(f"busy share of the grid's {label}")
        ax.set_xlabel("hours from trace start")
        ax.set_ylim(0, 1.05)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _utilisation(results: Sequence[SimResult], path: Path) -> Path:
    n = max(1, len(results))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=False):
        hours = r.util_t / 3600.0
        for k, site in enumerate(r.sites):
            ax.plot(hours, r.util[:, k] if len(r.util) else [], label=site, linewidth=1)
        ax.set_ylabel(r.policy)
        ax.set_ylim(0, 1.05)
    axes[0, 0].legend(ncol=5, fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("hours from trace start (busy share of each site's devices or cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _waits(results: Sequence[SimResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        w = np.sort(r.wait_s[~np.isnan(r.wait_s)])
        if len(w):
            ax.plot(np.maximum(w, 1e-1), np.arange(1, len(w) + 1) / len(w), label=r.policy)
    ax.set_xscale("log")
    ax.set_xlabel("wait (s, log)")
    ax.set_ylabel("share of jobs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _bars(results: Sequence[SimResult], path: Path) -> Path:
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    names = [r.policy for r in results]
    sums = [r.summary() for r in results]

    def money(x: float) -> str:
        return f"¥{x:,.0f}" if x >= 100 else f"¥{x:,.2f}"

    values: list[tuple[str, list[float], Callable[[float], str]]] = [
        ("cost (yuan)", [r.cost_fen.sum() / 100 for r in results], money),
        ("carbon (kg CO2)", [float(r.carbon_kg.sum()) for r in results],
         lambda x: f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"),
        ("deadline misses", [float(r.deadline_misses) for r in results], lambda x: f"{x:.0f}"),
        ("wait p99, no deadline (s)", [float(s["wait_p99_no_deadline_s"]) for s in sums], lambda x: f"{x:,.0f}"),
        ("wait p99, deadline (s)", [float(s["wait_p99_deadline_s"]) for s in sums], lambda x: f"{x:,.0f}"),
    ]
    for ax, (label, v, fmt) in zip(axes, values, strict=True):
        _labels(ax, ax.bar(names, v), fmt)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
