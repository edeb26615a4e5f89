from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from suanwang.errors import InvalidSpec
from suanwang.sim.traces import load_alibaba_dlrm, load_azure_llm, load_csv, load_swf, with_placement_hints

DATA = Path(__file__).resolve().parents[2] / "src/suanwang/data"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(text)
    return p


def test_generic_csv_loads_every_documented_column(tmp_path: Path) -> None:
    p = write(tmp_path, "submit_s,duration_s,cores,devices,device_model,memory_gb,tenant,data_site,data_gb,"
                        "deadline_s,consumer_site,latency_ms_max,region,service_level,priority\n"
                        "10,3600,8,2,A100,64,acme,beijing,50,90000,shanghai,20,cn-east,spot,3\n"
                        "0,60,1,,,,,,,,,,,,\n")
    t = load_csv(p)
    assert len(t) == 2
    first, second = t.spec(0), t.spec(1)  # sorted by submit time
    assert second.device_model == "A100" and second.devices == 2 and second.data_gb == 50.0
    assert second.deadline == t.t0 + 90000 and second.latency_ms_max == 20.0 and second.priority == 3
    assert second.service_level.value == "spot" and t.job(1).tenant == "acme"
    assert first.devices == 0 and first.deadline is None and t.job(0).tenant == "default"


def test_missing_required_column_names_the_column_and_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"trace.csv:1: missing required column 'duration_s'"):
        load_csv(write(tmp_path, "submit_s,cores\n0,1\n"))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0,abc,1", r"trace.csv:3: column 'duration_s' is not a number"),
        ("0,0,1", r"trace.csv:3: column 'duration_s' out of range"),
        ("0,10,", r"trace.csv:3: column 'cores' is empty"),
        ("0,10,1.5", r"trace.csv:3: column 'cores' must be a whole number"),
        ("-5,10,1", r"trace.csv:3: column 'submit_s' out of range"),
        ("0,10,0", r"trace.csv:3: a job needs cores or devices"),
    ],
)
def test_bad_values_name_the_column_and_line(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        load_csv(write(tmp_path, f"submit_s,duration_s,cores\n0,10,1\n{row}\n"))


def test_swf_trace_loads_cpu_jobs_with_users_as_tenants() -> None:
    t = load_swf(DATA / "pwa_nasa_ipsc_1993_swf/NASA-iPSC-1993-3.1-cln.swf.gz", limit=500)
    assert len(t) == 500
    assert (t.devices == 0).all() and (t.cores >= 1).all() and (t.duration_s > 0).all()
    assert np.all(np.diff(t.submit_s) >= 0)
    assert t.job(0).tenant.startswith("user")


def test_alibaba_and_azure_traces_load_gpu_jobs() -> None:
    d = load_alibaba_dlrm(DATA / "alibaba_gpu_disagg_dlrm_2025/dlrm_trace_timed.csv", limit=300)
    assert len(d) == 300 and (d.devices > 0).any() and (d.duration_s > 0).all()
    a = load_azure_llm(DATA / "azure_llm_inference_2023/AzureLLMInferenceTrace_code.csv", limit=200)
    assert len(a) == 200 and (a.devices == 1).all() and a.submit_s[0] == 0.0


def test_placement_hints_are_deterministic_and_only_add_what_was_asked() -> None:
    t = load_swf(DATA / "pwa_nasa_ipsc_1993_swf/NASA-iPSC-1993-3.1-cln.swf.gz", limit=400)
    a = with_placement_hints(t, consumer_sites=["x", "y"], deadline_fraction=0.25, seed=4)
    b = with_placement_hints(t, consumer_sites=["x", "y"], deadline_fraction=0.25, seed=4)
    assert np.array_equal(a.consumer_site, b.consumer_site)
    share = np.mean(~np.isnan(a.deadline_s))
    assert 0.15 < share < 0.35
    assert all(math.isnan(x) for x in a.latency_ms_max)
    assert {a.spec(i).consumer_site for i in range(len(a))} == {"x", "y"}
