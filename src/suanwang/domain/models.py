"""Device-model sets: a job accepts any of several models ("V100 or T4"), or excludes some.

Names match the catalogue's way (case-insensitive, and a catalogue alias
matches its model: ``h100`` is ``NVIDIA H100 SXM5 80GB``), so a consumer
names a card as the catalogue or the site does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=4096)
def canonical(name: str) -> str:
    """The catalogue's model for ``name`` when it knows it, else the name itself, lower-cased."""
    from suanwang.domain.units import load_catalog

    found = load_catalog().find(name) if name else None
    return (found.model if found is not None else name).strip().lower()


def model_set_rule(accept: Sequence[str], exclude: Sequence[str], model: str) -> str | None:
    """Why a pool of device ``model`` is outside a job's accepted/excluded sets, or None."""
    if not accept and not exclude:
        return None
    have = canonical(model)
    if accept and have not in {canonical(m) for m in accept}:
        return f"device {model or 'none'}, job accepts only {' or '.join(accept)}"
    if exclude and have in {canonical(m) for m in exclude}:
        return f"device {model}, job excludes it"
    return None
