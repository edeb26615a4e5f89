"""The one exception the SDK raises for a refused request: the API's status, code and message."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A 4xx or 5xx answer: ``status`` (HTTP), ``code`` (``not_found``, ``invalid_spec``, ...), ``message``."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"


def raise_for(status: int, text: str, data: Any) -> None:
    if status < 400:
        return
    if isinstance(data, dict):
        raise ApiError(status, str(data.get("error", "error")), str(data.get("detail", text)), data)
    raise ApiError(status, "error", text[:2000])
