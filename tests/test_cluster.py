"""The distributed backend as real processes: `make cluster`'s program, and a stream read on one
worker that resumes on another with exactly the missing text, directly and through nginx."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from server.cluster_servers import WORKER_HEADER, free_port, listening, nginx_conf
from tests import sse, stored
from tests.cluster import RunningCluster, done_text
from tests.servers import ROOT, clean_env
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

# A scenario of 60 words at 20 a second: about three seconds of streaming, so that a stream can
# be cut and resumed while the step is still being written. No trailing space: the stored text
# is the streamed text exactly.
CHUNKS = ["w0", *(f" w{i}" for i in range(1, 60))]
SLOW = {"chunks": CHUNKS, "chunk_delay_s": 0.05}
HEARTBEAT_S = 1.0
LIMIT_S = 60  # a backstop proving things end, never a speed bound


def silence_bound(stream: sse.Stream) -> None:
    """No stream is ever silent longer than a heartbeat and a second."""
    assert stream.largest_gap() <= HEARTBEAT_S + 1.0, stream.largest_gap()


async def read_on(
    client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None, chunks: int = 0
) -> tuple[sse.Stream, str]:
    """Read a stream until it has `chunks` chunks (0: to its end); with the worker that nginx
    says answered (empty when read from a worker directly)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    stream = sse.Stream(status=0, started=time.monotonic())
    async with client.stream("GET", url, headers=headers) as response:
        stream.status = response.status_code
        worker = response.headers.get(WORKER_HEADER, "")
        until = (lambda s: len(s.of("chunk")) >= chunks) if chunks else None
        await sse.parse(response.aiter_lines(), stream, until=until)
    stream.ended = time.monotonic()
    assert stream.status == 200
    return stream, worker


def last_id(stream: sse.Stream) -> str:
    return [e.id for e in stream.events if e.id][-1]


def assert_exact_everywhere(
    cluster: RunningCluster, sid: str, whole: sse.Stream, pieces: list[sse.Stream]
) -> None:
    """The pieces read one after another add up to the whole text, with no gap and no duplicate
    (each resumed piece only chunks, going on at the offset its Last-Event-ID named); the
    whole text is the stream's, the `done` element's and the database's."""
    expected = "".join(CHUNKS)
    assert whole.text() == expected
    assert whole.names()[-1] == "done" and done_text(whole) == expected
    text = pieces[0].text()
    for before, piece in itertools.pairwise(pieces):
        version, offset = last_id(before).split(".")
        assert int(offset) == len(text)
        assert "snapshot" not in piece.names() and piece.of("chunk"), piece.names()
        first = piece.of("chunk")[0].id
        assert first is not None and first.split(".")[0] == version
        text += piece.text(prefix="")
    assert text == expected
    assert pieces[-1].names()[-1] == "done" and done_text(pieces[-1]) == expected
    step = stored.step(cluster.settings, sid, 0)
    assert step is not None and (step.status, step.text) == ("done", expected)


async def test_a_stream_read_on_one_worker_resumes_on_another_with_exactly_the_missing_text(
    shared_cluster: RunningCluster,
) -> None:
    cluster = shared_cluster
    cluster.upstream.script(default=SLOW)
    a, b, c = cluster.workers
    url_of = "/s/{}/steps/0/stream".format
    async with Visitor(a.url) as visitor:
        sid = await visitor.start()  # worker A writes the scenario
        url = url_of(sid)
        # Both workers take the same cookie: one secret key for the deployment.
        async with (
            httpx.AsyncClient(base_url=b.url, cookies=visitor.http.cookies, timeout=30) as on_b,
            httpx.AsyncClient(base_url=c.url, cookies=visitor.http.cookies, timeout=30) as on_c,
        ):
            whole: list[sse.Stream] = []

            async def read_whole() -> None:
                whole.append((await read_on(on_c, url))[0])

            with anyio.fail_after(LIMIT_S):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_whole)
                    cut, _ = await read_on(visitor.http, url, chunks=3)
                    resumed, _ = await read_on(on_b, url, last_event_id=last_id(cut))
    for stream in (cut, resumed, whole[0]):
        silence_bound(stream)
    assert_exact_everywhere(cluster, sid, whole[0], [cut, resumed])


