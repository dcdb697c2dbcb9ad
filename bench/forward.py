#!/usr/bin/env python3
"""Benchmark server-side forwarding (issue #8): the outbox's delivery rate, and what forwarding costs
``POST /collect``, in one run.

    .venv/bin/python bench/forward.py            # 20,000 events through the outbox; wrk 10 s × 2 rounds
    .venv/bin/python bench/forward.py --quick    # a sanity check

1. **Outbox throughput** (one process, this one): a real journal in a temporary directory gets
   ``--events`` marketing-consented event rows as ``put_rows`` writes them (70 % pageview, 20 %
   apply_click, 10 % apply_complete, each visitor with its channel ids), sealed; then the outbox
   (the real one, fsync on, channel limits opened to 16 in flight and 10,000/s) runs its passes until
   every delivery is final and logged. Deliveries/s = deliveries made final ÷ wall time. The channels
   are a counting HTTP server in a child process (its work is not counted here), answering 200.
2. **Ingest, forwarding off vs on**: ``bench/collect.py``'s method (the real server started with
   ``python -m pixel_server serve``, the same 20,000 User-Agents and 5,000 bodies, wrk with
   ``collect.lua``), with about 30 % of the visitor tokens granting marketing and every event carrying
   ``channel_ids``. The same load runs against a config without and with ``secret_env`` on the four
   server channels (endpoints: the counting server; the default per-channel limits, 2 requests in
   flight and 10 requests/s, as a deployment has them), alternating ``--rounds`` times; events/s are
   compared round by round and on the mean. At this load the outbox's backlog grows (GA4 takes one
   event per request): the figure is what forwarding costs the requests, not a delivery rate.

Target: forwarding on costs ``/collect`` at most 10 % of its events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import collect  # noqa: E402

SECRETS = {
    "GA4_API_SECRET": "bench-ga4",
    "META_TOKEN": "bench-meta",
    "LI_TOKEN": "bench-li",
    "SNAP_TOKEN": "bench-snap",
}
CHANNELS = """
[sites.bench.channels.ga4]
id = "G-BENCH1"
{ga4}
[sites.bench.channels.meta]
id = "1234567890"
{meta}
[sites.bench.channels.linkedin]
id = "123456"
{linkedin}
[sites.bench.channels.snapchat]
id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
{snapchat}
"""
FORWARDING = """
[forwarding]
timeout_ms = 5000
[forwarding.endpoints]
ga4 = "{url}"
meta = "{url}"
linkedin = "{url}"
snapchat = "{url}"
{limits}
"""
LIMITS = "".join(
    f"[forwarding.limits.{c}]\nconcurrency = 16\nrate_per_s = 10000\n"
    for c in ("ga4", "meta", "linkedin", "snapchat")
)
SECRET_LINES = {
    "ga4": 'secret_env = "GA4_API_SECRET"',
    "meta": 'secret_env = "META_TOKEN"',
    "linkedin": 'secret_env = "LI_TOKEN"\nconversion_rule = "987654"',
    "snapchat": 'secret_env = "SNAP_TOKEN"',
}
MARKETING_TOKENS = 5  # of --tokens (16): ~31 % of the visitors granted marketing
TARGET_COST = 0.10


# -- the channels' stand-in: counts requests and events, answers 200 -------------------------------------
class Counter(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default 5 refuses connections when the outbox opens many at once
    requests = 0
    events = 0
    lock = threading.Lock()


class CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Counter

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        n = body.count(b"event_id") + body.count(b"eventId")
        with self.server.lock:
            self.server.requests += 1
            self.server.events += n
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"requests": self.server.requests, "events": self.server.events}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_counter(port: int) -> None:
    server = Counter(("127.0.0.1", port), CountingHandler)
    print("ready", flush=True)
    server.serve_forever(0.05)


def start_counter() -> tuple[subprocess.Popen[bytes], str]:
    port = collect.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "--counter", str(port)], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, f"http://127.0.0.1:{port}"


def counted(url: str) -> dict[str, int]:
    got: dict[str, int] = httpx.get(url + "/", trust_env=False).json()
    return got


# -- 1. outbox throughput ------------------------------------------------------------------------------
def outbox_rows(n: int, seed: int) -> list[dict[str, Any]]:
    r = random.Random(seed)
    rows = []
    now = time.time()
    for i in range(n):
        name = r.choices(["pageview", "apply_click", "apply_complete"], [70, 20, 10])[0]
        ts = round(now - r.uniform(1, 600), 3)
        rows.append(
            {
                "event_id": str(uuid.uuid4()),
                "site_id": "bench",
                "ad_id": str(r.randint(100_000, 100_400)),
                "name": name,
                "ts": ts,
                "visitor_id": str(uuid.uuid4()),
                "url": f"{collect.ORIGIN}/jobb/4711?fbclid=IwAR{i}&li_fat_id=li-{i}",
                "click_ids": {"fbclid": f"IwAR{i}", "li_fat_id": f"li-{i}"},
                "marketing": 1,
                "consent_id": str(uuid.uuid4()),
                "choice_id": str(uuid.uuid4()),
                "grant_issued_at": ts - 60,
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36",
                "channel_ids": {"ga_client_id": f"{i}.1700000000", "fbp": f"fb.1.1.{i}", "scid": f"scid-{i}"},
                "retention_days": 395,
            }
        )
    return rows


async def outbox_run(tmp: Path, url: str, n: int, seed: int) -> dict[str, Any]:
    from pixel_server.consent.revocation import Revocations
    from pixel_server.core import settings as settings_mod
    from pixel_server.core.journal import Journal
    from pixel_server.forwarding.outbox import CONSUMER, Outbox

    cfg_path = tmp / "outbox.toml"
    cfg_path.write_text(config_text(0, tmp / "outbox-data", url, forwarding=True, open_limits=True))
    env = {**SECRETS, "JOBPIXEL_SIGNING_KEYS": "k" * 32, "JOBPIXEL_HASH_KEY": "h" * 32}
    settings = settings_mod.load(cfg_path, env)
    journal = Journal(settings.journal_dir, (CONSUMER,))
    rows = outbox_rows(n, seed)
    for i in range(0, n, 1000):
        await journal.append("events", rows[i : i + 1000])
    journal.rotate()
    revocations = Revocations()
    revocations.history_loaded = True

    class NullLog:
        rows = 0

        async def write(self, batch: Any) -> None:
            NullLog.rows += len(batch)

    box = Outbox(settings, journal.cursor(CONSUMER), revocations, NullLog(), fsync=True)
    before = counted(url)
    started = time.perf_counter()
    cpu0 = time.process_time()
    await box.open()
    passes = 0
    while True:
        passes += 1
        await box.run_once()
        if not journal.cursor(CONSUMER).pending() and not box.store.pending() and not box.store.unlogged():
            break
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    after = counted(url)
    await box.stop()
    journal.close()
    made = after["requests"] - before["requests"]
    statuses = {
        k: int(box.metrics.value("jobpixel_forward_sent_total", channel=k))
        for k in ("ga4", "meta", "linkedin", "snapchat")
    }
    return {
        "events": n,
        "deliveries": NullLog.rows,
        "sent_by_channel": statuses,
        "requests": made,
        "events_in_requests": after["events"] - before["events"],
        "seconds": round(seconds, 2),
        "deliveries_per_s": round(NullLog.rows / seconds),
        "requests_per_s": round(made / seconds),
        "process_cpu_s": round(cpu, 2),
        "passes": passes,
    }


# -- 2. ingest off vs on ---------------------------------------------------------------------------------
def config_text(port: int, data_dir: Path, url: str, forwarding: bool, open_limits: bool = False) -> str:
    text = collect.CONFIG.format(port=port, data_dir=data_dir, origin=collect.ORIGIN)
    lines = SECRET_LINES if forwarding else dict.fromkeys(SECRET_LINES, "")
    text += CHANNELS.format(**lines)
    if forwarding:
        text += FORWARDING.format(url=url, limits=LIMITS if open_limits else "")
    return text


def get_tokens(server: collect.Server, n: int, marketing: int) -> list[str]:
    tokens = []
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        for i in range(n):
            granted = ["necessary", "statistics"] + (["marketing"] if i < marketing else [])
            choice = {
                "site": collect.SITE,
                "consent_id": str(uuid.uuid4()),
                "choice_id": str(uuid.uuid4()),
                "action": "accept_all" if i < marketing else "custom",
                "granted": granted,
                "denied": [] if i < marketing else ["marketing"],
                "revision": 1,
                "lang": "nb",
                "gpc": False,
                "layer": 1,
            }
            res = client.post(
                server.url + "/consent",
                content=orjson.dumps(choice),
                headers={"Origin": collect.ORIGIN, "Content-Type": "text/plain", "User-Agent": "bench"},
            )
            if res.status_code != 200:
                raise collect.BenchError(f"POST /consent answered {res.status_code}: {res.text[:300]}")
            tokens.append(res.json()["token"])
    return tokens


def with_channel_ids(load: collect.Load) -> collect.Load:
    """Every event carries the channel ids the tags would have set (ignored without marketing)."""
    bodies = []
    for i, body in enumerate(load.bodies):
        doc = orjson.loads(body)
        events = doc if isinstance(doc, list) else [doc]
        for ev in events:
            ev["channel_ids"] = {
                "ga_client_id": f"{i}.1700000000",
                "fbp": f"fb.1.1.{i}",
                "scid": f"scid-{i}",
                "li_fat_id": f"li-{i}",
            }
        bodies.append(orjson.dumps(doc).decode())
    return collect.Load(load.uas, bodies, load.events_per_body, load.mix)


def ingest_runs(args: argparse.Namespace, tmp: Path, url: str) -> dict[str, Any]:
    key = secrets.token_urlsafe(32)
    env_extra = SECRETS
    port = collect.free_port()
    cfg = {name: tmp / f"{name}.toml" for name in ("off", "on")}
    for name in cfg:
        cfg[name].write_text(config_text(port, tmp / f"data-{name}", url, forwarding=name == "on"))

    def server(name: str, rnd: int = 0) -> collect.Server:
        cfg[name].write_text(config_text(port, tmp / f"data-{name}-{rnd}", url, forwarding=name == "on"))
        s = collect.jobpixel_server(cfg[name], port, key, tmp / f"jobpixel-{name}.log")
        s.env.update(env_extra)
        s.name = f"forwarding {name}"
        return s

    first = server("off")
    first.start()
    tokens = get_tokens(first, args.tokens, MARKETING_TOKENS)
    first.stop()
    load = with_channel_ids(collect.make_load(args.uas, args.bodies, tokens, args.seed))
    ua_file, body_file = load.write(tmp)
    wrk_args = argparse.Namespace(threads=2, connections=64, duration=args.duration, timeout=5)
    runs: list[dict[str, Any]] = []
    command = ""
    for rnd in range(args.rounds):
        for name in ("off", "on"):
            s = server(name, rnd + 1)  # a fresh data dir: no backlog from an earlier run
            s.start()
            collect.sanity_post(s, load)
            quiet = collect.wait_quiet(args.wait_quiet)
            cmd = collect.wrk_command(wrk_args, s.url, ua_file, body_file)
            command = " ".join(cmd).replace(str(tmp), "$TMP")
            before = counted(url)
            run = collect.run_wrk(cmd, s, args.duration, len(load.uas))
            ready = httpx.get(s.url + "/readyz", headers=collect.OPS, trust_env=False).json()
            after = counted(url)
            s.stop()
            out = {
                "round": rnd + 1,
                "forwarding": name,
                "events_per_s": round(run["events_per_s"]),
                "requests_per_s": round(run["requests_per_s"]),
                "p99_ms": round(run["latency_us"]["p99"] / 1000, 2),
                "non_2xx": run["non_2xx"],
                "socket_errors": run["socket_errors"],
                "server_cpu_s": run["server_cpu_s"],
                # the delivery process (forwarding/child.py): the server's child, outside its GIL
                "delivery_process_cpu_s": run["server_children_cpu_s"],
                # CPU per accepted event: less bent by other processes on the machine than events/s
                "server_cpu_us_per_event": round(
                    run["server_cpu_s"] / max(1, run["events_per_s"] * run["seconds"]) * 1e6
                ),
                "server_and_delivery_cpu_us_per_event": round(
                    (run["server_cpu_s"] + run["server_children_cpu_s"])
                    / max(1, run["events_per_s"] * run["seconds"])
                    * 1e6
                ),
                "other_cpu_share": run["other_cpu_share"],
                "quiet_before": quiet,
                "outbox_after_load": ready.get("outbox"),
                "channel_requests_during_load": after["requests"] - before["requests"],
                "channel_events_during_load": after["events"] - before["events"],
            }
            runs.append(out)
            print(
                f"bench: round {rnd + 1} forwarding {name}: {out['events_per_s']:,} events/s, "
                f"{out['server_cpu_us_per_event']} µs server CPU/event, delivery process "
                f"{out['delivery_process_cpu_s']} s CPU, other processes "
                f"{out['other_cpu_share']:.0%} of the CPU, p99 {out['p99_ms']} ms, "
                f"outbox after {out['outbox_after_load']}, "
                f"channel events {out['channel_events_during_load']:,}"
            )
    off = [r["events_per_s"] for r in runs if r["forwarding"] == "off"]
    on = [r["events_per_s"] for r in runs if r["forwarding"] == "on"]
    mean_off, mean_on = sum(off) / len(off), sum(on) / len(on)
    cost = 1 - mean_on / mean_off
    cpu_off = [r["server_cpu_us_per_event"] for r in runs if r["forwarding"] == "off"]
    cpu_on = [r["server_cpu_us_per_event"] for r in runs if r["forwarding"] == "on"]
    cpu_cost = sum(cpu_on) / len(cpu_on) / (sum(cpu_off) / len(cpu_off)) - 1
    both_on = [r["server_and_delivery_cpu_us_per_event"] for r in runs if r["forwarding"] == "on"]
    return {
        "command": command,
        "marketing_share_of_tokens": round(MARKETING_TOKENS / args.tokens, 3),
        "runs": runs,
        "events_per_s_off_mean": round(mean_off),
        "events_per_s_on_mean": round(mean_on),
        "cost": round(cost, 3),
        "cpu_per_event_off_mean_us": round(sum(cpu_off) / len(cpu_off)),
        "cpu_per_event_on_mean_us": round(sum(cpu_on) / len(cpu_on)),
        "cpu_cost": round(cpu_cost, 3),
        "cpu_per_event_on_with_delivery_process_mean_us": round(sum(both_on) / len(both_on)),
        "target_met": cost <= TARGET_COST,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events through the outbox (default 20000)")
    p.add_argument("-d", "--duration", type=int, default=10, help="wrk seconds per ingest run (default 10)")
    p.add_argument("--rounds", type=int, default=2, help="off/on pairs (default 2)")
    p.add_argument("--quick", action="store_true", help="2,000 events, 3 s, one round")
    p.add_argument("--uas", type=int, default=20_000)
    p.add_argument("--bodies", type=int, default=5_000)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--wait-quiet", type=float, default=60)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--skip-outbox", action="store_true", help="only the ingest comparison")
    p.add_argument("--counter", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.counter:
        serve_counter(args.counter)
        return 0
    if args.quick:
        args.events, args.duration, args.rounds = 2_000, 3, 1
    collect.wrk_path()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="jobpixel-forward-"))
    counter, url = start_counter()
    res: dict[str, Any] = {"started": stamp, "machine": collect.machine()}
    try:
        if not args.skip_outbox:
            print(f"bench: outbox, {args.events:,} events (counting server {url})")
            res["outbox"] = asyncio.run(outbox_run(tmp, url, args.events, args.seed))
            o = res["outbox"]
            print(
                f"bench: outbox: {o['deliveries']:,} deliveries in {o['seconds']} s"
                f" = {o['deliveries_per_s']:,}/s ({o['requests']:,} requests,"
                f" {o['requests_per_s']:,}/s; {o['process_cpu_s']} CPU s;"
                f" sent {o['sent_by_channel']})"
            )
        res["ingest"] = ingest_runs(args, tmp, url)
        i = res["ingest"]
        print(
            f"\nbench: /collect events/s, forwarding off {i['events_per_s_off_mean']:,} vs on "
            f"{i['events_per_s_on_mean']:,}: cost {i['cost']:.1%} (target ≤ {TARGET_COST:.0%}: "
            f"{'MET' if i['target_met'] else 'MISSED'})"
        )
        print(
            f"bench: server CPU per event, off {i['cpu_per_event_off_mean_us']} µs vs on "
            f"{i['cpu_per_event_on_mean_us']} µs: {i['cpu_cost']:+.1%}; with the delivery process's "
            f"{i['cpu_per_event_on_with_delivery_process_mean_us']} µs"
        )
        print(f"bench: wrk: {i['command']}")
    except collect.BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        counter.terminate()
        counter.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"forward-{stamp}.json"
        out.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
        print(f"bench: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    sys.exit(main())
