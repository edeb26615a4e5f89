"""One log line per event, as JSON for machines or plain text for a terminal.

A request id travels in a context variable: the API middleware sets it per
request (worker threads inherit it), the agent per call it makes, and every
line logged meanwhile carries it, so one id joins the agent's and the
platform's lines about the same call.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("suanwang_request_id", default=None)
HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# LogRecord attributes that are not extra fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str:
    """The caller's id when it is short and plain (it lands in logs and headers), else a new one."""
    return value if value and _SANE_ID.fullmatch(value) else new_request_id()


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra}``; a traceback goes in ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                line[key] = value  # nested dicts and lists stay JSON; anything else becomes its str()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}
        return text + ("  " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")


def configure_logging(log_format: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Send every logger (uvicorn's too) to ``stream`` (stderr) in one format; ``auto`` is JSON off a terminal."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "plain" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
