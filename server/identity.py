"""Who a browser is: a signed, HttpOnly cookie, and the CSRF token derived from it."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, TimestampSigner

COOKIE_NAME = "crossroads_id"
COOKIE_MAX_AGE_S = 400 * 86400


class Identity:
    """Signs browser ids into cookies and derives one CSRF token per browser."""

    def __init__(self, secret: str) -> None:
        self._signer = TimestampSigner(secret, salt="crossroads.browser")
        self._csrf_key = hashlib.sha256(("csrf:" + secret).encode()).digest()

    def browser_id(self, cookie: str | None) -> str | None:
        """The browser id in a valid, unexpired cookie; None for a missing or tampered one."""
        if not cookie:
            return None
        try:
            value = self._signer.unsign(cookie, max_age=COOKIE_MAX_AGE_S)
        except BadSignature:
            return None
        return value.decode("ascii", "replace")

    def issue(self) -> tuple[str, str]:
        """A new browser id and its signed cookie value."""
        browser = secrets.token_urlsafe(18)
        return browser, self._signer.sign(browser).decode("ascii")

    def csrf_token(self, browser: str) -> str:
        # One token per browser, valid for every form: second tabs and the back button work.
        return hmac.new(self._csrf_key, browser.encode(), hashlib.sha256).hexdigest()[:40]

    def check_csrf(self, browser: str | None, token: str | None) -> bool:
        if not browser or not token:
            return False
        return hmac.compare_digest(self.csrf_token(browser), token)
