from __future__ import annotations

from pathlib import Path

import pytest

from suanwang.domain.scheduler import GridContext
from suanwang.errors import InvalidSpec
from suanwang.sim.grid_file import load_grid, parse_grid

GRID = Path(__file__).resolve().parents[2] / "src/suanwang/grids/east_data_west.yaml"

GOOD = """\
name: tiny
tou_profiles:
  flat: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
sites:
  - {name: a, region: r1, carbon_kg_per_kwh: 0.5}
  - {name: b, region: r2}
links:
  - {a: a, b: b, latency_ms: 10, bandwidth_gbps: 100}
pools:
  - {name: gpu, site: a, class: intelligent, device_model: A100, devices: 8, cores: 64, memory_gb: 512,
     price_fen: 3000, tou: flat}
"""


def test_a_good_file_loads_into_a_model_the_scheduler_accepts() -> None:
    g = parse_grid(GOOD)
    assert g.name == "tiny"
    assert g.model.pools[0].labels["region"] == "r1"
    assert g.model.signals[("a", "gpu")].price.fen_per_unit_hour == (3000,) * 24
    assert GridContext(g.model).network.latency("a", "b") == 10.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("b: b, latency_ms", "b: zz, latency_ms"), r"<grid>:8: link 1: field 'b' names unknown site 'zz'"),
        (("bandwidth_gbps: 100", "bandwidth_gbps: -5"), r"<grid>:8: link 1: field 'bandwidth_gbps' must be positive"),
        (("latency_ms: 10", "latency_ms: -1"), r"<grid>:8: link 1: field 'latency_ms' must not be negative"),
        (("site: a, class", "site: q, class"), r"<grid>:10: pool 1: field 'site' names unknown site 'q'"),
        (("class: intelligent", "class: magic"), r"<grid>:10: pool 1: 'magic' is not a valid ResourceClass"),
        (("tou: flat", "tou: nope"), r"<grid>:10: pool 1: field 'tou' names unknown profile 'nope'"),
        (("{name: b, region: r2}", "{name: b}"), r"<grid>:6: site 2: missing field 'region'"),
        (("price_fen: 3000", "price_fen: cheap"), r"<grid>:10: pool 1: field 'price_fen' must be"),
        (("devices: 8", "devices: 0"), r"<grid>:10: pool 1: pool gpu: an intelligent pool needs devices"),
    ],
)
def test_errors_name_the_line_and_the_field(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(InvalidSpec, match=message):
        parse_grid(GOOD.replace(old, new, 1))


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(InvalidSpec, match=r"<grid>:3: not valid YAML"):
        parse_grid("sites:\n  - {name: a\n  - b: [\n")


def test_missing_file_is_an_invalid_spec(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="cannot read grid file"):
        load_grid(tmp_path / "none.yaml")


def test_the_shipped_east_data_west_grid_loads() -> None:
    g = load_grid(GRID)
    sites = {s.name for s in g.model.sites}
    assert {"qingyang", "zhongwei", "guian", "horinger", "ulanqab", "wuhu", "beijing", "shanghai",
            "guangzhou"} == sites
    assert sum(p.capacity.devices for p in g.model.pools) == 10_412  # the Alibaba inventory's GPUs
    ctx = GridContext(g.model)
    assert ctx.network.latency("qingyang", "shanghai") < 25.0
