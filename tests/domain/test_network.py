from __future__ import annotations

import math

import pytest

from suanwang.domain.grid import Link
from suanwang.domain.network import Network, transfer_time_s
from suanwang.errors import InvalidSpec


def net() -> Network:
    return Network(["a", "b", "c", "d", "e"], [
        Link("a", "b", 5.0, 100.0), Link("b", "c", 5.0, 10.0), Link("a", "c", 30.0, 400.0, direct=True),
        Link("c", "d", 1.0, 400.0),
    ])


def test_shortest_path_sums_latency_and_takes_the_bottleneck_bandwidth() -> None:
    p = net().path("a", "d")
    assert p.sites == ("a", "b", "c", "d")
    assert p.latency_ms == pytest.approx(11.0)
    assert p.bandwidth_gbps == pytest.approx(10.0)
    assert not p.direct


def test_transfer_time_is_latency_plus_size_over_bandwidth() -> None:
    assert transfer_time_s(10.0, 20.0, 100.0) == pytest.approx(0.02 + 0.8)
    assert net().transfer_s("a", "c", 10.0) == pytest.approx(0.01 + 80 / 10.0)
    assert net().transfer_s("a", "a", 1000.0) == 0.0


def test_direct_link_wins_when_it_is_shorter() -> None:
    n = Network(["a", "b", "c"], [Link("a", "b", 10.0, 100.0), Link("b", "c", 10.0, 100.0),
                                  Link("a", "c", 12.0, 200.0, direct=True)])
    p = n.path("a", "c")
    assert p.direct and p.sites == ("a", "c") and p.bandwidth_gbps == 200.0


def test_unreachable_sites_have_infinite_latency_and_transfer_time() -> None:
    n = net()
    assert math.isinf(n.latency("a", "e"))
    assert math.isinf(n.transfer_s("a", "e", 1.0))
    assert math.isinf(n.transfer_row("a", 1.0)[n.index["e"]])


def test_a_link_to_an_unknown_site_is_rejected() -> None:
    with pytest.raises(InvalidSpec, match="unknown site z"):
        Network(["a"], [Link("a", "z", 1.0, 1.0)])
