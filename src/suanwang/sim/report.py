"""Simulation report: one HTML page with PNG plots comparing policies on one trace and grid.

Plots (matplotlib, Agg backend, no display needed): utilisation per site over
time (one panel per policy), wait-time distribution (CDF), and bars of cost,
carbon and deadline misses per policy.  The page embeds a table of each
policy's ``SimResult.summary()``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

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
        _utilisation(results, out / "utilisation.png"),
        _waits(results, out / "wait_cdf.png"),
        _bars(results, out / "cost_carbon_misses.png"),
    ]
    rows = [r.summary() for r in results]
    keys = list(rows[0]) if rows else []
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[k]))}</td>" for k in keys) + "</tr>" for row in rows
    )
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    figs = "".join(f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
                   for p in images)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1><p>Cost in fen; carbon in kg CO2; waits in seconds.</p>
<table><tr>{head}</tr>{table}</table>{figs}</body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
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
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    names = [r.policy for r in results]
    values = [
        ("cost (yuan)", [r.cost_fen.sum() / 100 for r in results]),
        ("carbon (kg CO2)", [float(r.carbon_kg.sum()) for r in results]),
        ("deadline misses", [r.deadline_misses for r in results]),
    ]
    for ax, (label, v) in zip(axes, values, strict=True):
        ax.bar(names, v)
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
