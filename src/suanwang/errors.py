"""Error hierarchy.  Adapters map these to HTTP status codes in one table.

    SuanwangError
    ├── DomainError            invalid input or a rule of the core was broken (4xx)
    │   ├── InvalidSpec        a job, site, pool or file is malformed (422)
    │   ├── IllegalTransition  a job state change the lifecycle forbids (409)
    │   ├── Unplaceable        no pool could ever run the job (422)
    │   ├── Conflict           the request clashes with current state (409)
    │   └── InsufficientFunds  wallet and credit cannot cover a hold (402)
    ├── NotFound               unknown id, or another tenant's id (404)
    ├── Forbidden              the token's role may not do this (403)
    └── StoreError             the database refused or could not answer; the store translates its driver's
        │                      errors into these (``store.db.translate_errors``), so no service sees sqlalchemy's
        ├── StoreConflict      a unique key another writer stored meanwhile: re-read and retry (409)
        ├── StoreBusy          a deadlock, serialization failure or held lock: retry the transaction (503)
        └── StoreUnavailable   the database cannot be reached (503)
"""

from __future__ import annotations


class SuanwangError(Exception):
    """Root of every error suanwang raises on purpose."""

    status_code = 400
    code = "error"

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.fields!r})"


class DomainError(SuanwangError):
    status_code = 422
    code = "invalid"


class InvalidSpec(DomainError):
    status_code = 422
    code = "invalid_spec"


class IllegalTransition(DomainError):
    status_code = 409
    code = "illegal_transition"


class Unplaceable(DomainError):
    status_code = 422
    code = "unplaceable"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class InsufficientFunds(DomainError):
    status_code = 402
    code = "insufficient_funds"


class NotFound(SuanwangError):
    status_code = 404
    code = "not_found"


class Forbidden(SuanwangError):
    status_code = 403
    code = "forbidden"


class StoreError(SuanwangError):
    status_code = 503
    code = "store_error"


class StoreConflict(StoreError):
    status_code = 409
    code = "conflict"


class StoreBusy(StoreError):
    status_code = 503
    code = "busy"


class StoreUnavailable(StoreError):
    status_code = 503
    code = "unavailable"
