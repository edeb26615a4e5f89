"""Build src/suanwang/data/devices.csv, the packaged device catalogue, from the shared spec tables.

Why a script: the catalogue is curated (a few dozen devices a Chinese compute network actually sells),
but every figure must be traceable to a source row.  Run it again when the sources change:

    python scripts/build_device_catalog.py [--data /work/shared/data] [--out src/suanwang/data/devices.csv]

Sources (their READMEs are copied to src/suanwang/data/sources/<folder>/README.md):
  accelerator_specs/epoch_ml_hardware.csv   Epoch AI "ML hardware" table (GPUs/NPUs)
  server_cpu_dcu_specs/cpu_dcu_specs.csv    Hygon DCUs and server CPUs

CPU peak FLOPS are not stated by any source; they are derived here as cores x base clock x FLOPs/cycle,
and each derived row says so in its ``note`` column.  Units in the output: TFLOPS / TOPS, GB, GB/s, W.
"""

from __future__ import annotations

import argparse
import csv
from decimal import Decimal
from pathlib import Path

COLUMNS = [
    "model", "aliases", "vendor", "kind", "cores", "clock_ghz",
    "fp64_tflops", "fp32_tflops", "fp16_tflops", "int8_tops",
    "memory_gb", "memory_bw_gbps", "tdp_w", "source", "note",
]  # fmt: skip

EPOCH = "accelerator_specs/epoch_ml_hardware.csv"
CPU_DCU = "server_cpu_dcu_specs/cpu_dcu_specs.csv"

