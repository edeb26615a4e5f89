"""Standard compute units: catalogue lookup, SCU arithmetic and its properties."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.units import (
    GENERIC_CPU,
    SCALE,
    DeviceKind,
    from_pflops,
    load_catalog,
    pool_capacity_scu_per_hour,
    scu_per_hour,
    speed_factor,
    to_pflops,
    usage_units,
)
from suanwang.errors import InvalidSpec

seconds = st.floats(min_value=0, max_value=1e8, allow_nan=False, allow_infinity=False)
whole_seconds = st.integers(min_value=0, max_value=10**9)
devices = st.sampled_from(["h800", "a10", "ascend-910b", "k100-ai", "mlu370", "rtx4090"])
cpus = st.sampled_from(["", "kunpeng-920", "epyc-9654", "xeon-8480+", "no-such-cpu"])


def card_hour(model: str) -> Decimal:
    return usage_units(core_seconds=0, device_seconds=3600, device_model=model)


# ---------------------------------------------------------------- catalogue


def test_catalog_has_the_devices_a_chinese_network_sells():
    catalog = load_catalog()
    for name in ["H800", "H100", "H20", "A800", "A100-80GB", "A100-40GB", "A10", "V100", "L40", "RTX 4090",
                 "Ascend 910B", "Ascend 910", "K100", "K100 AI", "MLU370-X8", "Kunpeng 920", "EPYC 9654",
                 "Xeon 8480+", GENERIC_CPU]:  # fmt: skip
        assert catalog.get(name).fp32_tflops is not None, name


@pytest.mark.parametrize("name", ["h800", "H800", "NVIDIA H800 SXM5", "nvidia-h800-sxm5", "h800 sxm5"])
def test_lookup_ignores_case_punctuation_and_vendor(name):
    assert load_catalog().get(name).model == "NVIDIA H800 SXM5"


def test_ascend_aliases_resolve_to_the_910b_not_the_910():
    catalog = load_catalog()
    assert catalog.get("ascend-910b").model == "Huawei Ascend 910B"
    assert catalog.get("Ascend 910").model == "Huawei Ascend 910"


def test_every_row_cites_its_source_and_derived_figures_say_how():
    for spec in load_catalog().specs:
        assert spec.source, spec.model
        if spec.kind is DeviceKind.CPU and spec.model != GENERIC_CPU:
            assert "derived" in spec.note


def test_unknown_device_model_raises_naming_it():
    with pytest.raises(InvalidSpec, match="quantum-toaster-9000"):
        load_catalog().get("quantum-toaster-9000")
    with pytest.raises(InvalidSpec, match="quantum-toaster-9000"):
        usage_units(core_seconds=0, device_seconds=1, device_model="quantum-toaster-9000")


def test_default_catalog_is_cached():
    assert load_catalog() is load_catalog()


def test_user_csv_catalog_adds_devices(tmp_path: Path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "model,aliases,kind,cores,fp32_tflops,source\n"
        "Acme X1,x1;acme-x1,accelerator,,10,vendor sheet\n"
        "cpu-core,,cpu,1,0.05,site measurement\n"
        "Acme CPU,,cpu,10,2,vendor sheet\n"
    )
    catalog = load_catalog(path)
    assert catalog.models() == ["Acme X1", "cpu-core", "Acme CPU"]
    assert usage_units(core_seconds=0, device_seconds=3600, device_model="x1", catalog=catalog) == Decimal("10")
    assert usage_units(core_seconds=3600, device_seconds=0, cpu_model="acme cpu", catalog=catalog) == Decimal("0.2")
    assert usage_units(core_seconds=3600, device_seconds=0, catalog=catalog) == Decimal("0.05")


def test_user_csv_missing_required_columns_is_rejected(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("model,kind\nX,accelerator\n")
    with pytest.raises(InvalidSpec, match="fp32_tflops"):
        load_catalog(path)


def test_user_csv_with_a_name_claimed_twice_is_rejected(tmp_path: Path):
    path = tmp_path / "dup.csv"
    path.write_text("model,aliases,kind,fp32_tflops\nA,x,accelerator,1\nB,x,accelerator,2\n")
    with pytest.raises(InvalidSpec, match="claimed by both"):
        load_catalog(path)


# ---------------------------------------------------------------- the unit


def test_h800_card_hour_is_worth_more_than_an_a10_card_hour():
    assert card_hour("h800") > card_hour("a10") > 0


def test_cpu_core_hour_is_worth_far_fewer_units_than_a_card_hour():
    core_hour = usage_units(core_seconds=3600, device_seconds=0, cpu_model="epyc-9654")
    assert core_hour * 100 < card_hour("a10")
    assert core_hour * 100 < card_hour("ascend-910b")


def test_one_scu_is_one_tflops_hour_at_fp32():
    assert card_hour("h800") == Decimal("59.3")  # H800 SXM5 FP32 peak 59.3 TFLOPS (Epoch AI)
    assert usage_units(core_seconds=3600, device_seconds=0, cpu_model="epyc-9654") == Decimal("0.0768")


def test_cpu_scu_is_per_core():
    spec = load_catalog().get("epyc-9654")
    assert scu_per_hour(spec) * spec.cores == spec.fp32_tflops


def test_unknown_or_empty_cpu_model_is_metered_as_the_generic_core():
    generic = usage_units(core_seconds=3600, device_seconds=0)
    assert generic == scu_per_hour(load_catalog().get(GENERIC_CPU))
    assert usage_units(core_seconds=3600, device_seconds=0, cpu_model="Loongson 3A6000") == generic


def test_device_seconds_without_a_device_model_is_invalid():
    with pytest.raises(InvalidSpec, match="device model"):
        usage_units(core_seconds=10, device_seconds=10)


def test_cpu_named_as_device_is_invalid():
    with pytest.raises(InvalidSpec, match="not an accelerator"):
        usage_units(core_seconds=0, device_seconds=10, device_model="epyc-9654")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_negative_or_non_finite_seconds_are_invalid(bad):
    with pytest.raises(InvalidSpec):
        usage_units(core_seconds=bad, device_seconds=0)


def test_hpc_node_hour_is_its_cores_plus_its_cards():
    node = pool_capacity_scu_per_hour(cores=128, devices=8, cpu_model="kunpeng-920", device_model="910b")
    assert node == Decimal("128") * Decimal("0.0416") + 8 * Decimal("94")
    hour = usage_units(core_seconds=128 * 3600, device_seconds=8 * 3600, cpu_model="kunpeng-920",
                       device_model="910b")  # fmt: skip
    assert hour == node


def test_cpu_only_pool_needs_no_device_model():
    assert pool_capacity_scu_per_hour(cores=96, devices=0, cpu_model="epyc-9654", device_model="") == Decimal(
        "7.3728"
    )


def test_national_p_totals():
    assert to_pflops(Decimal(1000)) == 1
    eight_h800 = pool_capacity_scu_per_hour(cores=0, devices=8, cpu_model="", device_model="h800")
    assert to_pflops(eight_h800) == Decimal("0.4744")


def test_speed_factor_is_relative_to_the_a100_and_the_generic_core():
    assert speed_factor("a100-80gb") == 1.0
    assert speed_factor("h800") > 3
    assert speed_factor("", "") == 1.0
    assert speed_factor("", "xeon-8480+") == pytest.approx(0.128 / 0.04)


# ---------------------------------------------------------------- properties


@given(a=seconds, b=seconds, c=seconds, d=seconds, device=devices, cpu=cpus)
def test_units_are_additive_over_split_usage_within_the_rounding_scale(a, b, c, d, device, cpu):
    def units(core: float, dev: float) -> Decimal:
        return usage_units(core_seconds=core, device_seconds=dev, cpu_model=cpu, device_model=device)

    whole = usage_units(core_seconds=float(Decimal(repr(a)) + Decimal(repr(b))), device_seconds=float(
        Decimal(repr(c)) + Decimal(repr(d))), cpu_model=cpu, device_model=device)  # fmt: skip
    assert abs(units(a, c) + units(b, d) - whole) <= 2 * SCALE


@given(a=whole_seconds, b=whole_seconds, device=devices)
def test_units_are_exactly_additive_over_whole_hours(a, b, device):
    def units(hours: int) -> Decimal:
        return usage_units(core_seconds=hours * 3600, device_seconds=hours * 3600, device_model=device)

    assert units(a) + units(b) == units(a + b)


@given(s=seconds, extra=seconds, device=devices, cpu=cpus)
def test_units_are_monotone_in_seconds(s, extra, device, cpu):
    less = usage_units(core_seconds=s, device_seconds=s, cpu_model=cpu, device_model=device)
    more_cores = usage_units(core_seconds=s + extra, device_seconds=s, cpu_model=cpu, device_model=device)
    more_cards = usage_units(core_seconds=s, device_seconds=s + extra, cpu_model=cpu, device_model=device)
    assert 0 <= less <= more_cores
    assert less <= more_cards


@given(s=seconds, device=devices, cpu=cpus)
def test_units_are_never_negative_and_keep_the_fixed_scale(s, device, cpu):
    units = usage_units(core_seconds=s, device_seconds=s, cpu_model=cpu, device_model=device)
    assert isinstance(units, Decimal)
    assert units >= 0
    assert units.as_tuple().exponent == SCALE.as_tuple().exponent


@given(device=devices, cpu=cpus)
def test_zero_usage_is_zero_units(device, cpu):
    assert usage_units(core_seconds=0, device_seconds=0, cpu_model=cpu, device_model=device) == 0


@given(st.decimals(min_value=0, max_value=10**12, places=6, allow_nan=False, allow_infinity=False))
def test_pflops_conversion_round_trips(scu):
    assert from_pflops(to_pflops(scu)) == scu
    assert to_pflops(from_pflops(scu)) == scu


@given(cores=st.integers(0, 10_000), cards=st.integers(0, 1_000), device=devices, cpu=cpus)
def test_an_hour_at_full_capacity_is_the_capacity(cores, cards, device, cpu):
    capacity = pool_capacity_scu_per_hour(cores=cores, devices=cards, cpu_model=cpu, device_model=device)
    used = usage_units(core_seconds=cores * 3600, device_seconds=cards * 3600, cpu_model=cpu, device_model=device)
    assert used == capacity


def test_driver_names_map_onto_catalog_models() -> None:
    from suanwang.domain.units import load_catalog

    catalog = load_catalog()
    seen = {name: (catalog.find(name).model if catalog.find(name) else None) for name in [
        "NVIDIA H800", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "AMD EPYC 9654 96-Core Processor"]}
    assert seen == {"NVIDIA H800": "NVIDIA H800 SXM5", "NVIDIA H100 80GB HBM3": "NVIDIA H100 SXM5 80GB",
                    "NVIDIA A100-SXM4-80GB": "NVIDIA A100 SXM4 80GB",
                    "AMD EPYC 9654 96-Core Processor": "AMD EPYC 9654"}
    # a prefix followed by a digit is another model: A10 must not swallow an unknown A100 variant
    found = catalog.find("NVIDIA A100 80GB PCIe")
    assert found is None or "A100" in found.model
