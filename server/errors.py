"""The one error type a person sees: a status, a title, a message, and where it shows."""

from __future__ import annotations


class Problem(Exception):
    """An error page (or, for htmx, a fragment aimed at an error slot beside the form)."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        slot: str | None = None,
        retry_after: int | None = None,
        back_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.slot = slot
        self.retry_after = retry_after
        self.back_url = back_url

    def aimed_at(self, slot: str) -> Problem:
        """The same problem, shown in another error slot."""
        return Problem(
            self.status,
            self.title,
            self.message,
            slot=slot,
            retry_after=self.retry_after,
            back_url=self.back_url,
        )