# (Epoch "Hardware name", our model name, aliases, extra note)
ACCELERATORS = [
    ("NVIDIA H800 SXM5", "NVIDIA H800 SXM5", "h800;h800-sxm;h800-sxm5", ""),
    ("NVIDIA H100 SXM5 80GB", "NVIDIA H100 SXM5 80GB", "h100;h100-sxm;h100-sxm5", ""),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", "h100-pcie", ""),
    ("NVIDIA HGX H20", "NVIDIA H20", "h20;hgx-h20", ""),
    ("NVIDIA A800 SXM", "NVIDIA A800 SXM 80GB", "a800;a800-sxm;a800-80gb", ""),
    ("NVIDIA A800 PCIe 80 GB", "NVIDIA A800 PCIe 80GB", "a800-pcie", "memory size not in source row"),
    ("NVIDIA A100 SXM4 80 GB", "NVIDIA A100 SXM4 80GB", "a100-80gb;a100-sxm4-80gb;a100-80g", ""),
    ("NVIDIA A100 SXM4 40 GB", "NVIDIA A100 SXM4 40GB", "a100;a100-40gb;a100-sxm4-40gb;a100-40g", ""),
    ("NVIDIA A100 PCIe", "NVIDIA A100 PCIe 40GB", "a100-pcie;a100-pcie-40gb", ""),
    ("NVIDIA A10 PCIe", "NVIDIA A10", "a10;a10-pcie", "fp16 is the source's FP16 column (tensor figure not given)"),
    ("NVIDIA Tesla V100 SXM2 32 GB", "NVIDIA V100 SXM2 32GB", "v100;v100-sxm2;v100-32gb;tesla-v100", ""),
    ("NVIDIA L40", "NVIDIA L40", "l40", "L40S is not in the sources; only L40 is catalogued"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", "rtx4090;rtx-4090;4090", ""),
    ("Huawei Ascend 910B", "Huawei Ascend 910B", "910b;ascend-910b;ascend910b",
     "fp16 is the source's FP16 column (cube unit); memory 32 GB as in the source row (910B1-B3 rows say 64 GB)"),
    ("Huawei Ascend 910", "Huawei Ascend 910", "910;ascend-910;ascend910;910a;ascend-910a", ""),
    ("Cambricon MLU370-X8", "Cambricon MLU370-X8", "mlu370;mlu370-x8", "fp16 is the source's FP16 column"),
    ("Baidu Kunlun R200 (150W)", "Kunlunxin R200", "kunlun-r200;r200", "fp16 is the source's FP16 column"),
]

EPOCH_FIELDS = {
    "fp64_tflops": "FP64 (double precision) performance (FLOP/s)",
    "fp32_tflops": "FP32 (single precision) performance (FLOP/s)",
    "int8_tops": "INT8 performance (OP/s)",
    "tdp_w": "TDP (W)",
}
TENSOR_FP16 = "Tensor-FP16/BF16 performance (FLOP/s)"
PLAIN_FP16 = "FP16 (half precision) performance (FLOP/s)"

# Fixed FP16:FP32 ratio used to derive a missing FP32 figure: the 4:1 ratio of the Ascend 910B,
# MLU370-X8 and Kunlun R200 rows of the same table (their FP16 and FP32 columns are both given).
FP16_PER_FP32 = Decimal(4)

# CPU FLOPs per cycle per core at base clock, (fp64, fp32), from the vector units of each microarchitecture.
CPUS = {
    "Kunpeng 920-6426": ("Huawei Kunpeng 920-6426", "kunpeng-920;kunpeng920;kunpeng;920-6426", (8, 16),
                         "2 x 128-bit NEON FMA pipes assumed (TaiShan v110; not stated by the source)"),
    "EPYC 9654": ("AMD EPYC 9654", "epyc-9654;epyc9654;genoa", (16, 32),
                  "Zen 4: AVX-512 executed on 2 x 256-bit FMA pipes"),
    "Xeon Platinum 8480+": ("Intel Xeon Platinum 8480+", "xeon-8480+;xeon-platinum-8480+;8480+;spr-8480",
                            (32, 64), "Sapphire Rapids: 2 x 512-bit FMA units; AVX-512 clocks run below base"),
}
DCUS = {"DCU K100": ("Hygon DCU K100", "k100;dcu-k100;hygon-k100"),
        "DCU K100 AI": ("Hygon DCU K100 AI", "k100-ai;k100ai;dcu-k100-ai;hygon-k100-ai"),
        "DCU BW200": ("Hygon DCU BW200", "bw200;dcu-bw200;hygon-bw200")}

GENERIC_CORE = {
    "model": "cpu-core", "aliases": "generic;generic-cpu;cpu", "vendor": "generic", "kind": "cpu",
    "cores": "1", "clock_ghz": "2.5", "fp64_tflops": "0.02", "fp32_tflops": "0.04",
    "source": "suanwang definition (docs/units.md)",
    "note": "fallback for unknown CPUs: one core at 2.5 GHz x 16 FP32 FLOPs/cycle (one 256-bit FMA pipe); "
            "deliberately below every catalogued server core",
}  # fmt: skip


def tera(value: str) -> str:
    """FLOP/s (or bytes) as written in the Epoch table -> a plain decimal string in units of 1e12."""
    return _plain(Decimal(value) / Decimal(10**12)) if value else ""


def giga(value: str) -> str:
    return _plain(Decimal(value) / Decimal(10**9)) if value else ""


def _plain(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text


def epoch_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        records = list(csv.DictReader(f))
    index = {r["Hardware name"]: (n, r) for n, r in enumerate(records, start=1)}
    return [_epoch_row(index, *entry) for entry in ACCELERATORS]


def _epoch_row(index: dict, name: str, model: str, aliases: str, note: str) -> dict[str, str]:
    n, r = index[name]
    row = {"model": model, "aliases": aliases, "vendor": r["Manufacturer"], "kind": "accelerator"}
    row |= {ours: (tera(r[theirs]) if ours != "tdp_w" else _plain(Decimal(r[theirs]))) if r[theirs] else ""
            for ours, theirs in EPOCH_FIELDS.items()}
    row["fp16_tflops"] = tera(r[TENSOR_FP16] or r[PLAIN_FP16])
    row["memory_gb"] = giga(r["Memory (bytes)"])
    row["memory_bw_gbps"] = giga(r["Memory bandwidth (byte/s)"])
    notes = [note] if note else []
    if r[TENSOR_FP16]:
        notes.append("fp16 is tensor FP16/BF16 dense")
    if not row["fp32_tflops"] and row["fp16_tflops"]:
        row["fp32_tflops"] = _plain(Decimal(row["fp16_tflops"]) / FP16_PER_FP32)
        notes.append("fp32 derived as fp16 / 4 (the 910B/MLU370/R200 ratio of the same table); not in source")
    row["source"] = f"{EPOCH} record {n} '{name}'"
    row["note"] = "; ".join(notes)
    return row


def cpu_dcu_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    rows = []
    for n, r in enumerate(records, start=1):
        source = f"{CPU_DCU} record {n} '{r['model']}' (upstream: {r['source']})"
        if r["model"] in DCUS:
            rows.append(_dcu_row(r, *DCUS[r["model"]], source))
        elif r["model"] in CPUS:
            rows.append(_cpu_row(r, *CPUS[r["model"]], source))
    return rows


def _dcu_row(r: dict, model: str, aliases: str, source: str) -> dict[str, str]:
    return {"model": model, "aliases": aliases, "vendor": r["vendor"], "kind": "accelerator",
            "fp64_tflops": r["fp64_TFLOPS"], "fp32_tflops": r["fp32_TFLOPS"], "fp16_tflops": r["fp16_TFLOPS"],
            "int8_tops": r["int8_TOPS"], "memory_gb": r["memory_GB"], "memory_bw_gbps": r["memory_bw_GBps"],
            "tdp_w": r["tdp_W"], "source": source, "note": r["note"]}  # fmt: skip


def _cpu_row(r: dict, model: str, aliases: str, per_cycle: tuple[int, int], why: str, source: str) -> dict:
    cores, ghz = int(r["cores"]), Decimal(r["base_clock_GHz"])
    fp64, fp32 = (Decimal(cores) * ghz * k / 1000 for k in per_cycle)
    tdp = r["tdp_W"].split()[0]
    note = (f"fp64/fp32 derived: {cores} cores x {ghz} GHz base x {per_cycle[0]}/{per_cycle[1]} FLOPs/cycle "
            f"(fp64/fp32); {why}; chip totals (per core = /cores)")
    if tdp != r["tdp_W"]:
        note += f"; source TDP '{r['tdp_W']}', first figure used"
    return {"model": model, "aliases": aliases, "vendor": r["vendor"], "kind": "cpu", "cores": str(cores),
            "clock_ghz": _plain(ghz), "fp64_tflops": _plain(fp64), "fp32_tflops": _plain(fp32),
            "tdp_w": tdp, "source": source, "note": note}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "src/suanwang/data/devices.csv")
    args = parser.parse_args()
    rows = epoch_rows(args.data / EPOCH) + cpu_dcu_rows(args.data / CPU_DCU) + [GENERIC_CORE]
    with args.out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} devices to {args.out}")


if __name__ == "__main__":
    main()
