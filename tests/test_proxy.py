"""The README's nginx snippet, run for real: a live scenario streams through it frame by frame."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from server.app import create_app
from server.children import ChildFailed
from server.cluster_servers import NginxProcess
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import ROOT, free_port, serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

SNIPPET = re.compile(
    r"<!-- nginx-snippet:start -->\s*```nginx\n(.*?)```\s*<!-- nginx-snippet:end -->", re.S
)
PROXY_PASS = re.compile(r"(proxy_pass\s+http://)[^;\s]+;")

CHUNKS = [f"w{i} " for i in range(60)]
CHUNK_DELAY_S = 0.05  # about 3 s of streaming
FIRST_DELAY_S = 1.2  # a stall before the first token, several heartbeats long
HEARTBEAT_S = 0.3


def readme_snippet(upstream: str) -> str:
    """The README's location block with only the upstream host:port replaced."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = SNIPPET.findall(readme)
    assert len(found) == 1, "README.md must hold exactly one nginx snippet between the markers"
    snippet, count = PROXY_PASS.subn(rf"\g<1>{upstream};", found[0])
    assert count == 1, "the README snippet must have exactly one proxy_pass http://...;"
    return snippet


def nginx_conf(port: int, upstream: str, root: Path) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {root}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    location = "\n".join(f"        {line}" for line in readme_snippet(upstream).splitlines())
    return f"""\
daemon off;
master_process off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{}}
http {{
    access_log off;
{temp}
    server {{
        listen 127.0.0.1:{port};
{location}
    }}
}}
"""


@contextmanager
def run_nginx(root: Path, upstream: str) -> Iterator[str]:
    """nginx in the foreground with the README's snippet, started and stopped the way
    `make cluster` runs its own (server/cluster_servers.py); yields its base URL."""
    port = free_port()
    try:
        nginx = NginxProcess(root, port, nginx_conf(port, upstream, root))
    except ChildFailed as error:  # not installed: say how to install it
        pytest.fail(str(error))
    nginx.start()
    try:
        yield nginx.url
    finally:
        nginx.stop()


async def test_a_live_scenario_streams_through_nginx_chunk_by_chunk(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    upstream = FakeUpstream(
        Script(chunks=CHUNKS, chunk_delay_s=CHUNK_DELAY_S, first_delay_s=FIRST_DELAY_S)
    )
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url, "model": "fake-model"},
            limits={
                "first_token_timeout_s": 5.0,
                "chunk_timeout_s": 2.0,
                "worker_time_limit_s": 20.0,
                "max_attempts": 1,
            },
            stream={"heartbeat_s": HEARTBEAT_S, "frame_ms": 20},
        )
        with (
            serve_app(create_app(settings)) as app_url,
            run_nginx(tmp_path / "nginx", app_url.removeprefix("http://")) as proxy_url,
        ):
            async with Visitor(proxy_url) as visitor:
                with anyio.fail_after(30):
                    home = await visitor.home()
                    sid = await visitor.start("finance")
                    stream = await visitor.stream(sid, 0)
                    too_big = await visitor.http.post(
                        "/sessions",
                        data={
                            "category": "finance",
                            "csrf_token": visitor.token,
                            "x": "a" * 20_000,
                        },
                    )

    # A plain page passes through.
    assert home.status_code == 200
    assert visitor.token

    # The whole scenario arrived, live from the model.
    assert stream.status == 200
    assert stream.names()[-1] == "done", stream.names()
    assert 'data-source="model"' in stream.events[-1].data
    assert stream.text() == "".join(CHUNKS)

    # Chunk by chunk, not in one piece at the end: arrivals spread over the ~3 s stream.
    chunks = [e.at for e in stream.of("chunk")]
    done = stream.events[-1].at
    streaming_s = CHUNK_DELAY_S * (len(CHUNKS) - 1)
    assert len(chunks) >= 10, len(chunks)
    assert chunks[-1] - chunks[0] > 0.5 * streaming_s, (chunks[0], chunks[-1])
    assert done - chunks[0] > 0.5 * streaming_s
    middle = statistics.median(chunks)
    assert middle - chunks[0] > 0.25 * streaming_s and chunks[-1] - middle > 0.25 * streaming_s

    # Heartbeat comments pass through while the model is still silent.
    before_text = [t for t in stream.comments if t < chunks[0]]
    assert len(before_text) >= 2, (len(stream.comments), chunks[0] - stream.started)

    # A body over client_max_body_size is refused (by nginx, before the app sees it).
    assert too_big.status_code == 413
