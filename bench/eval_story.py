#!/usr/bin/env python3
"""Evaluate story relevance and developments end to end on a labelled corpus.

Runs the monitor the way a user does: the corpus (JSONL, see ../shared/corpus/README.md) is served
as per-outlet RSS feeds by a real HTTP server on 127.0.0.1, released in four date rounds
(<= 17 Oct, <= 22 Oct, <= 31 Oct 2025, rest; undated items in the first round) with the dates moved
forward so that the newest item is two days old (order and spacing kept). After each round the real
CLI runs ``monitor poll``; at the end ``monitor items --json`` and ``monitor developments --json``
are scored against the labels.

    .venv/bin/python bench/eval_story.py                       # full text in the feed
    .venv/bin/python bench/eval_story.py --mode teaser         # teasers + fulltext: true
    .venv/bin/python bench/eval_story.py --json                # machine-readable

The story's rules come from the shipped ``feeds.yaml`` (``--config``), so the configuration that
ships is the one measured; only its baseline is replaced by ``--baseline``. The corpus is read at
run time and never copied. Nothing leaves the machine: every link points at the loopback server.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ROUND_ENDS = ("2025-10-17", "2025-10-22", "2025-10-31")
TEASER_CHARS = 300


# --- corpus ---------------------------------------------------------------------------------------


@dataclass
class Item:
    id: str
    outlet: str
    feed: str
    title: str
    text: str
    published: datetime | None  # original date
    served: datetime | None  # moved forward
    relevant: bool
    development: bool
    borderline: bool
    round: int


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60] or "outlet"


def load_corpus(path: Path, now: datetime) -> list[Item]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    dates = [datetime.fromisoformat(r["published"]) for r in rows if r.get("published")]
    dates = [d if d.tzinfo else d.replace(tzinfo=UTC) for d in dates]
    newest = max(dates) if dates else now
    shift = (now - timedelta(days=2)) - newest
    items = []
    for r in rows:
        published = None
        if r.get("published"):
            published = datetime.fromisoformat(r["published"])
            published = published if published.tzinfo else published.replace(tzinfo=UTC)
        day = published.date().isoformat() if published else None
        rnd = 0 if day is None else next((i for i, end in enumerate(ROUND_ENDS) if day <= end), 3)
        items.append(
            Item(
                id=r["id"],
                outlet=r.get("outlet") or "unknown",
                feed=_slug(r.get("outlet") or "unknown"),
                title=r.get("title") or "",
                text=r.get("text") or "",
                published=published,
                served=published + shift if published else None,
                relevant=bool(r.get("relevant")),
                development=bool(r.get("development")),
                borderline=bool(r.get("borderline")),
                round=rnd,
            )
        )
    return items


# --- the loopback server --------------------------------------------------------------------------


def _teaser(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= TEASER_CHARS:
        return text
    cut = text[:TEASER_CHARS].rsplit(" ", 1)[0]
    return cut + " …"


def _paragraphs_html(text: str) -> str:
    paras = [p.strip() for p in text.split("\n") if p.strip()]
    return "\n".join(f"<p>{html.escape(p)}</p>" for p in paras)


class CorpusServer:
    """Serves /feed/<slug>.xml (items released so far) and /article/<id> (the article page)."""

    def __init__(self, items: list[Item], mode: str) -> None:
        self.items = items
        self.by_id = {i.id: i for i in items}
        self.mode = mode
        self.released = -1
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                body, ctype, status = server.route(self.path)
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> CorpusServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def feeds(self) -> list[str]:
        return sorted({i.feed for i in self.items})

    def article_url(self, item: Item) -> str:
        return f"{self.base}/article/{item.id}"

    def route(self, path: str) -> tuple[str, str, int]:
        m = re.fullmatch(r"/feed/([a-z0-9-]+)\.xml", path)
        if m:
            return self.rss(m.group(1)), "application/rss+xml; charset=utf-8", 200
        m = re.fullmatch(r"/article/([^/?#]+)", path)
        if m and unquote(m.group(1)) in self.by_id:
            return self.article(self.by_id[unquote(m.group(1))]), "text/html; charset=utf-8", 200
        return "not found", "text/plain", 404

    def rss(self, slug: str) -> str:
        entries = [i for i in self.items if i.feed == slug and i.round <= self.released]
        out = [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
            f"<channel><title>{html.escape(slug)}</title><link>{self.base}/</link>",
            "<description>eval corpus</description>",
        ]
        for i in sorted(entries, key=lambda x: x.served or datetime.max.replace(tzinfo=UTC), reverse=True):
            url = self.article_url(i)
            out.append("<item>")
            out.append(f"<title>{html.escape(i.title)}</title><link>{html.escape(url)}</link>")
            out.append(f'<guid isPermaLink="true">{html.escape(url)}</guid>')
            if i.served is not None:
                out.append(f"<pubDate>{format_datetime(i.served.replace(hour=12))}</pubDate>")
            if self.mode == "teaser":
                out.append(f"<description>{html.escape(_teaser(i.text))}</description>")
            else:
                out.append(f"<description>{html.escape(_teaser(i.text))}</description>")
                content = _paragraphs_html(i.text).replace("]]>", "]]&gt;")
                out.append(f"<content:encoded><![CDATA[{content}]]></content:encoded>")
            out.append("</item>")
        out.append("</channel></rss>")
        return "\n".join(out)

    def article(self, item: Item) -> str:
        title = html.escape(item.title)
        return (
            f'<!DOCTYPE html><html lang="de"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><header><nav>Startseite · Politik · Ausland</nav></header><main><article>"
            f"<h1>{title}</h1>{_paragraphs_html(item.text)}</article></main>"
            f"<footer>Impressum · Datenschutz</footer></body></html>"
        )


class WebhookReceiver:
    """A real webhook endpoint on 127.0.0.1 that verifies each Standard Webhooks signature and
    records deliveries by ``webhook-id`` (the idempotency key), as a deduplicating receiver would."""

    SECRET = "whsec_" + base64.b64encode(b"story-monitor-eval-secret-0123456").decode()

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    from standardwebhooks import Webhook

                    payload = Webhook(receiver.SECRET).verify(body, headers)
                except Exception:  # any verification failure is counted
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.received.append({"id": headers.get("webhook-id"), "payload": payload})
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def summary(self, development_ids: set[int]) -> dict[str, Any]:
        events = [r for r in self.received if (r["payload"] or {}).get("event") == "development"]
        ids = [r["id"] for r in events]
        alerted = [int(r["payload"]["development"]["id"]) for r in events]
        return {
            "alerts_received": len(events),
            "alerts_unique": len(set(ids)),
            "duplicates": len(ids) - len(set(ids)),
            "bad_signatures": self.bad_signatures,
            "developments_not_alerted": sorted(development_ids - set(alerted)),
            "alerts_without_development": sorted(set(alerted) - development_ids),
            "one_alert_per_development": sorted(alerted) == sorted(development_ids),
        }


# --- running the monitor --------------------------------------------------------------------------


def write_config(
    path: Path,
    server: CorpusServer,
    source_config: Path,
    story_id: str | None,
    baseline: Path,
    mode: str,
    webhook_url: str,
) -> str:
    shipped = yaml.safe_load(source_config.read_text(encoding="utf-8"))
    stories = shipped.get("stories") or []
    story = next((s for s in stories if story_id in (None, s.get("id"))), None)
    if story is None:
        raise SystemExit(f"eval_story: story {story_id!r} not found in {source_config}")
    story = {**story, "baseline": {"path": str(baseline)}}
    config = {
        "database": f"sqlite:///{path.parent / 'eval.sqlite3'}",
        "fetch": {
            "concurrency": 8,
            "timeout": "20s",
            "allow_private_addresses": mode == "teaser",
        },
        "feeds": [
            {"name": slug, "url": f"{server.base}/feed/{slug}.xml", "fulltext": mode == "teaser"}
            for slug in server.feeds()
        ],
        "stories": [story],
        "alerts": {"webhooks": [{"url": webhook_url, "name": "eval", "secret_env": "EVAL_WEBHOOK_SECRET"}]},
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(story["id"])


def run_monitor(monitor: list[str], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "EVAL_WEBHOOK_SECRET": WebhookReceiver.SECRET}
    env.pop("MONITOR_CONFIG", None)
    env.pop("MONITOR_DATABASE_URL", None)
    proc = subprocess.run(
        [*monitor, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"eval_story: `monitor {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return proc


# --- scoring --------------------------------------------------------------------------------------


def prf(predicted: set[str], truth: set[str], universe: set[str]) -> dict[str, Any]:
    predicted, truth = predicted & universe, truth & universe
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else (1.0 if not truth else 0.0)
    r = tp / len(truth) if truth else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f, 4),
        "tp": tp,
        "predicted": len(predicted),
        "truth": len(truth),
        "false_positives": sorted(predicted - truth),
        "misses": sorted(truth - predicted),
    }


def score(items: list[Item], matched: set[str], flagged: set[str], developments: int) -> dict[str, Any]:
    everything = {i.id for i in items}
    clear = {i.id for i in items if not i.borderline}
    relevant = {i.id for i in items if i.relevant}
    dev_truth = {i.id for i in items if i.development}
    restatements = {i.id for i in items if i.relevant and not i.development and not i.borderline}
    return {
        "items": len(items),
        "relevance": prf(matched, relevant, clear),
        "relevance_with_borderline": prf(matched, relevant, everything),
        "developments": prf(flagged, dev_truth, clear),
        "developments_with_borderline": prf(flagged, dev_truth, everything),
        "development_count": developments,
        "development_items": len(dev_truth & clear),
        "restatements_flagged": sorted(flagged & restatements),
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise SystemExit(f"eval_story: corpus not found: {corpus}")
    baseline = Path(args.baseline).resolve()
    if not baseline.is_file():
        raise SystemExit(f"eval_story: baseline not found: {baseline}")
    items = load_corpus(corpus, datetime.now(UTC))
    monitor = args.monitor.split() if args.monitor else [sys.executable, "-m", "monitor"]
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="eval-story-") as tmp,
        CorpusServer(items, args.mode) as server,
        WebhookReceiver() as receiver,
    ):
        config = Path(tmp) / "feeds.yaml"
        story_id = write_config(
            config, server, Path(args.config), args.story, baseline, args.mode, receiver.url
        )
        polls = []
        for rnd in range(4):
            server.released = rnd
            t0 = time.perf_counter()
            run_monitor(monitor, config, "poll")
            polls.append(round(time.perf_counter() - t0, 2))
        found = json.loads(run_monitor(monitor, config, "items", "--story", story_id, "--json").stdout)
        devs = json.loads(run_monitor(monitor, config, "developments", "--story", story_id, "--json").stdout)
        # `monitor poll` sends due alerts after polling; a second delivery pass must send nothing new.
        run_monitor(monitor, config, "alerts", "deliver")
        alerts = receiver.summary({int(d["id"]) for d in devs})
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("feeds.yaml", "eval.sqlite3"):
                (keep / name).write_bytes((Path(tmp) / name).read_bytes())
        prefix = f"{server.base}/article/"
    by_url = {f"{prefix}{i.id}": i.id for i in items}
    # By URL; by (feed, title) when a stage lost the link (should not happen: reported as a problem).
    by_title = {(i.feed, " ".join(i.title.split())): i.id for i in items}
    lost_links: list[str] = []

    def item_id(row: dict[str, Any]) -> str | None:
        if row.get("url") in by_url:
            return by_url[row["url"]]
        found_id = by_title.get((row.get("feed"), " ".join((row.get("title") or "").split())))
        if found_id is not None:
            lost_links.append(found_id)
        return found_id

    matched = {i for i in (item_id(r) for r in found) if i}
    flagged = {i for i in (item_id(s) for d in devs for s in d.get("sources") or []) if i}
    result = score(items, matched, flagged, len(devs))
    result.update(
        mode=args.mode,
        story=story_id,
        corpus=str(corpus),
        baseline=str(baseline),
        seconds=round(time.perf_counter() - started, 1),
        poll_seconds=polls,
        items_listed=len(found),
        links_lost=sorted(set(lost_links)),
        alerts=alerts,
    )
    return result


def _line(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name:<34} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}"
        f"   ({m['tp']} of {m['predicted']} flagged, {m['truth']} true)"
    )


def print_report(r: dict[str, Any]) -> None:
    print(f"story {r['story']} · mode {r['mode']} · {r['items']} items · {r['seconds']} s")
    print(f"corpus {r['corpus']}\nbaseline {r['baseline']}")
    print(_line("relevance (non-borderline)", r["relevance"]))
    print(_line("relevance (with borderline)", r["relevance_with_borderline"]))
    print(_line("developments (non-borderline)", r["developments"]))
    print(_line("developments (with borderline)", r["developments_with_borderline"]))
    print(
        f"developments: {r['development_count']} (development items: {r['development_items']}); "
        f"restatements flagged: {len(r['restatements_flagged'])}"
    )
    for key, label in (("relevance", "relevance"), ("developments", "developments")):
        m = r[key]
        print(f"{label} false positives: {', '.join(m['false_positives']) or '-'}")
        print(f"{label} misses: {', '.join(m['misses']) or '-'}")
    a = r["alerts"]
    print(
        f"alerts at the webhook receiver: {a['alerts_received']} ({a['alerts_unique']} unique, "
        f"{a['duplicates']} duplicates, {a['bad_signatures']} bad signatures); one per development: "
        f"{'yes' if a['one_alert_per_development'] else 'NO'}"
        + (f"; not alerted: {a['developments_not_alerted']}" if a["developments_not_alerted"] else "")
    )
    if r["links_lost"]:
        print(f"warning: {len(r['links_lost'])} items came back without their link (matched by title)")
    if r["restatements_flagged"]:
        print(f"restatements flagged: {', '.join(r['restatements_flagged'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(SHARED / "corpus" / "story-dev.jsonl"))
    ap.add_argument("--baseline", default=str(SHARED / "baseline" / "budapest-summit-2025-10-17.txt"))
    ap.add_argument("--config", default=str(ROOT / "feeds.yaml"), help="take the story rules from here")
    ap.add_argument("--story", default=None, help="story id (default: the first story)")
    ap.add_argument("--mode", choices=("feed", "teaser"), default="feed")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument(
        "--monitor", default=None, help="command that runs the CLI (default: this python -m monitor)"
    )
    ap.add_argument("--keep", default=None, help="copy the temp config and database to this folder")
    args = ap.parse_args(argv)
    result = evaluate(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
