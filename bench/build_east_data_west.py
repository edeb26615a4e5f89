"""Build src/suanwang/grids/east_data_west.yaml (东数西算) from the data shipped in src/suanwang/data.

Run: ``PYTHONPATH=src python bench/build_east_data_west.py``.  Every number comes from a data folder
or from an assumption stated here:

* Sites: the national hub clusters Qingyang (Gansu), Zhongwei (Ningxia), Gui'an (Guizhou), Horinger and
  Ulanqab (Inner Mongolia), Wuhu (Anhui), and demand edges Beijing, Shanghai, Guangzhou.
* Pools: the 10,412 GPUs (4,278 nodes) of ``alibaba_spot_gpu_node_inventory_2026``, each model's GPUs split
  over the sites by ``SPLIT`` (training parts H800/A100/A800 west, inference parts A10/GPU-series-1 near the
  edges); a pool's node shape (GPUs and vCPUs per node) is the model's commonest node in the inventory and
  its cores follow from it; memory assumed at 8 GB per vCPU.
  Every site also has a CPU pool of 32 nodes x 192 vCPUs (the inventory's largest node; assumed) for
  general-class work.
* Speed (SCU per device-hour): dense FP16/BF16 tensor peak relative to A100 (312 TFLOPS), from
  ``accelerator_specs`` (A10 125, H800 989); the undisclosed GPU-series-1/-2 are assumed A10-class and
  A100-class.  CPU cores: 1 SCU per core-hour (CPU units are a separate scale).
* Price: Alibaba Cloud on-demand median USD per GPU-hour (``alicloud_gpu_vm_prices_china``), at
  7.246 CNY/USD (the rate the companion Tencent catalog states), divided by speed -> fen per SCU·h.
  H800 has no row; the ``H`` accelerator is used as its stand-in.  CPU: 20 fen per core-hour (assumed).
  Time of use: 30 % of the price follows the electricity ToU ratio (peak 1.85, flat 1, valley 0.4 —
  Zhejiang's published ratios, ``cn_tou_tariffs``) over hour windows of Beijing (north and north-west
  sites), Shanghai non-summer (east) and Hainan (south) — stand-ins: the hubs' own windows were not found.
* Carbon: provincial 2022 average emission factors (``cn_grid_emission_factors``) times a daily shape
  (``grid_carbon_intensity_hourly_2023/daily_shape_2023.csv``: AU-NSW for the north-west, JP-TK east, KR
  south — stand-ins).  Green share: Gansu's 2024 generation share (37 %) from the data; other sites
  ``1 - factor / national fossil-only factor 0.8325`` (an estimate).
* Power per device: TDP (A10 150 W, A100/A800 400 W, H800 700 W) x 1.5 for host and cooling; 10 W per core.
* Links: no per-pair latency matrix is published (``cn_network_latency``); one-way latency is modelled as
  ``1 ms + great-circle km x route factor / 200 km/ms`` (route 1.6 on the backbone, 1.25 on direct
  links), which gives site-pair latencies of mean 11.6 ms, max 21 ms: between CAICT 2024Q1 optical-layer
  (mean 9.7, max 17.1 ms) and IP private network (mean 14.6, max 23.9 ms) figures.
  Bandwidth (assumed): backbone 400 Gbps between edges, 100 Gbps hub to edge, 200 Gbps direct links.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src/suanwang/data"
OUT = ROOT / "src/suanwang/grids/east_data_west.yaml"
CNY_PER_USD = 7.246

SITES = {  # name: (province, region, lat, lon, factor 2022, tou, carbon shape, edge?)
    "qingyang": ("Gansu", "cn-northwest", 35.71, 107.64, 0.4772, "north", "AU-NSW", False),
    "zhongwei": ("Ningxia", "cn-northwest", 37.51, 105.19, 0.6423, "north", "AU-NSW", False),
    "guian": ("Guizhou", "cn-southwest", 26.43, 106.39, 0.4989, "south", "KR", False),
    "horinger": ("Inner Mongolia", "cn-north", 40.38, 111.82, 0.6849, "north", "AU-NSW", False),
    "ulanqab": ("Inner Mongolia", "cn-north", 41.00, 113.13, 0.6849, "north", "AU-NSW", False),
    "wuhu": ("Anhui", "cn-east", 31.33, 118.38, 0.6782, "east", "JP-TK", False),
    "beijing": ("Beijing", "cn-north", 39.90, 116.40, 0.5580, "north", "JP-TK", True),
    "shanghai": ("Shanghai", "cn-east", 31.23, 121.47, 0.5849, "east", "JP-TK", True),
    "guangzhou": ("Guangdong", "cn-south", 23.13, 113.26, 0.4403, "south", "KR", True),
}
GREEN = {"qingyang": 0.3706}
TOU_WINDOWS = {  # hours (local) of peak and valley; the rest flat
    "north": ("10-15;18-21", "23-07"),  # Beijing
    "east": ("08-11;18-21", "22-06"),  # Shanghai non-summer
    "south": ("10-12;16-22", "23-07"),  # Hainan
}
RATIO = {"peak": 1.85, "flat": 1.0, "valley": 0.4}
TOU_SHARE = 0.3
SPLIT = {  # device model: {site: share of that model's nodes}
    "H800": {"qingyang": 0.35, "zhongwei": 0.25, "ulanqab": 0.25, "guian": 0.15},
    "A100-SXM4-80GB": {"qingyang": 0.25, "zhongwei": 0.2, "horinger": 0.25, "guian": 0.15, "wuhu": 0.15},
    "A800-SXM4-80GB": {"wuhu": 0.5, "horinger": 0.5},
    "A10": {"beijing": 0.25, "shanghai": 0.25, "guangzhou": 0.2, "wuhu": 0.15, "guian": 0.15},
    "GPU-series-1": {"beijing": 0.3, "shanghai": 0.3, "guangzhou": 0.25, "wuhu": 0.15},
    "GPU-series-2": {"horinger": 0.5, "guian": 0.5},
}
SPEC = {  # model: (speed, price key in per_gpu_hour_usd.csv, TDP W, device memory GB)
    "H800": (989 / 312, "H", 700, 80),
    "A100-SXM4-80GB": (1.0, "A100 80G", 400, 80),
    "A800-SXM4-80GB": (1.0, "A100 80G", 400, 80),
    "A10": (125 / 312, "A10", 150, 24),
    "GPU-series-1": (125 / 312, "A10", 150, 24),
    "GPU-series-2": (1.0, "A100 80G", 400, 80),
}
EDGE_LINKS = [("beijing", "shanghai"), ("shanghai", "guangzhou"), ("beijing", "guangzhou"), ("wuhu", "shanghai")]
HUB_LINKS = [("qingyang", "beijing"), ("zhongwei", "beijing"), ("horinger", "beijing"), ("ulanqab", "beijing"),
             ("guian", "guangzhou"), ("qingyang", "zhongwei"), ("horinger", "ulanqab"), ("wuhu", "beijing")]
DIRECT_LINKS = [("qingyang", "shanghai"), ("zhongwei", "shanghai"), ("guian", "shanghai"), ("qingyang", "guangzhou"),
                ("ulanqab", "beijing"), ("guian", "beijing")]


def km(a: str, b: str) -> float:
    _, _, la1, lo1, *_ = SITES[a]
    _, _, la2, lo2, *_ = SITES[b]
    p1, p2, dl = math.radians(la1), math.radians(la2), math.radians(lo2 - lo1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


def latency(a: str, b: str, route: float) -> float:
    return round(1.0 + km(a, b) * route / 200.0, 2)


def hours(spec: str) -> list[int]:
    out = []
    for part in spec.split(";"):
        lo, hi = (int(x) for x in part.split("-"))
        h = lo
        while h != hi:
            out.append(h)
            h = (h + 1) % 24
    return out


def tou_profile(kind: str) -> list[float]:
    peak, valley = (set(hours(s)) for s in TOU_WINDOWS[kind])
    ratio = [RATIO["peak"] if h in peak else RATIO["valley"] if h in valley else RATIO["flat"] for h in range(24)]
    return [round(1 - TOU_SHARE + TOU_SHARE * r, 4) for r in ratio]


def carbon_shapes() -> dict[str, list[float]]:
    shapes: dict[str, list[float]] = {}
    with (DATA / "grid_carbon_intensity_hourly_2023/daily_shape_2023.csv").open() as fh:
        for row in csv.DictReader(fh):
            shapes.setdefault(row["zone"], [0.0] * 24)[int(row["local_hour"])] = float(row["shape"])
    return shapes


def prices() -> dict[str, float]:
    with (DATA / "alicloud_gpu_vm_prices_china/per_gpu_hour_usd.csv").open() as fh:
        return {r["accelerator"]: float(r["median_usd_per_gpu_hour"]) for r in csv.DictReader(fh)}


def inventory() -> dict[str, Counter]:
    shapes: dict[str, Counter] = {}
    with (DATA / "alibaba_spot_gpu_node_inventory_2026/node_info_df.csv").open() as fh:
        for r in csv.DictReader(fh):
            shapes.setdefault(r["gpu_model"], Counter())[(int(r["gpu_capacity_num"]), int(r["cpu_num"]))] += 1
    return shapes


def pools() -> list[dict]:
    usd = prices()
    out = []
    for model, shapes in inventory().items():
        (gpn, cpn), _ = shapes.most_common(1)[0]  # node shape of the pool: the model's commonest node
        gpus = sum(g * count for (g, _), count in shapes.items())  # the model's GPUs, all kept
        speed, key, tdp, mem = SPEC[model]
        fen = round(usd[key] * CNY_PER_USD * 100 / speed)
        left, sites = gpus, list(SPLIT[model].items())
        for k, (site, share) in enumerate(sites):
            d = left if k == len(sites) - 1 else round(gpus * share)
            left -= d
            n = d / gpn  # nodes of the commonest shape (may be fractional: capacity is what counts)
            out.append({
                "name": model.lower().replace("-sxm4-80gb", "").replace("gpu-series-", "gs"), "site": site,
                "class": "intelligent", "engine": "slurm" if gpn == 8 else "kubernetes",
                "device_model": model, "device_memory_gb": mem, "devices": d, "cores": round(n * cpn),
                "memory_gb": round(n * cpn * 8), "node": {"cores": cpn, "memory_gb": cpn * 8, "devices": gpn},
                "speed": round(speed, 4), "power_kw": round(tdp * 1.5 / 1000, 3), "price_fen": fen,
                "tou": SITES[site][5],
            })
    for site in SITES:
        out.append({"name": "cpu", "site": site, "class": "general", "engine": "slurm", "cores": 32 * 192,
                     "memory_gb": 32 * 192 * 8, "node": {"cores": 192, "memory_gb": 192 * 8}, "speed": 1.0,
                     "power_kw": 0.01, "price_fen": 20, "tou": SITES[site][5]})
    return out


def links() -> list[dict]:
    out = []
    for a, b in EDGE_LINKS + HUB_LINKS:
        bw = 400 if (a, b) in EDGE_LINKS else 100
        out.append({"a": a, "b": b, "latency_ms": latency(a, b, 1.6), "bandwidth_gbps": bw, "direct": False})
    for a, b in DIRECT_LINKS:
        out.append({"a": a, "b": b, "latency_ms": latency(a, b, 1.25), "bandwidth_gbps": 200, "direct": True})
    return out


def main() -> None:
    shapes = carbon_shapes()
    sites = []
    for name, (prov, region, lat, lon, factor, _, shape, _) in SITES.items():
        sites.append({"name": name, "province": prov, "region": region, "lat": lat, "lon": lon,
                      "carbon_kg_per_kwh": factor, "carbon_shape": shape,
                      "green_share": GREEN.get(name, round(max(0.0, 1 - factor / 0.8325), 3))})
    doc = {
        "name": "east-data-west",
        "utc_offset_h": 8,
        "tou_profiles": {k: tou_profile(k) for k in TOU_WINDOWS},
        "carbon_shapes": {k: [round(x, 4) for x in v] for k, v in shapes.items()},
        "sites": sites,
        "links": links(),
        "pools": pools(),
    }
    header = "# Generated by bench/build_east_data_west.py; sources and assumptions in its docstring.\n"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    print(f"wrote {OUT}: {len(sites)} sites, {len(doc['pools'])} pools, {len(doc['links'])} links")


if __name__ == "__main__":
    main()
