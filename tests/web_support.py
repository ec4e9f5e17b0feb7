"""A story desk with data in it: loopback feeds, a real ``monitor poll``, and developments written
through the store API (the way the diff stage writes them). Shared by the web/export tests."""

from __future__ import annotations

import json
import re
import select
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store import DevelopmentRecord, SourceRecord, Store
from tests.conftest import Project
from tests.feeds import FakeEntry, atom, rss
from tests.servers import FeedServer

STORY_ID = "budapest-summit"
T0 = datetime(2025, 10, 16, 6, 0, tzinfo=UTC)

HOSTILE_TITLE = 'Selenski <script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2">'
HOSTILE_SENTENCE = (
    'Tomahawk-Lieferung <script>window.__pwned = 3</script> bestätigt <img src=x onerror="window.__pwned=4">.'
)

BASELINE_TEXT = (
    "US-Präsident Donald Trump und Kremlchef Wladimir Putin wollen sich in Budapest treffen. "
    "Ungarns Regierungschef Viktor Orbán erklärte sich bereit, den Gipfel auszurichten. "
    "Der ukrainische Präsident Wolodymyr Selenski reist nach Washington und bittet um Tomahawk-Marschflugkörper."
)


def _entries(prefix: str, hours: list[int], outlet: str) -> list[FakeEntry]:
    texts = [
        ("Selenski trifft Trump im Weißen Haus", "Es geht um Tomahawk-Marschflugkörper für die Ukraine."),
        ("Budapest-Gipfel: Orbán bereitet Treffen vor", "Ungarn will Trump und Putin empfangen."),
        ("Kreml warnt vor Tomahawk-Lieferung", "Moskau spricht von einer neuen Eskalationsstufe."),
        ("Budapest-Gipfel auf Eis gelegt", "Das geplante Treffen findet vorerst nicht statt."),
        ("Selenski: Gespräche über Luftabwehr", "Die Ukraine bittet um weitere Patriot-Systeme."),
    ]
    out = []
    for i, h in enumerate(hours):
        title, text = texts[i % len(texts)]
        out.append(
            FakeEntry(
                guid=f"{prefix}-{i}",
                title=f"{title} ({outlet})",
                text=text,
                link=f"https://{outlet}.example.org/artikel/{prefix}-{i}?utm_source=rss",
                published=T0 + timedelta(hours=h, minutes=7 * i % 50),
            )
        )
    return out


@dataclass
class Desk:
    project: Project
    server: FeedServer
    developments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return Store(f"sqlite:///{self.project.db_path}")


