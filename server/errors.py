"""The one error type a person sees, and how every other refusal becomes one."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request

from server.journeys import NotOpen
from server.store import Conflict, Unavailable


class Problem(Exception):
    """An error page, or for htmx a fragment in the error slot the form names; the template
    is chosen by `status`."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        retry_after: int | None = None,
        back_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.retry_after = retry_after
        self.back_url = back_url


DATABASE_RETRY_S = 5
_HTTP_TITLES = {404: "Page not found", 405: "Method not allowed"}
_HTTP_MESSAGES = {
    404: "There is nothing at this address.",
    405: "This address does not accept that kind of request.",
}


def as_problem(request: Request, exc: Exception) -> Problem:
    """What the person is told about `exc`: a Problem as it is, the journey's refusals and
    Starlette's HTTP errors in the same words everywhere, anything else as a 500."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, NotOpen):
        if exc.exists:
            return Problem(409, "This step is not open yet", str(exc))
        return Problem(404, "Step not found", "This journey has no such step.")
    if isinstance(exc, Conflict):
        sid = request.path_params.get("sid")
        return Problem(
            409,
            "This question is not open",
            "It was already answered, or it has not been asked yet. Reload to see where you are.",
            back_url=f"/s/{sid}" if sid else None,
        )
    if isinstance(exc, Unavailable):
        # The database is away: nothing was saved, and the form keeps what was typed.
        return Problem(
            503,
            "Crossroads cannot reach its database",
            "What you just sent was not saved; it is still here. Please send it again shortly.",
            retry_after=DATABASE_RETRY_S,
        )
    if isinstance(exc, HTTPException):
        return Problem(
            exc.status_code,
            _HTTP_TITLES.get(exc.status_code, "Request refused"),
            _HTTP_MESSAGES.get(exc.status_code, str(exc.detail)),
        )
    return Problem(500, "Something went wrong", "Your answers so far are saved. Please try again.")
