"""`monitor run --web`: the daemon serves the story desk from the same process and stops it with
itself on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import threading
from datetime import UTC, datetime

import httpx

from tests.conftest import STORY, Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer
from tests.waiting import wait_for


def _collect(stream, lines: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def test_run_with_web_serves_the_desk_while_polling(project: Project, feed_server: FeedServer) -> None:
    when = datetime(2025, 10, 17, 8, tzinfo=UTC)
    feed_server.put(
        "/a.xml",
        rss(
            [
                FakeEntry(
                    "a1", "Selenski in Washington", "Es geht um Tomahawks.", "https://example.org/a1", when
                )
            ]
        ),
    )
    project.write(
        {
            "fetch": {"interval": "1s", "jitter": "0s"},
            "feeds": [{"name": "zeitung", "url": feed_server.url("/a.xml")}],
            "stories": [STORY],
            "ops": {"enabled": False},
        }
    )
    proc = project.spawn("run", "--web", "--web-port", "0")
    lines: list[str] = []
    reader = _collect(proc.stderr, lines)
    try:
        url = wait_for(
            lambda: next(
                (
                    m.group(1)
                    for line in lines
                    if (m := re.search(r'serving the story desk" url=(\S+)', line))
                ),
                None,
            ),
            timeout=30,
            what="the desk's URL in the log",
        )
        wait_for(lambda: len(feed_server.requests_for("/a.xml")) >= 2, timeout=30, what="polls")
        feeds = httpx.get(url + "api/feeds", timeout=10).json()
        assert [f["name"] for f in feeds] == ["zeitung"]
        assert httpx.get(url, timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(lines)[-3000:]
    assert any("daemon stopped" in line for line in lines)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.socket() as probe:  # the desk's port was released
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_run_with_web_on_a_port_in_use_exits_1(project: Project, feed_server: FeedServer) -> None:
    project.write(
        {"feeds": [{"name": "zeitung", "url": feed_server.url("/a.xml")}], "ops": {"enabled": False}}
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = project.spawn("run", "--web", "--web-port", str(port))
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
