"""`suanwang catalog`: the device catalogue with each model's standard-unit rate and its source.

Read from the packaged catalogue (``suanwang/data/devices.csv``), so it needs
no platform: what a provider checks before naming a model in its site file.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from suanwang.cli.client import console, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def catalog(
        kind: Annotated[str, typer.Option(help="only 'cpu' or 'accelerator'")] = "",
        json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Device models, their SCU rate per card-hour (per core-hour for CPUs) and sources (docs/units.md)."""
        from suanwang.domain.catalogue import catalogue_rows, rate_cpu, rate_device
        from suanwang.domain.units import load_catalog

        cat = load_catalog()
        rows = [r for r in catalogue_rows(cat) if not kind or r["kind"] == kind]
        unknown = {"accelerator": rate_device(cat, "").spec.model, "cpu": rate_cpu(cat, "").spec.model}
        if json:
            print_json({"models": rows, "unknown_models_metered_as": unknown,
                        "unit": "1 SCU = one hour of 1 TFLOPS FP32 peak"})
            return
        table = Table("model", "kind", "SCU / unit-hour", "FP32 TFLOPS", "source", title="device catalogue")
        for r in rows:
            per = "core" if r["kind"] == "cpu" else "card"
            table.add_row(r["model"], r["kind"], f"{r['scu_per_unit_hour'] or '-'} /{per}", r["fp32_tflops"] or "-",
                          r["source"][:70])
        console.print(table)
        console.print(f"Unknown accelerators are metered as {unknown['accelerator']}, unknown CPUs as "
                      f"{unknown['cpu']} (the lowest rates listed), and flagged.")