async def test_a_stream_resumed_through_nginx_goes_on_at_the_next_worker_with_exactly_the_missing_text(
    shared_cluster: RunningCluster,
) -> None:
    cluster = shared_cluster
    cluster.upstream.script(default=SLOW)
    async with Visitor(cluster.url) as visitor:
        sid = await visitor.start()
        url = f"/s/{sid}/steps/0/stream"
        async with httpx.AsyncClient(
            base_url=cluster.workers[2].url, cookies=visitor.http.cookies, timeout=30
        ) as direct:
            whole: list[sse.Stream] = []

            async def read_whole() -> None:
                # Straight to a worker, so that nginx sees only the pieces' requests.
                whole.append((await read_on(direct, url))[0])

            with anyio.fail_after(LIMIT_S):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_whole)
                    first, at_first = await read_on(visitor.http, url, chunks=3)
                    second, at_second = await read_on(
                        visitor.http, url, last_event_id=last_id(first), chunks=3
                    )
                    third, at_third = await read_on(
                        visitor.http, url, last_event_id=last_id(second)
                    )
    # Round robin, no stickiness: each reconnection was answered by the next worker.
    workers = {f"127.0.0.1:{w.port}" for w in cluster.workers}
    assert {at_first, at_second, at_third} <= workers
    assert at_first != at_second != at_third
    for stream in (first, second, third, whole[0]):
        silence_bound(stream)
    assert_exact_everywhere(cluster, sid, whole[0], [first, second, third])


async def test_a_step_stopped_and_written_again_at_once_arrives_whole_wherever_it_is_read(
    shared_cluster: RunningCluster,
) -> None:
    """A step stopped, then written again at once: on the worker that writes it (its writer
    still letting go of the step) and through nginx (each request on the next worker), the new
    text arrives whole in the stream, in `done` and in the database."""
    cluster = shared_cluster
    cluster.upstream.script(default=SLOW)
    expected = "".join(CHUNKS)
    async with Visitor(cluster.workers[0].url) as visitor:  # worker A writes each scenario
        await visitor.home()  # its cookie, for nginx's requests too
        via_nginx = httpx.AsyncClient(
            base_url=cluster.url, cookies=visitor.http.cookies, timeout=30
        )
        async with via_nginx:
            for where in (visitor.http, via_nginx):
                sid = await visitor.start()
                url = f"/s/{sid}/steps/0/stream"
                form = {"csrf_token": visitor.token}
                with anyio.fail_after(LIMIT_S):
                    await read_on(via_nginx, url, chunks=3)
                    stop = await where.post(f"/s/{sid}/steps/0/stop", data=form)
                    again = await where.post(f"/s/{sid}/steps/0/retry", data=form)
                    assert stop.status_code == again.status_code == 303
                    whole, _ = await read_on(via_nginx, url)
                silence_bound(whole)
                assert whole.names()[-1] == "done" and done_text(whole) == expected
                assert whole.text() == expected
                step = stored.step(cluster.settings, sid, 0)
                assert step is not None and (step.status, step.text) == ("done", expected)


def children_of(pid: int) -> set[int]:
    """The PIDs of a process's children (every thread's), from /proc (none once it is gone)."""
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found |= {int(p) for p in (task / "children").read_text().split()}
    except FileNotFoundError:  # it, or one of its threads, ended meanwhile
        pass
    return found


