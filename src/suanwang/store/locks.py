"""PostgreSQL advisory locks scoped to this platform's schema.

An advisory lock key is shared by the whole database, so two platforms in separate schemas of one
database (a staging and a production schema, or tests in scratch schemas) would otherwise take each
other's scheduling, sealing, settlement and migration locks.  Each lock is the two-key form
``(key, hash of current_schema())``; a hash collision between two schemas only serialises them.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import TextClause, text

_KEYS: Final = "CAST(:k AS integer), hashtext(coalesce(current_schema(), ''))"

TRY_XACT: Final[TextClause] = text(f"SELECT pg_try_advisory_xact_lock({_KEYS})")
XACT: Final[TextClause] = text(f"SELECT pg_advisory_xact_lock({_KEYS})")
XACT_SHARED: Final[TextClause] = text(f"SELECT pg_advisory_xact_lock_shared({_KEYS})")
SESSION: Final[TextClause] = text(f"SELECT pg_advisory_lock({_KEYS})")
SESSION_UNLOCK: Final[TextClause] = text(f"SELECT pg_advisory_unlock({_KEYS})")
