"""Shared accelerators: packing fractions of cards without overcommitting, and without starving whole cards.

Why a module of its own: a card's share and its device memory are the two
things a fraction may never overcommit, and the one rule that keeps a stream
of small requests from holding every card forever (drain) must be the same in
the agent, the simulator and the benchmark.

Units.  A card's compute share is counted in integer milli-cards (``WHOLE`` =
1000), so sums are exact; device memory in MiB.  A request is either a
fraction (``0 < share < WHOLE``, one card) or whole cards (``share`` a
multiple of ``WHOLE``, that many free cards).  Sharing modes (``Sharing``)
say how the engine divides a card: time-slicing (any share, memory not
isolated), MPS (share as ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``) or MIG (only
the card's profiles, e.g. 1g.10gb = 1/7 of an A100 80GB).

Policy (``Packer.place``): fractions go best-fit, onto the busiest card that
still has room (share and memory), so whole cards stay free; whole-card
requests take wholly free cards.  **Drain**: a whole-card request that has
waited ``drain_after_s`` marks the cards it needs, least-used first, as
draining: no fraction is placed on them again, so they empty within the
longest remaining run time of the fractions on them.  A whole-card request
therefore starts within ``drain_after_s + max fraction run time`` of arriving
at the head of the whole-card queue (the bounded delay the tests check).  One
request drains at a time (the first to ask): drained cards idle while they
empty, so draining for every waiting request at once would idle the pool.

Fragmentation (``fragmentation``): the share of free capacity that a
whole-card request cannot use, ``1 - (wholly free cards x WHOLE) / free
share``; 0 when all free capacity is on empty cards, near 1 when every card
holds a sliver.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from suanwang.errors import InvalidSpec

WHOLE = 1000  # milli-cards in one card


@enum.unique
class SharingMode(enum.StrEnum):
    NONE = "none"  # whole cards only
    TIME_SLICING = "time-slicing"  # any share; the engine interleaves, device memory is not isolated
    MPS = "mps"  # NVIDIA MPS: a share of the SMs per client (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE)
    MIG = "mig"  # NVIDIA MIG: fixed hardware slices, one of the card's profiles


@dataclass(frozen=True, slots=True)
class MigProfile:
    name: str  # e.g. "1g.10gb"
    share: int  # milli-cards (a 1g slice of a 7-slice card: 142)
    memory_mib: int


@dataclass(frozen=True, slots=True)
class Sharing:
    mode: SharingMode = SharingMode.NONE
    profiles: tuple[MigProfile, ...] = ()  # MIG only
    min_share: int = 50  # the smallest fraction a pool hands out (5 % of a card)
    shards: int = 0  # Slurm: GRES shards per card on the pool's nodes (0: the pool's engine has no shards)

    def __post_init__(self) -> None:
        if self.mode is SharingMode.MIG and not self.profiles:
            raise InvalidSpec("MIG sharing needs the card's profiles")
        if not 1 <= self.min_share <= WHOLE:
            raise InvalidSpec(f"min_share must lie within 1..{WHOLE} milli-cards")
        if not 0 <= self.shards <= 10_000:
            raise InvalidSpec("shards per card must lie within 0..10000")

    @property
    def shares(self) -> bool:
        return self.mode is not SharingMode.NONE

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode.value, "min_share": self.min_share, "shards": self.shards,
                "profiles": [{"name": p.name, "share": p.share, "memory_mib": p.memory_mib} for p in self.profiles]}

    @classmethod
    def from_json(cls, raw: object) -> Sharing:
        """A pool's sharing as the site config, registration or store write it (None or {} for none)."""
        if not raw:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidSpec("sharing must be an object: mode, min_share, shards, profiles")
        try:
            mode = SharingMode(str(raw.get("mode", "none")))
        except ValueError:
            raise InvalidSpec(f"sharing.mode must be one of {', '.join(m.value for m in SharingMode)}") from None
        profiles = []
        for p in raw.get("profiles") or ():
            if not isinstance(p, dict):
                raise InvalidSpec("sharing.profiles: each is {name, share, memory_mib}")
            share, mem = p.get("share"), p.get("memory_mib")
            if not (isinstance(share, int) and 1 <= share <= WHOLE and isinstance(mem, int) and 1 <= mem <= 2**31):
                raise InvalidSpec(f"sharing.profiles: share 1..{WHOLE} milli-cards and memory_mib >= 1 (integers)")
            profiles.append(MigProfile(str(p.get("name", ""))[:40], share, mem))
        min_share, shards = raw.get("min_share", 50), raw.get("shards", 0)
        if not (isinstance(min_share, int) and isinstance(shards, int)):
            raise InvalidSpec("sharing.min_share and sharing.shards are integers")
        return cls(mode, tuple(profiles), min_share, shards)

    def granted(self, share: int, memory_mib: int) -> tuple[int, int] | None:
        """What a request is actually given under this mode (MIG rounds up to a profile), or None."""
        if share >= WHOLE:
            return (share, memory_mib) if share % WHOLE == 0 else None
        if self.mode is SharingMode.NONE:
            return None
        if self.mode is SharingMode.MIG:
            fits = [p for p in self.profiles if p.share >= share and p.memory_mib >= memory_mib]
            if not fits:
                return None
            best = min(fits, key=lambda p: (p.share, p.memory_mib))
            return best.share, best.memory_mib
        return max(share, self.min_share), memory_mib


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    share: int  # milli-cards: < WHOLE a fraction of one card, else a multiple of WHOLE
    memory_mib: int = 0  # device memory per card
    submitted: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, int) or self.share <= 0:
            raise InvalidSpec(f"request {self.id}: share must be a positive integer of milli-cards")
        if self.share > WHOLE and self.share % WHOLE:
            raise InvalidSpec(f"request {self.id}: more than one card must be whole cards")
        if self.memory_mib < 0:
            raise InvalidSpec(f"request {self.id}: memory must not be negative")

    @property
    def whole(self) -> bool:
        return self.share >= WHOLE


@dataclass
class Card:
    memory_mib: int
    used: int = 0  # milli-cards held
    mem_used: int = 0
    draining: str = ""  # the whole-card request this card is drained for: no fraction is placed here
    holders: dict[str, tuple[int, int]] = field(default_factory=dict)  # request id -> (share, memory)

    @property
    def free(self) -> int:
        return WHOLE - self.used

    @property
    def empty(self) -> bool:
        return self.used == 0


@dataclass(frozen=True, slots=True)
class Grant:
    request: str
    cards: tuple[int, ...]
    share: int  # per card
    memory_mib: int  # per card


class Packer:
    """One pool's cards: place and release requests; never more than a card's share or memory."""

    def __init__(self, cards: int, memory_mib: int, sharing: Sharing | None = None, *,
                 drain_after_s: float = 60.0, best_fit: bool = True, drain: bool = True) -> None:
        if cards < 1 or memory_mib < 1:
            raise InvalidSpec("a pool of shared cards needs cards and device memory")
        self.cards = [Card(memory_mib) for _ in range(cards)]
        self.sharing = sharing or Sharing(SharingMode.TIME_SLICING)
        self.drain_after_s = drain_after_s
        self.best_fit, self.drain = best_fit, drain
        self.grants: dict[str, Grant] = {}

    def place(self, req: Request, *, now: float) -> Grant | None:
        """Place ``req`` now if it fits (``None`` otherwise); a whole-card request that has waited
        ``drain_after_s`` drains cards for itself."""
        granted = self.sharing.granted(req.share, req.memory_mib)
        if granted is None:
            return None
        share, mem = granted
        if req.whole:
            return self._place_whole(req, share // WHOLE, mem, now)
        return self._place_fraction(req, share, mem)

    def _place_fraction(self, req: Request, share: int, mem: int) -> Grant | None:
        best, key = None, None
        for i, c in enumerate(self.cards):
            if c.draining or c.free < share or c.memory_mib - c.mem_used < mem:
                continue
            k = (c.free, i) if self.best_fit else (i,)  # best fit: the busiest card with room
            if key is None or k < key:
                best, key = i, k
        if best is None:
            return None
        return self._grant(req.id, (best,), share, mem)

    def _place_whole(self, req: Request, n: int, mem: int, now: float) -> Grant | None:
        if mem > self.cards[0].memory_mib:
            return None
        mine = [i for i, c in enumerate(self.cards) if c.empty and c.draining == req.id]  # drained for it
        empty = mine + [i for i, c in enumerate(self.cards) if c.empty and not c.draining]
        if len(empty) >= n:
            for c in self.cards:
                if c.draining == req.id:
                    c.draining = ""
            return self._grant(req.id, tuple(empty[:n]), WHOLE, mem or self.cards[0].memory_mib)
        others = any(c.draining and c.draining != req.id for c in self.cards)
        if self.drain and not others and now - req.submitted >= self.drain_after_s and n <= len(self.cards):
            held = sum(1 for c in self.cards if c.draining == req.id)
            free = [c for c in self.cards if not c.draining and c.empty]
            for c in free[:n - held]:  # hold the empty ones, or a fraction lands there
                c.draining = req.id
                held += 1
            busy = sorted((c.used, i) for i, c in enumerate(self.cards) if not c.draining and not c.empty)
            for _, i in busy[:max(0, n - held)]:  # then the least used: they empty soonest
                self.cards[i].draining = req.id
        return None

    def _grant(self, rid: str, cards: tuple[int, ...], share: int, mem: int) -> Grant:
        if rid in self.grants:
            raise InvalidSpec(f"request {rid} is already placed")
        for i in cards:
            c = self.cards[i]
            if c.used + share > WHOLE or c.mem_used + mem > c.memory_mib:
                raise AssertionError("packing would overcommit a card")  # unreachable: the callers checked
            c.used += share
            c.mem_used += mem
            c.holders[rid] = (share, mem)
        grant = Grant(rid, cards, share, mem)
        self.grants[rid] = grant
        return grant

    def release(self, rid: str) -> None:
        grant = self.grants.pop(rid)
        for i in grant.cards:
            c = self.cards[i]
            share, mem = c.holders.pop(rid)
            c.used -= share
            c.mem_used -= mem

    def forget(self, rid: str) -> None:
        """A waiting request went away (cancelled): the cards drained for it take fractions again."""
        for c in self.cards:
            if c.draining == rid:
                c.draining = ""

    # ---- measures ------------------------------------------------------------------------------
    def allocated_share(self) -> float:
        """Share of the pool's cards held, 0..1."""
        return sum(c.used for c in self.cards) / (WHOLE * len(self.cards))

    def fragmentation(self) -> float:
        return fragmentation(c.used for c in self.cards)


def fragmentation(used: Iterable[int]) -> float:
    """Share of free capacity a whole-card request cannot use (0: all free capacity on empty cards)."""
    free = whole = 0
    for u in used:
        free += WHOLE - u
        whole += WHOLE if u == 0 else 0
    return 0.0 if free == 0 else 1.0 - whole / free


def share_env(mode: SharingMode, cards: Iterable[int], share: int, *, mig_uuids: Iterable[str] = ()) -> dict[str, str]:
    """The environment an engine needs to hand a job its share (local executor).

    MPS: CUDA_VISIBLE_DEVICES and CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (enforced by the MPS server, which must run
    on the node).  MIG: CUDA_VISIBLE_DEVICES set to the MIG devices' UUIDs (enforced by the hardware).
    Time-slicing: CUDA_VISIBLE_DEVICES only; the share and memory are NOT enforced, only accounted.
    """
    ids = ",".join(str(c) for c in cards)
    if mode is SharingMode.MIG:
        uuids = ",".join(mig_uuids)
        if not uuids:
            raise InvalidSpec("a MIG share needs the MIG devices' UUIDs")
        return {"CUDA_VISIBLE_DEVICES": uuids}
    env = {"CUDA_VISIBLE_DEVICES": ids}
    if mode is SharingMode.MPS and share < WHOLE:
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, share * 100 // WHOLE))
    return env


def slurm_gres(share: int, shards_per_card: int) -> str:
    """The sbatch GRES for a share: whole cards as ``gpu:N``, a fraction as ``shard:K`` of the node's shards
    per card (Slurm's shard plugin counts shards, it does not limit the job's use of the card)."""
    if share >= WHOLE:
        return f"gpu:{share // WHOLE}"
    if shards_per_card < 1:
        raise InvalidSpec("shards_per_card must be at least 1")
    return f"shard:{max(1, -(-share * shards_per_card // WHOLE))}"
