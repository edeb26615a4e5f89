"""Market sessions: when a session's gate closes and which slots it clears (pure, times in UTC seconds).

Two kinds, as day-ahead power markets run them:

* **day-ahead** — one session per delivery day: 24 hourly slots of day D, gate at
  ``DAY_AHEAD_GATE_S`` (default 12:00 UTC) on day D-1.
* **intraday** — one session every ``INTRADAY_EVERY_S`` (15 min): quarter-hour slots from the gate
  for ``INTRADAY_HORIZON_SLOTS`` (4 h), gate at the quarter hour.

The lengths, gates and cadence are a :class:`Schedule` (platform settings); the defaults are above.

A session's id names its kind and gate (``da-2026-12-08``, ``id-2026-12-07T20:15``; with seconds,
``id-2026-12-07T20:15:10``, when the intraday cadence is not whole minutes), so two replicas
that compute the sessions due at the same instant compute the same ids: the claim row the store keeps
per session id is what makes the clear happen once.  Orders may be posted, amended and withdrawn while
``now < gate``; an order for a session whose gate has passed is refused (:func:`check_open`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from suanwang.errors import Conflict, InvalidSpec

DAY_S = 86_400
HOUR_S = 3_600
DAY_AHEAD_GATE_S = 12 * HOUR_S  # seconds after midnight UTC of the day before delivery
INTRADAY_EVERY_S = 900
INTRADAY_HORIZON_SLOTS = 16


@enum.unique
class SessionKind(enum.StrEnum):
    DAY_AHEAD = "day-ahead"  # hourly slots of the next day
    INTRADAY = "intraday"  # quarter-hour slots of the next hours


@dataclass(frozen=True, slots=True)
class Schedule:
    """When sessions run and how long their slots are (platform settings ``market_*``; the defaults are production's).

    * day-ahead: gate ``da_gate_s`` after midnight UTC of the day before delivery; ``DAY_S / da_slot_s`` slots;
    * intraday: a gate every ``intraday_every_s`` (on multiples of it since the epoch); delivery starts
      ``intraday_lead_s`` after the gate, ``intraday_slots`` slots of ``intraday_slot_s``.

    A test or a demo shortens them (a 10 s cadence, a 2-minute slot) to run a real session in seconds.
    """

    da_gate_s: int = DAY_AHEAD_GATE_S
    da_slot_s: int = HOUR_S
    intraday_every_s: int = INTRADAY_EVERY_S
    intraday_slot_s: int = INTRADAY_EVERY_S
    intraday_slots: int = INTRADAY_HORIZON_SLOTS
    intraday_lead_s: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("da_gate_s", 0, DAY_S), ("da_slot_s", 1, DAY_S), ("intraday_every_s", 1, DAY_S),
                                ("intraday_slot_s", 1, DAY_S), ("intraday_slots", 1, 1000),
                                ("intraday_lead_s", 0, DAY_S)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidSpec(f"market_{name}: must be an integer within {low}..{high}")
        if DAY_S % self.da_slot_s:
            raise InvalidSpec("market_da_slot_s: must divide a day (86400 s)")

    @property
    def intraday_id_format(self) -> str:
        """Minutes in ids on a whole-minute cadence (production's ids); seconds otherwise, so short
        cadences never give two sessions one id."""
        return "%Y-%m-%dT%H:%M" if self.intraday_every_s % 60 == 0 else "%Y-%m-%dT%H:%M:%S"


DEFAULT_SCHEDULE = Schedule()


@dataclass(frozen=True, slots=True)
class Session:
    """One call auction: orders for ``[first_slot_at, first_slot_at + slots * slot_s)`` clear at ``gate_at``."""

    id: str
    kind: SessionKind
    gate_at: float
    first_slot_at: float
    slot_s: int
    slots: int

    def slot_start(self, slot: int) -> float:
        return self.first_slot_at + slot * self.slot_s

    def slot_of(self, at: float) -> int:
        """The slot that contains instant ``at`` (may be outside ``0..slots-1``)."""
        return int((at - self.first_slot_at) // self.slot_s)

    @property
    def end_at(self) -> float:
        return self.first_slot_at + self.slots * self.slot_s


def _iso(at: float, fmt: str) -> str:
    return datetime.fromtimestamp(at, UTC).strftime(fmt)


def day_ahead(delivery_day_start: float, *, gate_s: int | None = None,
              schedule: Schedule = DEFAULT_SCHEDULE) -> Session:
    """The day-ahead session delivering the UTC day that starts at ``delivery_day_start``."""
    if delivery_day_start % DAY_S:
        raise InvalidSpec("a delivery day starts at midnight UTC")
    gate = schedule.da_gate_s if gate_s is None else gate_s
    return Session(f"da-{_iso(delivery_day_start, '%Y-%m-%d')}", SessionKind.DAY_AHEAD,
                   delivery_day_start - DAY_S + gate, delivery_day_start, schedule.da_slot_s,
                   DAY_S // schedule.da_slot_s)


def intraday(gate_at: float, *, schedule: Schedule = DEFAULT_SCHEDULE) -> Session:
    """The intraday session whose gate is ``gate_at`` (a multiple of the cadence)."""
    if gate_at % schedule.intraday_every_s:
        raise InvalidSpec(f"an intraday gate is on a multiple of {schedule.intraday_every_s} s")
    return Session(f"id-{_iso(gate_at, schedule.intraday_id_format)}", SessionKind.INTRADAY, gate_at,
                   gate_at + schedule.intraday_lead_s, schedule.intraday_slot_s, schedule.intraday_slots)


def open_sessions(now: float, *, gate_s: int | None = None, schedule: Schedule = DEFAULT_SCHEDULE) -> list[Session]:
    """Sessions taking orders at ``now``: the next day-ahead and the next intraday session."""
    day = now - now % DAY_S
    da = day_ahead(day + DAY_S, gate_s=gate_s, schedule=schedule)
    if da.gate_at <= now:
        da = day_ahead(day + 2 * DAY_S, gate_s=gate_s, schedule=schedule)
    every = schedule.intraday_every_s
    return [da, intraday(now - now % every + every, schedule=schedule)]


def due_sessions(now: float, since: float, *, gate_s: int | None = None,
                 schedule: Schedule = DEFAULT_SCHEDULE) -> list[Session]:
    """Sessions whose gate closed in ``(since, now]``, oldest first: what the control loop must clear.

    A replica that was down computes the ones it missed; the claim row makes each clear happen once.
    """
    if now - since > 7 * DAY_S:
        since = now - 7 * DAY_S  # a week back is as far as a restart looks
    out: list[Session] = []
    every = schedule.intraday_every_s
    gate = since - since % every + every
    while gate <= now:
        out.append(intraday(gate, schedule=schedule))
        gate += every
    gate_of_day = schedule.da_gate_s if gate_s is None else gate_s
    day = since - since % DAY_S
    while day - DAY_S + gate_of_day <= now:
        session = day_ahead(day, gate_s=gate_s, schedule=schedule)
        if since < session.gate_at <= now:
            out.append(session)
        day += DAY_S
    return sorted(out, key=lambda s: (s.gate_at, s.id))


def check_open(session: Session, now: float) -> None:
    """Raise Conflict (409) once the gate has closed: orders are frozen for the clear."""
    if now >= session.gate_at:
        raise Conflict(f"session {session.id}: the gate closed at "
                       f"{_iso(session.gate_at, '%Y-%m-%dT%H:%M:%SZ')}; orders can no longer change")


def check_window(session: Session, start_at: float, end_at: float) -> tuple[int, int]:
    """An order's window ``[start_at, end_at)`` as slots of the session; InvalidSpec naming the field."""
    if not end_at > start_at:
        raise InvalidSpec("window: end must be after start")
    if start_at < session.first_slot_at or end_at > session.end_at:
        raise InvalidSpec(f"window: must lie within the session's delivery period "
                          f"{_iso(session.first_slot_at, '%Y-%m-%dT%H:%M')}..{_iso(session.end_at, '%H:%M')}Z")
    if (start_at - session.first_slot_at) % session.slot_s or (end_at - session.first_slot_at) % session.slot_s:
        raise InvalidSpec(f"window: start and end must be on slot boundaries ({session.slot_s} s)")
    return session.slot_of(start_at), session.slot_of(end_at)


def delivery_window(session: Session, start_slot: int, end_slot: int) -> tuple[datetime, datetime]:
    at = datetime.fromtimestamp(session.slot_start(start_slot), UTC)
    return at, at + timedelta(seconds=(end_slot - start_slot) * session.slot_s)


def session_by_id(session_id: object, schedule: Schedule = DEFAULT_SCHEDULE) -> Session:
    """The session an id names under ``schedule``; InvalidSpec naming ``session``.

    Only canonical ids are accepted (the id the session's own constructor gives): two spellings of one
    session would otherwise be two books and two clears.
    """
    text = session_id if isinstance(session_id, str) else ""
    try:
        session: Session | None = None
        if text.startswith("da-") and len(text) == 13:
            day = datetime.strptime(text[3:], "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
            session = day_ahead(day, schedule=schedule)
        elif text.startswith("id-") and len(text) in (19, 22):
            fmt = "%Y-%m-%dT%H:%M" if len(text) == 19 else "%Y-%m-%dT%H:%M:%S"
            session = intraday(datetime.strptime(text[3:], fmt).replace(tzinfo=UTC).timestamp(), schedule=schedule)
        if session is not None and session.id == text:
            return session
    except (ValueError, OverflowError, InvalidSpec):
        pass
    raise InvalidSpec(f"session: not a session id: {str(session_id)[:40]!r} (da-YYYY-MM-DD or "
                      f"id-{schedule.intraday_id_format.replace('%', '')}, intraday on a multiple of "
                      f"{schedule.intraday_every_s} s)")
