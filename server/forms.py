"""Posted forms: read safely, checked against the browser's CSRF token, answers validated."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request

from server import browser
from server.errors import Problem


async def form(request: Request) -> FormData:
    """The posted form, after the CSRF check."""
    try:
        data = await request.form()
    except (UnicodeDecodeError, ValueError, AssertionError):
        raise Problem(400, "That form could not be read", "Please try again.") from None
    token = data.get("csrf_token")
    if not browser.of(request).check_csrf(token if isinstance(token, str) else None):
        raise Problem(
            403, "This form has expired", "Reload the page and send it again; nothing was changed."
        )
    return data


def answer_text(raw: object, max_chars: int) -> str:
    """A typed answer, trimmed; empty, unreadable or too long ones are refused."""
    if not isinstance(raw, str) or not raw.strip():
        raise Problem(400, "Your answer is empty", "Write a few words, or pick a quick reply.")
    if "\x00" in raw or "\ufffd" in raw:
        raise Problem(
            400, "Your answer could not be read", "It contains characters that are not text."
        )
    text = raw.strip().replace("\r\n", "\n")
    if len(text) > max_chars:
        raise Problem(
            400,
            "Your answer is too long",
            f"Please keep it under {max_chars} characters (it has {len(text)}).",
        )
    return text