def build_desk(
    project: Project, server: FeedServer, *, hostile: bool = True, web: dict | None = None
) -> Desk:
    """Three loopback feeds (RSS and Atom, German text, one hostile entry), one failing feed,
    a real poll, then three developments (one hostile) with sources from the polled items."""
    server.put("/zeitung.xml", rss(_entries("z", [0, 1, 1, 3, 7, 26], "zeitung")))
    server.put("/blatt.xml", rss(_entries("b", [1, 2, 5, 8, 27], "blatt")))
    extra = []
    if hostile:
        extra.append(
            FakeEntry(
                guid="evil-1",
                title=HOSTILE_TITLE,
                text="Selenski <b>fett</b> & <script>window.__pwned = 5</script>",
                link="javascript:window.__pwned=6",
                published=T0 + timedelta(hours=4),
            )
        )
    server.put(
        "/atom.xml",
        atom(_entries("a", [2, 2, 6, 9], "atomwelt") + extra),
        content_type="application/atom+xml",
    )
    server.put("/kaputt.xml", b"nicht da", status=500, content_type="text/plain")
    config: dict[str, Any] = {
        "fetch": {"interval": "1h", "jitter": "0s"},
        "feeds": [
            {"name": "zeitung", "url": server.url("/zeitung.xml")},
            {"name": "blatt", "url": server.url("/blatt.xml")},
            {"name": "atomwelt", "url": server.url("/atom.xml")},
            {"name": "kaputt", "url": server.url("/kaputt.xml")},
        ],
        "stories": [
            {
                "id": STORY_ID,
                "title": "Trump–Putin-Gipfel in Budapest",
                "baseline": {"text": BASELINE_TEXT},
                "keywords": ["Budapest-Gipfel", "Tomahawk", "Selenski", "Budapest"],
                # The desk's developments are the test- ones added below: keep the diff stage from
                # flagging the polled items itself (it would: "Gipfel auf Eis" is news).
                "novelty_threshold": 10,
            }
        ],
    }
    if web:
        config["web"] = web
    project.write(config)
    # A real `monitor poll` process (also keeps it clear of the browser driver's event loop).
    proc = project.spawn("poll", "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(json.loads(out)["feeds"]) == 4
    desk = Desk(project, server)
    store = desk.store
    items = {i["title"]: i for i in store.matched_items(STORY_ID)}
    assert len(items) >= 10, f"the poll should have matched the test items, got {len(items)}"

    def item(prefix: str) -> dict[str, Any]:
        return next(i for t, i in items.items() if t.startswith(prefix))

    zeit_cancel = next(
        i
        for i in items.values()
        if i["title"].startswith("Budapest-Gipfel auf Eis") and i["feed"] == "zeitung"
    )
    blatt_cancel = next(
        i for i in items.values() if i["title"].startswith("Budapest-Gipfel auf Eis") and i["feed"] == "blatt"
    )
    records = [
        DevelopmentRecord(
            story_id=STORY_ID,
            key="test-kreml-warnung",
            title="Kreml warnt vor Tomahawk-Lieferung",
            score=0.71,
            novel=["Moskau spricht von einer neuen Eskalationsstufe."],
            terms=["tomahawk"],
            sources=[
                SourceRecord(
                    item("Kreml warnt")["item_id"], ["Moskau spricht von einer neuen Eskalationsstufe."]
                )
            ],
            first_seen=T0 + timedelta(hours=2, minutes=30),
        ),
        DevelopmentRecord(
            story_id=STORY_ID,
            key="test-gipfel-auf-eis",
            title="Budapest-Gipfel auf Eis gelegt",
            score=0.93,
            novel=["Das geplante Treffen findet vorerst nicht statt."],
            terms=["budapest-gipfel"],
            sources=[
                SourceRecord(blatt_cancel["item_id"], ["Das geplante Treffen findet vorerst nicht statt."]),
                SourceRecord(zeit_cancel["item_id"], ["Das geplante Treffen findet vorerst nicht statt."]),
            ],
            first_seen=T0 + timedelta(hours=7, minutes=10),
        ),
    ]
    if hostile:
        evil = next(i for i in items.values() if i["feed"] == "atomwelt" and "a-" not in (i["url"] or ""))
        records.append(
            DevelopmentRecord(
                story_id=STORY_ID,
                key="test-hostile",
                title=HOSTILE_TITLE,
                score=0.5,
                novel=[HOSTILE_SENTENCE],
                terms=["selenski"],
                sources=[SourceRecord(evil["item_id"], [HOSTILE_SENTENCE])],
                first_seen=T0 + timedelta(hours=4, minutes=20),
            )
        )
    with store.poll_transaction("zeitung") as tx:
        for record in records:
            tx.add_development(record, [])
    desk.developments = [d for d in store.developments(STORY_ID) if d["key"].startswith("test-")]
    store.close()
    return desk


class ServedDesk:
    """``monitor serve --port 0`` as a real process; ``url`` once it listens."""

    def __init__(self, project: Project, env: dict[str, str] | None = None) -> None:
        self.proc: subprocess.Popen[str] = project.spawn("serve", "--port", "0", env=env)
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                break
            line = self.proc.stdout.readline()  # the first line names the URL
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if m:
                return m.group(1)
        self.stop()
        raise AssertionError(
            f"monitor serve did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode
