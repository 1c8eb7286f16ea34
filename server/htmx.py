"""The htmx vocabulary: what an htmx request says about itself, and the headers that answer it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import Response

# Each form names the slot its errors go to (`hx-headers='{"X-Error-Slot": "#error-3"}'`):
# the server never guesses it from the URL. A request that names none gets the page's own.
ERROR_SLOT_HEADER = "x-error-slot"
PAGE_ERROR_SLOT = "#page-error"
_SLOT = re.compile(r"#[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class HtmxDetails:
    """The htmx request headers, typed (htmx 4: `HX-Source` replaced htmx 2's `HX-Trigger`)."""

    request: bool = False
    target: str | None = None
    source: str | None = None
    current_url: str | None = None
    error_slot: str = PAGE_ERROR_SLOT

    @classmethod
    def of(cls, headers: Headers) -> HtmxDetails:
        if headers.get("hx-request") != "true":
            return cls()
        slot = headers.get(ERROR_SLOT_HEADER, "")
        return cls(
            request=True,
            target=headers.get("hx-target"),
            source=headers.get("hx-source"),
            current_url=headers.get("hx-current-url"),
            # Echoed back in HX-Retarget: only a plain id selector is taken.
            error_slot=slot if _SLOT.fullmatch(slot) else PAGE_ERROR_SLOT,
        )


def details(connection: HTTPConnection) -> HtmxDetails:
    return HtmxDetails.of(connection.headers)


def client_redirect(url: str) -> Response:
    """Sends htmx to `url` as a full navigation (fetch would follow a 303 by itself)."""
    return Response(status_code=200, headers={"HX-Redirect": url})


def retarget(response: Response, selector: str, swap: str = "innerHTML") -> Response:
    """Swap this response into `selector` instead of the request's own target."""
    response.headers["HX-Retarget"] = selector
    response.headers["HX-Reswap"] = swap
    return response