def descendants_of(pid: int) -> set[int]:
    """Its children, theirs (PostgreSQL's own processes), and so on."""
    found = children_of(pid)
    for child in list(found):
        found |= descendants_of(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cluster_program(port: int) -> subprocess.Popen[str]:
    """`python -m server.cluster` (what `make cluster` runs) on `port`, its output piped."""
    # The offline writer, at a pace that still streams: no model is configured.
    return subprocess.Popen(
        [sys.executable, "-m", "server.cluster", "--port", str(port)],
        cwd=ROOT,
        env=clean_env(CROSSROADS_OFFLINE__CHARS_PER_S="2000"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def left_behind(children: set[int], data_dir: Path, port: int) -> list[str]:
    """What a stopped cluster left: processes still alive, its directory, its port."""
    found = [f"pid {pid}" for pid in sorted(children) if alive(pid)]
    found += [str(data_dir)] if data_dir.exists() else []
    return found + ([f"port {port}"] if listening(port) else [])


async def test_the_cluster_program_serves_a_journey_step_and_ctrl_c_leaves_nothing_behind() -> None:
    port = free_port()
    program = cluster_program(port)
    try:
        assert program.stdout is not None
        with anyio.fail_after(LIMIT_S):
            line = await anyio.to_thread.run_sync(program.stdout.readline)
        assert f"Crossroads on http://127.0.0.1:{port}" in line, line
        where = re.search(r"Logs in (\S+)\.", line)
        assert where is not None, line
        data_dir = Path(where.group(1))
        assert len(children_of(program.pid)) == 6  # redis-server, postgres, 3 workers, nginx
        started = descendants_of(program.pid)
        async with Visitor(f"http://127.0.0.1:{port}") as visitor:
            with anyio.fail_after(LIMIT_S):
                sid = await visitor.start()
                stream = await visitor.stream(sid, 0)
        assert stream.status == 200 and stream.names()[-1] == "done", stream.names()
        assert stream.of("chunk") and stream.text()
        # The operator is told where each server is, and when one ends by itself.
        with anyio.fail_after(LIMIT_S):
            listed = [await anyio.to_thread.run_sync(program.stdout.readline) for _ in range(5)]
        redis_line = next(line for line in listed if line.strip().startswith("redis:"))
        assert any(line.strip().startswith("postgres: postgresql://") for line in listed), listed
        found = re.search(r"\(pid (\d+)\)", redis_line)
        assert found is not None, redis_line
        os.kill(int(found.group(1)), signal.SIGKILL)
        with anyio.fail_after(LIMIT_S):
            said = await anyio.to_thread.run_sync(program.stdout.readline)
        assert said.startswith("crossroads cluster: redis-server was ended by SIGKILL"), said
        program.send_signal(signal.SIGINT)  # Ctrl-C, once
        with anyio.fail_after(LIMIT_S):
            code = await anyio.to_thread.run_sync(program.wait)
        output = program.stdout.read()
    finally:
        if program.poll() is None:
            program.kill()
            program.wait()
        if program.stdout is not None:
            program.stdout.close()
    assert code == 0, output
    assert "Stopped" in output
    assert left_behind(started, data_dir, port) == []


def test_a_worker_killed_and_started_again_serves_on_its_port_and_nginx_passes_it_by(
    cluster: RunningCluster,
) -> None:
    worker = cluster.workers[0]
    pid = worker.pid
    assert pid is not None and cluster.nginx_pid is not None
    worker.kill()
    assert worker.pid is None and not alive(pid)
    # nginx sends the dead worker's share of requests to the others.
    answered = {httpx.get(f"{cluster.url}/healthz", timeout=5).status_code for _ in range(6)}
    assert answered == {200}
    worker.start()
    assert worker.pid not in (None, pid)
    assert httpx.get(f"{worker.url}/readyz", timeout=5).status_code == 200


def test_the_cluster_program_refuses_a_taken_port_before_starting_anything() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with cluster_program(port) as program:
            output, _ = program.communicate(timeout=LIMIT_S)
    assert program.returncode == 2
    assert output.strip() == f"crossroads cluster: port {port} is taken; try --port"


README_CLUSTER_SNIPPET = re.compile(
    r"<!-- nginx-cluster-snippet:start -->\s*```nginx\n(.*?)```\s*<!-- nginx-cluster-snippet:end -->",
    re.S,
)
# What differs between the README's machines and the cluster's own nginx: addresses, the files
# of a server run from a temp dir, and the header that names the worker (for the tests).
LOCAL = re.compile(
    r"^(listen|server|daemon|master_process|worker_processes|error_log|pid|"
    r"worker_connections|access_log|\w+_temp_path|add_header)\b"
)


def directives(conf: str) -> set[str]:
    """Every `name value;` of a configuration, comments and local details left out."""
    lines = (line.split("#", 1)[0].strip() for line in conf.splitlines())
    return {line for line in lines if line.endswith(";") and not LOCAL.match(line)}


def test_the_readme_cluster_snippet_is_the_configuration_make_cluster_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [snippet] = README_CLUSTER_SNIPPET.findall(readme)
    ours = nginx_conf(8080, ["127.0.0.1:9001", "127.0.0.1:9002"], tmp_path)
    assert directives(snippet) == directives(ours)
    assert (
        re.findall(r"max_fails=\S+ fail_timeout=\S+;", snippet)
        == ["max_fails=1 fail_timeout=2s;"] * 3
    )
    assert "max_fails=1 fail_timeout=2s;" in ours


def test_metrics_are_read_from_each_worker_not_through_the_public_door(
    shared_cluster: RunningCluster,
) -> None:
    assert httpx.get(f"{shared_cluster.url}/metrics", timeout=5).status_code == 404
    direct = httpx.get(f"{shared_cluster.workers[0].url}/metrics", timeout=5)
    assert direct.status_code == 200 and "crossroads_active_streams" in direct.text
