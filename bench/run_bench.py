#!/usr/bin/env python3
"""story-monitor vs the feed tools people use, measured in one run on one loopback corpus.

Uses the shared peer harness (``../shared/bench``: make_corpus.py, feedserver.py, run_peers.py),
copied into ``bench/out/peerbench`` and set up there on first use (setup.sh installs rss2email,
feed2exec and the feed server's aiohttp into venvs of their own, newsboat from Debian; they are
bench tools, not project dependencies). ``monitor poll`` is plugged into run_peers.py as one more
peer, so ours and theirs are measured by the same code, with the same server, in the same run:
cold (all new), warm (nothing changed), incr (10 % of the feeds gained 3 items), each under
``/usr/bin/time -v``, with the server's request / 304 counters.

Scenarios (``--only`` picks some; default: all):

* ``peers``     N=500, 0 ms: monitor + rss2email, feed2exec, newsboat (1 and 8 threads), median of 3
* ``latency``   N=2000, 50 ms: monitor alone (target: warm < 2 s)
* ``stories``   N=500, 0 ms: monitor with 5 stories (matching + diffing), to compare with ``peers``
* ``stories-news`` the same with 5 stories of news-like density: the bench's fifth story
  (``schuldenbremse``) is built on the generator's filler vocabulary and matches 27 % of all items,
  the four others 1.4-2.3 % each; here the fifth is ``weisses-haus`` (0.7 %) instead
* ``latency-stories`` the same with the 5 stories
* ``daemon``    N=2000: ``monitor run`` for 20 polls, RSS sampled (target: < 250 MB, flat)
* ``daemon-stories`` the same with the 5 stories, 10 % of the feeds gaining 3 items after every
  round (so that matching, diffing and storing run in every round, not on the first poll alone)
* ``interleaved`` N=500, 0 ms: ``--rounds`` rounds (default 5), each running the monitor and the
  fastest peers (``--interleave``, default rss2email and newsboat-t8) once, in rotating order, so
  that a drift of the machine's speed hits every tool alike (not in the default set; ~10 min)

Results: ``bench/out/results.json`` / ``results.md`` (ratios), raw peer tables in bench/out/.
Nothing here is fetched from the internet; the server binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
SHARED = Path(os.environ.get("BENCH_SHARED", ROOT.parent / "shared" / "bench"))
PEERBENCH = OUT / "peerbench"
DEFAULT_MONITOR = ROOT / ".venv" / "bin" / "monitor"
PEERS = "rss2email,feed2exec,newsboat,newsboat-t8"

# The monitor's config for a benchmark state dir. All feeds are on one host (127.0.0.1), so
# per_host is raised to the global concurrency: with real feeds every outlet is its own host.
CONFIG_SCRIPT = r"""
import json, sys
urls_file, state, n_stories, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mix = sys.argv[5] if len(sys.argv) > 5 else "bench"
urls = [u.strip() for u in open(urls_file) if u.strip()]
out = ["database: sqlite:///" + state + "/monitor.sqlite3",
       "fetch:", f"  concurrency: {conc}", f"  per_host: {conc}", "  timeout: 60s",
       "  allow_private_addresses: true", "  interval: 5s", "  jitter: 0s",
       "feeds:"]
for u in urls:
    name = u.rsplit("/", 1)[-1].removesuffix(".xml")
    out.append(f"  - {{name: {json.dumps(name)}, url: {json.dumps(u)}}}")
stories = [
    ("budapest-summit", "Gipfel in Budapest", ["Budapest", "Gipfel", "Orbán"]),
    ("tomahawk", "Tomahawks für die Ukraine", ["Tomahawk", "Marschflugkörper"]),
    ("selenskyj", "Selenskyj in Washington", ["Selenskyj", "Selenski", "Zelensky"]),
    ("putin-trump", "Putin und Trump", ["Putin", "Trump"]),
    ("schuldenbremse", "Schuldenbremse", ["Schuldenbremse", "Sondervermögen"]),
]
if mix == "news":  # five stories of news-like density: the fifth one is not the corpus's filler
    stories[4] = ("weisses-haus", "Das Weiße Haus", ["Weißen Hauses", "Weißes Haus"])
if n_stories:
    out.append("stories:")
for sid, title, kws in stories[:n_stories]:
    out += [f"  - id: {sid}", f"    title: {json.dumps(title)}",
            f"    baseline: {{text: {json.dumps(title + ': ' + ', '.join(kws) + '.')}}}",
            f"    keywords: {json.dumps(kws)}"]
