"""/metrics read as Prometheus reads it: the value of one sample of the exposition text."""

from __future__ import annotations

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float | None:
    """The sample `name` with exactly these labels, or None when it is not there."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def value(text: str, name: str, **labels: str) -> float:
    """Like `sample`, for a sample that must be there."""
    found = sample(text, name, **labels)
    assert found is not None, f"{name} {labels or ''} is not in /metrics"
    return found


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.status_code
    return response.text


async def when_idle(client: httpx.AsyncClient, timeout: float = 30.0) -> str:  # noqa: ASYNC109
    """/metrics once no generation runs any more (polled: they end on the server's thread)."""
    with anyio.fail_after(timeout):
        while True:
            text = await scrape(client)
            if value(text, "crossroads_generations_running") == 0:
                return text
            await anyio.sleep(0.05)
