"""Market sessions: when a session's gate closes and which slots it clears (pure, times in UTC seconds).

Two kinds, as day-ahead power markets run them:

* **day-ahead** — one session per delivery day: 24 hourly slots of day D, gate at
  ``DAY_AHEAD_GATE_S`` (default 12:00 UTC) on day D-1.
* **intraday** — one session every ``INTRADAY_EVERY_S`` (15 min): quarter-hour slots from the next
  quarter hour after the gate for ``INTRADAY_HORIZON_SLOTS`` (4 h), gate at the quarter hour.

A session's id names its kind and gate (``da-2026-12-08``, ``id-2026-12-07T20:15``), so two replicas
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


def day_ahead(delivery_day_start: float, *, gate_s: int = DAY_AHEAD_GATE_S) -> Session:
    """The day-ahead session delivering the UTC day that starts at ``delivery_day_start``."""
    if delivery_day_start % DAY_S:
        raise InvalidSpec("a delivery day starts at midnight UTC")
    return Session(f"da-{_iso(delivery_day_start, '%Y-%m-%d')}", SessionKind.DAY_AHEAD,
                   delivery_day_start - DAY_S + gate_s, delivery_day_start, HOUR_S, 24)


def intraday(gate_at: float) -> Session:
    """The intraday session whose gate is the quarter hour ``gate_at``; delivery starts at the gate."""
    if gate_at % INTRADAY_EVERY_S:
        raise InvalidSpec("an intraday gate is on a quarter hour")
    return Session(f"id-{_iso(gate_at, '%Y-%m-%dT%H:%M')}", SessionKind.INTRADAY, gate_at, gate_at,
                   INTRADAY_EVERY_S, INTRADAY_HORIZON_SLOTS)


def open_sessions(now: float, *, gate_s: int = DAY_AHEAD_GATE_S) -> list[Session]:
    """Sessions taking orders at ``now``: the next day-ahead and the next intraday session."""
    day = now - now % DAY_S
    da = day_ahead(day + DAY_S, gate_s=gate_s)
    if da.gate_at <= now:
        da = day_ahead(day + 2 * DAY_S, gate_s=gate_s)
    nxt = now - now % INTRADAY_EVERY_S + INTRADAY_EVERY_S
    return [da, intraday(nxt)]


def due_sessions(now: float, since: float, *, gate_s: int = DAY_AHEAD_GATE_S) -> list[Session]:
    """Sessions whose gate closed in ``(since, now]``, oldest first: what the control loop must clear.

    A replica that was down computes the ones it missed; the claim row makes each clear happen once.
    """
    if now - since > 7 * DAY_S:
        since = now - 7 * DAY_S  # a week back is as far as a restart looks
    out: list[Session] = []
    gate = since - since % INTRADAY_EVERY_S + INTRADAY_EVERY_S
    while gate <= now:
        out.append(intraday(gate))
        gate += INTRADAY_EVERY_S
    day = since - since % DAY_S
    while day - DAY_S + gate_s <= now:
        session = day_ahead(day, gate_s=gate_s)
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


def session_by_id(session_id: object) -> Session:
    """The session an id names (``da-YYYY-MM-DD`` or ``id-YYYY-MM-DDTHH:MM``); InvalidSpec naming ``session``."""
    text = session_id if isinstance(session_id, str) else ""
    try:
        if text.startswith("da-") and len(text) == 13:
            day = datetime.strptime(text[3:], "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
            return day_ahead(day)
        if text.startswith("id-") and len(text) == 19:
            return intraday(datetime.strptime(text[3:], "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp())
    except (ValueError, InvalidSpec):
        pass
    raise InvalidSpec(f"session: not a session id: {str(session_id)[:40]!r} (da-YYYY-MM-DD or id-YYYY-MM-DDTHH:MM, "
                      "intraday on a quarter hour)")
