"""The one error an executor raises when its engine fails it.

Bad input (an unknown pool, a missing partition) is ``InvalidSpec``; an engine that
does not answer or refuses a well-formed request is ``EngineError``.  The agent retries
the second kind later and never blames the job for it.
"""

from __future__ import annotations

from suanwang.errors import SuanwangError


class EngineError(SuanwangError):
    """The site's engine (Slurm, Ray) failed or refused a request."""

    status_code = 503
    code = "engine_error"
