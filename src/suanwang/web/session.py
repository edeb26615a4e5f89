"""The console's session cookie, CSRF tokens and security headers.

The browser keeps the pasted bearer token in one HttpOnly, SameSite=Strict cookie, sealed with an HMAC and an
expiry so a tampered or stale cookie is refused without a database read.  The token inside is still checked
against the token table on every request (``AuthState.lookup``, cached ≤ 1 s), so revoking the token ends the
session.  CSRF: a synchronizer token derived from the session (HMAC of the token's hash), sent in every form
and in htmx's ``X-CSRF-Token`` header; before sign-in a double-submit cookie guards the sign-in form.

The key comes from ``SUANWANG_SESSION_SECRET`` (set the same value on every replica); without it each process
draws its own, so a restart signs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

COOKIE = "sw_session"
PRE_CSRF = "sw_csrf"
LANG = "sw_lang"
MAX_AGE_S = 8 * 3600
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# ReDoc injects its styles as <style> elements and runs its search in a blob worker: that page alone allows both
REDOC_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "worker-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
             "frame-ancestors 'none'; form-action 'self'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store"}


def _key() -> bytes:
    configured = os.environ.get("SUANWANG_SESSION_SECRET", "")
    return configured.encode() if configured else _PROCESS_KEY


_PROCESS_KEY = secrets.token_bytes(32)


def _mac(*parts: str) -> str:
    return hmac.new(_key(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


def seal(token: str, *, now: float | None = None, max_age_s: int = MAX_AGE_S) -> str:
    """The cookie value: expiry, token (base64url) and their MAC."""
    expires = str(int((now if now is not None else time.time()) + max_age_s))
    body = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return f"{expires}.{body}.{_mac('session', expires, body)}"


def unseal(value: str | None, *, now: float | None = None) -> str | None:
    """The token in a cookie this process's key sealed and that has not expired, else None."""
    if not value or len(value) > 600 or value.count(".") != 2:
        return None
    expires, body, mac = value.split(".")
    if not expires.isdigit() or not hmac.compare_digest(mac, _mac("session", expires, body)):
        return None
    if int(expires) <= (now if now is not None else time.time()):
        return None
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def csrf_for(token: str) -> str:
    """The synchronizer token of a session: bound to its bearer token, useless to anyone without the cookie."""
    return _mac("csrf", hashlib.sha256(token.encode()).hexdigest())


def csrf_ok(token: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_for(token), sent or "")


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(24)
