"""The README's nginx snippet, run for real: a live scenario streams through it frame by frame."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from server.app import create_app
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import ROOT, free_port, serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

NGINX = Path("/usr/sbin/nginx")
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


def nginx_conf(port: int, upstream: str) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path tmp/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    location = "\n".join(f"        {line}" for line in readme_snippet(upstream).splitlines())
    return f"""\
daemon off;
master_process off;
worker_processes 1;
error_log tmp/error.log warn;
pid tmp/nginx.pid;
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


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def run_nginx(prefix: Path, upstream: str) -> Iterator[str]:
    """nginx in the foreground, every path under `prefix`; yields its base URL."""
    if not NGINX.exists():
        pytest.fail(f"{NGINX} is missing: `make test` installs it (via `make system-deps`)")
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(port, upstream), encoding="utf-8")
    error_log = prefix / "tmp" / "error.log"
    with (prefix / "tmp" / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(
            [str(NGINX), "-p", f"{prefix}/", "-c", str(conf), "-e", "tmp/error.log"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = error_log.read_text() if error_log.exists() else ""
                stderr_text = (prefix / "tmp" / "stderr.log").read_text()
                raise RuntimeError(
                    f"nginx did not start:\n{stderr_text}\n{log}\n{conf.read_text()}"
                )
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


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
