"""Sites, network links and pools: the shape of the grid as plain values.

Invariants owned here: coordinates are on Earth, bandwidth and capacity are
positive, a link joins two distinct sites, a pool's devices match its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suanwang.domain.packing import Sharing
from suanwang.domain.quantum import QuantumBackend
from suanwang.domain.resources import Engine, ResourceClass
from suanwang.errors import InvalidSpec

SiteId = str
NO_SHARING = Sharing()  # whole cards only
PoolId = str


@dataclass(frozen=True, slots=True)
class Site:
    """A place with compute: a data centre or cluster owner's location.

    ``green_share`` is the fraction (0..1) of its power from renewables;
    ``carbon_kg_per_kwh`` its grid emission factor.
    """

    name: SiteId
    region: str  # data-sovereignty region, e.g. "cn-northwest"
    province: str = ""
    lat: float = 0.0
    lon: float = 0.0
    green_share: float = 0.0
    carbon_kg_per_kwh: float = 0.0
    provider: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidSpec("site name must not be empty")
        if not -90 <= self.lat <= 90 or not -180 <= self.lon <= 180:
            raise InvalidSpec(f"site {self.name}: coordinates out of range", lat=self.lat, lon=self.lon)
        if not 0 <= self.green_share <= 1:
            raise InvalidSpec(f"site {self.name}: green_share must be within 0..1")
        if self.carbon_kg_per_kwh < 0:
            raise InvalidSpec(f"site {self.name}: carbon_kg_per_kwh must not be negative")


@dataclass(frozen=True, slots=True)
class Link:
    """A network path between two sites (direct east-west link or backbone)."""

    a: SiteId
    b: SiteId
    latency_ms: float
    bandwidth_gbps: float
    direct: bool = False  # 一跳直达: a dedicated direct link

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise InvalidSpec(f"link {self.a}-{self.b} joins a site to itself")
        if self.latency_ms < 0:
            raise InvalidSpec(f"link {self.a}-{self.b}: latency_ms must not be negative")
        if self.bandwidth_gbps <= 0:
            raise InvalidSpec(f"link {self.a}-{self.b}: bandwidth_gbps must be positive")


@dataclass(frozen=True, slots=True)
class Capacity:
    """Resources a pool offers (or a job asks for). Memory in GiB."""

    cores: int = 0
    memory_gb: float = 0.0
    devices: int = 0

    def __post_init__(self) -> None:
        if self.cores < 0 or self.memory_gb < 0 or self.devices < 0:
            raise InvalidSpec("capacity must not be negative", capacity=self)

    def fits_in(self, other: Capacity) -> bool:
        return self.cores <= other.cores and self.memory_gb <= other.memory_gb and self.devices <= other.devices

    def __add__(self, other: Capacity) -> Capacity:
        return Capacity(self.cores + other.cores, self.memory_gb + other.memory_gb, self.devices + other.devices)

    def __sub__(self, other: Capacity) -> Capacity:
        return Capacity(
            max(0, self.cores - other.cores),
            max(0.0, self.memory_gb - other.memory_gb),
            max(0, self.devices - other.devices),
        )


@dataclass(frozen=True, slots=True)
class Pool:
    """A homogeneous set of capacity at a site served by one engine.

    ``capacity`` is the whole pool; ``node`` the largest single node, which
    bounds what one (non-gang) job can get.  ``device_model`` is a key of the
    device catalog (``suanwang.domain.units``), or "" for CPU-only pools.
    """

    name: PoolId
    site: SiteId
    resource_class: ResourceClass
    engine: Engine
    capacity: Capacity
    device_model: str = ""
    device_memory_gb: float = 0.0
    cpu_model: str = ""
    tier: str = "standard"  # hardware tier of the grade, e.g. "flagship", "standard", "economy"
    node: Capacity | None = None
    labels: dict[str, str] = field(default_factory=dict)
    quantum: tuple[QuantumBackend, ...] = ()  # a quantum pool's backends (qubits, basis gates, coupling)
    sharing: Sharing = NO_SHARING  # whether and how its cards are shared among fractions (domain.packing)

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidSpec("pool name must not be empty")
        if self.resource_class is ResourceClass.QUANTUM and not self.quantum:
            raise InvalidSpec(f"pool {self.name}: a quantum pool declares its backends (qubits, basis gates)")
        if self.resource_class is ResourceClass.INTELLIGENT and self.capacity.devices <= 0:
            raise InvalidSpec(f"pool {self.name}: an intelligent pool needs devices")
        if self.sharing.shares and (self.capacity.devices <= 0 or self.device_memory_gb <= 0):
            raise InvalidSpec(f"pool {self.name}: shared cards need devices and their device_memory_gb")
        if self.capacity.devices > 0 and not self.device_model:
            raise InvalidSpec(f"pool {self.name}: devices need a device_model")

    @property
    def largest_node(self) -> Capacity:
        return self.node or self.capacity