open(state + "/monitor.yaml", "w").write("\n".join(out) + "\n")
"""

COUNT_SCRIPT = """
import os, sqlite3, sys
path = sys.argv[1]
db = sqlite3.connect(path) if os.path.exists(path) else None
has_items = db is not None and db.execute("select 1 from sqlite_master where name = 'item'").fetchone()
print(db.execute("select count(*) from item").fetchone()[0] if has_items else 0)
"""


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def ensure_peerbench() -> None:
    if not (PEERBENCH / "run_peers.py").exists():
        if not SHARED.exists():
            raise SystemExit(f"{SHARED} missing: the peer harness lives in ../shared/bench")
        shutil.copytree(SHARED, PEERBENCH)
        for p in PEERBENCH.rglob("*"):
            p.chmod(p.stat().st_mode | 0o200)
    if not (PEERBENCH / ".venv" / "bin" / "python").exists():
        log("setting up the peer harness (setup.sh: venvs for the server and the peers, newsboat)")
        subprocess.run(["./setup.sh"], cwd=PEERBENCH, check=True)


# The monitor's derived-data cache (simplemma's dictionary as tries, monitor/lexicon.py) is built
# once per machine, like the venv's bytecode; run_peers.py gives every repetition a fresh HOME, so
# point it at one directory for all repetitions and build it before anything is timed.
CACHE = OUT / "cache"


def warm_monitor_cache(args: argparse.Namespace) -> None:
    python = Path(args.monitor).parent / "python"
    # Bytecode for the monitor's own modules, as `pip install .` (and the peers' installs) write at
    # install time: an editable install compiles on first import, and where PYTHONDONTWRITEBYTECODE
    # is set (this machine sets it) it would recompile every module on every start (~35 ms).
    compile_code = (
        "import compileall, pathlib, monitor; "
        "compileall.compile_dir(pathlib.Path(monitor.__file__).parent, quiet=1)"
    )
    subprocess.run([str(python), "-c", compile_code], check=True)
    code = "from monitor import lexicon; lexicon._load()"
    started = time.time()
    subprocess.run([str(python), "-c", code], env={**os.environ, "MONITOR_CACHE_DIR": str(CACHE)}, check=True)
    log(f"monitor cache ready in {time.time() - started:.1f}s: {CACHE}")


def monitor_env(args: argparse.Namespace, name: str, n_stories: int, mix: str = "bench") -> dict[str, str]:
    py = sys.executable
    mon = f"env MONITOR_CACHE_DIR={sh(str(CACHE))} {args.monitor}"
    warm_monitor_cache(args)
    return {
        "EXTRA_PEER_NAME": name,
        "EXTRA_PEER_VERSION": f"{mon} --version",
        "EXTRA_PEER_SETUP": (
            f"{py} -c {sh(CONFIG_SCRIPT)} {{urls_file}} {{state}} {n_stories} {args.concurrency} {mix}"
        ),
        "EXTRA_PEER_CMD": f"{mon} --config {{state}}/monitor.yaml --log-level warning poll",
        "EXTRA_PEER_COUNT": f"{py} -c {sh(COUNT_SCRIPT)} {{state}}/monitor.sqlite3",
    }


def sh(text: str) -> str:
    import shlex

    # run_peers.py formats the commands with str.format: double the braces of literal code.
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


def run_peers(
    args: argparse.Namespace,
    tag: str,
    extra_env: dict[str, str],
    peers: str,
    n: int,
    latency: int,
    repeats: int,
) -> list[dict]:
    results_json = OUT / f"results-{tag}.json"
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("EXTRA_PEER_")]:
        del env[k]
    env.update(extra_env)
    cmd = [
        str(PEERBENCH / ".venv" / "bin" / "python"),
        str(PEERBENCH / "run_peers.py"),
        "--n",
        str(n),
        "--latencies",
        str(latency),
        "--repeats",
        str(repeats),
        "--peers",
        peers,
        "--workdir",
        str(OUT / "work"),
        "--results-json",
        str(results_json),
        "--results-md",
        str(OUT / f"results-{tag}.md"),
        "--notes",
        "/nonexistent",
    ]
    log(f"{tag}: {' '.join(cmd[1:])}")
    subprocess.run(cmd, env=env, check=True)
    return json.loads(results_json.read_text())["rows"]


def summary_row(row: dict) -> dict:
    s = row["summary"]
    out = {
        "peer": row["peer"],
        "version": row["version"],
        "n": row["n"],
        "latency_ms": row["latency_ms"],
        "repeats": row["repeats"],
    }
    for phase in ("cold", "warm", "incr"):
        p = s.get(phase, {})
        out[phase] = {
            "wall_s": p.get("wall_s"),
            "wall_all": p.get("wall_s_all"),
            "cpu_s": (p.get("user_s") or 0) + (p.get("sys_s") or 0),
            "max_rss_mb": (p.get("max_rss_kb") or 0) / 1024,
            "requests": p.get("requests"),
            "n304": p.get("n304"),
            "items": p.get("items"),
            "expected": p.get("expected_items"),
        }
    return out


# --- interleaved rounds -------------------------------------------------------------------------

# The peers that were fastest per phase in every side-by-side run so far (newsboat with 8 threads
# on a first poll, rss2email on the other two).
INTERLEAVED_PEERS = "rss2email,newsboat-t8"


def interleaved(args: argparse.Namespace) -> dict:
    """``--rounds`` rounds; in each, the monitor and every peer of ``--interleave`` run one
    repetition (all three phases), in an order that rotates from round to round. The machine's
    speed drifts (measured here: the same CPU-bound loop took 0.11 s at one moment and 0.23 s a
    few minutes later), and a run of all repetitions of one tool, then of the next, lets such a
    drift land on one tool only; interleaving spreads it over all of them."""
    tools = ["monitor", *[p.strip() for p in args.interleave.split(",") if p.strip()]]
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for r in range(args.rounds):
        k = r % len(tools)
        for tool in tools[k:] + tools[:k]:
            tag = f"interleaved-r{r + 1}-{tool}"
            if tool == "monitor":
                rows = run_peers(args, tag, monitor_env(args, "monitor", 1), "", args.n, 0, 1)
            else:
                rows = run_peers(args, tag, {}, tool, args.n, 0, 1)
            runs[tool].append(summary_row(rows[0]))
    out: dict = {"n": args.n, "rounds": args.rounds, "tools": {}}
    for tool, rows in runs.items():
        entry: dict = {"version": rows[0]["version"]}
        for phase in ("cold", "warm", "incr"):
            walls = [x[phase]["wall_s"] for x in rows]
            entry[phase] = {
                "wall_s": sorted(walls)[len(walls) // 2],
                "wall_all": walls,
                "items": [x[phase]["items"] for x in rows],
                "n304": [x[phase]["n304"] for x in rows],
            }
        out["tools"][tool] = entry
    return out


def interleaved_report(res: dict) -> list[str]:
    it = res.get("interleaved")
    if not it:
        return []
    tools = it["tools"]
    L = [
        f"## Interleaved: N={it['n']}, 0 ms, {it['rounds']} rounds (median; each round runs every tool once, "
        "in rotating order)",
        "",
        "| tool | cold s | warm s | incr s | cold runs | warm runs | incr runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in tools.items():
        L.append(
            f"| {name} {t['version']} | {fmt(t['cold']['wall_s'])} | {fmt(t['warm']['wall_s'])} | "
            f"{fmt(t['incr']['wall_s'])} | "
            + " | ".join(", ".join(fmt(w) for w in t[p]["wall_all"]) for p in ("cold", "warm", "incr"))
            + " |"
        )
    ours = tools.get("monitor")
    peers = {k: v for k, v in tools.items() if k != "monitor"}
    if ours and peers:
        L += ["", "| phase | monitor | fastest peer | ratio (target ≤ 0.5) |", "|---|---|---|---|"]
        for phase in ("cold", "warm", "incr"):
            name, best = min(peers.items(), key=lambda kv: kv[1][phase]["wall_s"])
            ratio = ours[phase]["wall_s"] / best[phase]["wall_s"]
            L.append(
                f"| {phase} | {fmt(ours[phase]['wall_s'])} | {name} {fmt(best[phase]['wall_s'])} | {ratio:.2f} |"
            )
    L.append("")
    return L


# --- the daemon's memory ------------------------------------------------------------------------


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    cur = peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def children_rss_mb(pid: int) -> float:
    total = 0.0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    for kid in kids:
        with contextlib.suppress(OSError):  # the child may have exited meanwhile
            total += rss_mb(int(kid))[0] + children_rss_mb(int(kid))
    return total


def daemon_memory(args: argparse.Namespace, stories: int = 1, advance: float = 0.0) -> dict:
    """`monitor run` against N feeds with a 5 s interval; RSS after every poll round, sampled when
    the server has answered the round's N-th request (the round's last writes may still run).
    ``stories``: how many of the bench's stories the monitor follows; ``advance``: the fraction of
    the feeds that gain 3 new items after every round (0: every poll after the first is all 304s;
    with new items every round, matching, diffing and storing run all the time)."""
    n, polls = args.daemon_n, args.daemon_polls
    corpus = OUT / "work" / f"corpus-{n}"
    if not (corpus / "manifest.json").exists():
        subprocess.run(
            [sys.executable, str(PEERBENCH / "make_corpus.py"), "-n", str(n), "-o", str(corpus)], check=True
        )
    state = OUT / "work" / "state" / f"daemon-n{n}-s{stories}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    port_file = state / "server.port"
    server = subprocess.Popen(
        [
            str(PEERBENCH / ".venv" / "bin" / "python"),
            str(PEERBENCH / "feedserver.py"),
            "serve",
            "--corpus",
            str(corpus),
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    daemon = None
    try:
        for _ in range(600):
            if port_file.exists():
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        (state / "urls.txt").write_text(
            "".join(
                f"{base}/feeds/{s['name']}.xml\n"
                for s in json.loads((corpus / "manifest.json").read_text())["specs"]
            )
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                CONFIG_SCRIPT,
                str(state / "urls.txt"),
                str(state),
                str(stories),
                str(args.concurrency),
            ],
            check=True,
        )
        daemon_log = (state / "daemon.out").open("w")  # closed with the process
        warm_monitor_cache(args)
        daemon = subprocess.Popen(
            [str(args.monitor), "--config", str(state / "monitor.yaml"), "--log-level", "warning", "run"],
            env={**os.environ, "MONITOR_CACHE_DIR": str(CACHE)},
            stdout=daemon_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        samples: list[dict] = []
        started = time.time()
        deadline = started + args.daemon_timeout
        next_round = n
        while len(samples) < polls and time.time() < deadline:
            if daemon.poll() is not None:
                raise RuntimeError(f"monitor run exited: {(state / 'daemon.out').read_text()[-2000:]}")
            with urllib.request.urlopen(base + "/_bench/stats", timeout=10) as r:
                stats = json.loads(r.read())
            if stats["requests"] >= next_round:
                cur, peak = rss_mb(daemon.pid)
                samples.append(
                    {
                        "poll": len(samples) + 1,
                        "requests": stats["requests"],
                        "n304": stats["n304"],
                        "rss_mb": round(cur, 1),
                        "peak_mb": round(peak, 1),
                        "workers_rss_mb": round(children_rss_mb(daemon.pid), 1),
                        "t_s": round(time.time() - started, 1),
                    }
                )
                log(f"daemon poll {len(samples)}: rss {cur:.0f} MB (peak {peak:.0f} MB)")
                next_round += n
                if advance:
                    url = f"{base}/_bench/advance?fraction={advance}&items=3&seed={len(samples)}"
                    urllib.request.urlopen(
                        urllib.request.Request(url, method="POST", data=b""), timeout=30
                    ).read()
            time.sleep(0.2)
        return {"n": n, "stories": stories, "advance": advance, "samples": samples}
    finally:
        for p in (daemon, server):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


# --- report ---------------------------------------------------------------------------------------


def fmt(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "–"
    return f"{ours / theirs:.2f}"


def host() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def report(res: dict) -> str:
    L = [
        f"# story-monitor benchmark ({res['when']})",
        "",
        f"Machine: {res['host']}. {res.get('conditions', '')}",
        "",
    ]
    L += interleaved_report(res)
    rows = res.get("peers", [])
    if rows:
        ours = next((r for r in rows if r["peer"] == "monitor"), None)
        others = [r for r in rows if r["peer"] != "monitor"]
        L += [
            f"## N={rows[0]['n']} feeds, 0 ms latency (median of {rows[0]['repeats']}, one run)",
            "",
            "| tool | cold s | warm s | incr s | cold CPU s | peak RSS MB cold/warm | items cold/warm/incr | 304s warm |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in ([ours] if ours else []) + others:
            L.append(
                f"| {r['peer']} {r['version']} | {fmt(r['cold']['wall_s'])} | {fmt(r['warm']['wall_s'])} | "
                f"{fmt(r['incr']['wall_s'])} | {fmt(r['cold']['cpu_s'])} | "
                f"{fmt(r['cold']['max_rss_mb'], 0)} / {fmt(r['warm']['max_rss_mb'], 0)} | "
                f"{r['cold']['items']} / {r['warm']['items']} / {r['incr']['items']} ({r['incr']['expected']}) | "
                f"{r['warm']['n304']}/{r['warm']['requests']} |"
            )
        if ours and others:
            L += [
                "",
                "Ratio monitor / peer (wall time; < 1 = monitor faster; target ≤ 0.5 against the fastest):",
                "",
                "| peer | cold | warm | incr |",
                "|---|---|---|---|",
            ]
            for r in others:
                L.append(
                    f"| {r['peer']} | "
                    + " | ".join(ratio(ours[p]["wall_s"], r[p]["wall_s"]) for p in ("cold", "warm", "incr"))
                    + " |"
                )
            best = {
                p: min((r[p]["wall_s"] for r in others if r[p]["wall_s"]), default=None)
                for p in ("cold", "warm", "incr")
            }
            L.append(
                "| **fastest peer per phase** | "
                + " | ".join(ratio(ours[p]["wall_s"], best[p]) for p in ("cold", "warm", "incr"))
                + " |"
            )
    for key, title in (
        ("stories", "N=500, 0 ms, 5 stories (matching + diffing)"),
        ("stories-news", "N=500, 0 ms, 5 stories of news-like density (matching + diffing)"),
        ("latency", "N=2000, 50 ms latency (monitor alone)"),
        ("latency-stories", "N=2000, 50 ms latency, 5 stories (monitor alone)"),
    ):
        rows = res.get(key, [])
        if rows:
            r = rows[0]
            L += [
                "",
                f"## {title}",
                "",
                "| phase | wall s (all runs) | CPU s | peak RSS MB | 304s |",
                "|---|---|---|---|---|",
            ]
            for p in ("cold", "warm", "incr"):
                x = r[p]
                L.append(
                    f"| {p} | {fmt(x['wall_s'])} ({', '.join(fmt(w) for w in x['wall_all'] or [])}) | "
                    f"{fmt(x['cpu_s'])} | {fmt(x['max_rss_mb'], 0)} | {x['n304']}/{x['requests']} |"
                )
    ours = next((r for r in res.get("peers", []) if r["peer"] == "monitor"), None)
    for key, what in (("stories", "5 stories"), ("stories-news", "5 stories of news-like density")):
        five = (res.get(key) or [None])[0]
        if ours and five:
            L += [
                "",
                f"{what} against 1 story (wall time ratio; target ≤ 1.20): "
                + ", ".join(
                    f"{p} {ratio(five[p]['wall_s'], ours[p]['wall_s'])}" for p in ("cold", "warm", "incr")
                ),
            ]
    L += five_story_targets(res)
    for d in (res.get("daemon"), res.get("daemon-stories")):
        if not d or not d.get("samples"):
            continue
        s = d["samples"]
        what = f"{d.get('stories', 1)} {'story' if d.get('stories', 1) == 1 else 'stories'}"
        if d.get("advance"):
            what += f", {d['advance']:.0%} of the feeds gain 3 items after every round"
        L += [
            "",
            f"## `monitor run`, N={d['n']}, {what}: RSS after each poll round",
            "",
            "| poll | RSS MB | peak MB | parse workers MB | 304s | t s |",
            "|---|---|---|---|---|---|",
        ]
        for x in s:
            L.append(
                f"| {x['poll']} | {x['rss_mb']} | {x['peak_mb']} | {x['workers_rss_mb']} | {x['n304']} | {x['t_s']} |"
            )
    return "\n".join(L) + "\n"


def five_story_targets(res: dict) -> list[str]:
    """Every target of the issue, measured with the 5 stories: the reading of "the pipeline with 5
    stories keeps these numbers within 20 %" under which the targets, not the one-story times,
    are what must hold (the report gives the other reading, 5 stories against 1, above). It reads
    whatever ``results.json`` holds: scenarios run with separate ``--only`` calls are merged there,
    so run them on one machine, one after the other (the report's header names the last run)."""
    five = (res.get("stories") or [None])[0]
    # The peers, side by side (median of the repetitions) and interleaved (median of the rounds):
    # per phase, the fastest of all of them is the one to beat.
    peers = [(f"{r['peer']}, side by side", r) for r in res.get("peers", []) if r["peer"] != "monitor"]
    interleaved_tools = ((res.get("interleaved") or {}).get("tools") or {}).items()
    peers += [(f"{name}, interleaved", t) for name, t in interleaved_tools if name != "monitor"]
    rows: list[str] = []
    for phase in ("cold", "warm", "incr"):
        times = [(name, p[phase]["wall_s"]) for name, p in peers if p[phase]["wall_s"]]
        if not five or not times or not five[phase]["wall_s"]:
            continue
        name, best = min(times, key=lambda x: x[1])
        got = five[phase]["wall_s"] / best
        rows.append(
            f"| N=500, {phase}: of the fastest peer ({name}, {fmt(best)} s) | ≤ 0.50 | ≤ 0.60 | {got:.2f} |"
        )
    lat = (res.get("latency-stories") or [None])[0]
    if lat and lat["warm"]["wall_s"]:
        rows.append(f"| N=2000, 50 ms, warm: s | < 2.00 | < 2.40 | {fmt(lat['warm']['wall_s'])} |")
    d = res.get("daemon-stories")
    if d and len(d.get("samples", [])) >= 3:
        rss = [x["rss_mb"] for x in d["samples"]]
        rows.append(f"| `monitor run` N=2000, RSS after 3 polls: MB | < 250 | < 300 | {rss[2]:.1f} |")
        rows.append(
            f"| `monitor run`, RSS range over polls 3–{len(rss)}: MB | flat | – | {min(rss[2:]):.1f}–{max(rss[2:]):.1f} |"
        )
    if not rows:
        return []
    return [
        "",
        "## Every target with the 5 stories",
        "",
        "| target | issue | + 20 % | 5 stories |",
        "|---|---|---|---|",
        *rows,
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only", default="peers,stories,stories-news,latency,latency-stories,daemon,daemon-stories"
    )
    ap.add_argument("--peers", default=PEERS, help=f"peers for the side-by-side run (default {PEERS})")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument(
        "--monitor", type=Path, default=DEFAULT_MONITOR, help="the monitor entry point to measure"
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the interleaved scenario")
    ap.add_argument(
        "--interleave",
        default=INTERLEAVED_PEERS,
        help=f"peers of the interleaved scenario (default {INTERLEAVED_PEERS})",
    )
    ap.add_argument("--daemon-n", type=int, default=2000)
    ap.add_argument("--daemon-polls", type=int, default=20)
    ap.add_argument("--daemon-timeout", type=float, default=900)
    ap.add_argument("--conditions", default="", help="free text noted in the report (e.g. machine load)")
    ap.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    args = ap.parse_args()
    if args.report_only:
        res = json.loads((OUT / "results.json").read_text())
        (OUT / "results.md").write_text(report(res))
        print(report(res))
        return 0
    OUT.mkdir(exist_ok=True)
    ensure_peerbench()
    only = set(args.only.split(","))
    res_path = OUT / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    res.update(
        {"when": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "host": host(), "conditions": args.conditions}
    )
    if "peers" in only:
        rows = run_peers(args, "peers", monitor_env(args, "monitor", 1), args.peers, args.n, 0, args.repeats)
        res["peers"] = [summary_row(r) for r in rows]
    if "stories" in only:
        rows = run_peers(
            args, "stories", monitor_env(args, "monitor-5-stories", 5), "", args.n, 0, args.repeats
        )
        res["stories"] = [summary_row(r) for r in rows]
    if "stories-news" in only:
        rows = run_peers(
            args,
            "stories-news",
            monitor_env(args, "monitor-5-news-stories", 5, "news"),
            "",
            args.n,
            0,
            args.repeats,
        )
        res["stories-news"] = [summary_row(r) for r in rows]
    if "latency" in only:
        rows = run_peers(args, "latency", monitor_env(args, "monitor", 1), "", 2000, 50, args.repeats)
        res["latency"] = [summary_row(r) for r in rows]
    if "latency-stories" in only:
        rows = run_peers(
            args, "latency-stories", monitor_env(args, "monitor-5-stories", 5), "", 2000, 50, args.repeats
        )
        res["latency-stories"] = [summary_row(r) for r in rows]
    if "daemon" in only:
        res["daemon"] = daemon_memory(args)
    if "daemon-stories" in only:
        res["daemon-stories"] = daemon_memory(args, stories=5, advance=0.1)
    if "interleaved" in only:
        res["interleaved"] = interleaved(args)
    res_path.write_text(json.dumps(res, indent=1))
    (OUT / "results.md").write_text(report(res))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
