#!/usr/bin/env python3
"""Benchmark ``POST /collect`` against a plain Starlette baseline, in one run.

    .venv/bin/python bench/collect.py            # wrk -t2 -c64 -d10s, both servers
    .venv/bin/python bench/collect.py --quick    # ~3 s each: a sanity check
    make bench

What it does (see bench/README.md):

1. Writes a temporary config (one site ``bench``, origin ``http://bench.example``,
   chDB under a temporary directory) and starts the real server with
   ``python -m pixel_server serve`` and a random ``JOBPIXEL_SIGNING_KEYS``.
2. Gets visitor tokens from ``POST /consent`` (statistics granted), stops it, and
   writes the load: 20,000 distinct browser User-Agents (bench/useragents.py) and
   5,000 event bodies shaped like the pixel's beacons (pageview, engagement,
   apply_click, apply_complete, a few small batches), each event id completed per
   request by the wrk script (bench/collect.lua) so every event is new.
3. Runs wrk against the baseline (bench/baseline_app.py on uvicorn, same flags),
   then against jobpixel restarted on the same data, with the same wrk command and
   the same bodies.
4. After the jobpixel run: waits for the spool to drain, reads the accepted counter
   and the peak RSS, stops the server (SIGTERM: it flushes), opens the chDB path
   itself and counts ``jobpixel.events FINAL``: every acknowledged event must be there.
5. Prints a summary and writes it to ``bench/results/collect-<UTC time>.json``.

A run is invalid (exit 1) when any answer was not 204, wrk saw socket errors, or the
stored count does not match. Missing the issue #2 target (≥ 10,000 events/s durable,
≥ 0.25 of the baseline) is reported, and fails the run only with ``--require-target``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LUA = BENCH / "collect.lua"
sys.path.insert(0, str(BENCH))

import useragents  # noqa: E402

SITE = "bench"
ORIGIN = "http://bench.example"
SLOT = "@@SLOT@@"  # where the wrk script puts the last 12 hex digits of an event id
TARGET_EVENTS_PER_S = 10_000
TARGET_RATIO = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIG = """\
# written by bench/collect.py
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{data_dir}"
log_level = "warning"

[storage]
backend = "chdb"

[partners.bench]
name = "Bench AS"

[sites.bench]
partner = "bench"
origins = ["{origin}"]
retention_days = 395
consent_days = 182
revision = 1
lang = "nb"
ad_pattern = "/jobb/{{ad}}"
ats_hosts = ["ats.example.com"]
thanks_pattern = "/takk*"

# The load comes from one address (wrk on loopback) and 16 grants: the visitor limits are raised
# far above it, so the run measures the pipeline, not the 429s (README "Limits" has the defaults).
[limits]
ip_rate_per_s = 1000000
ip_burst = 10000000
grant_rate_per_s = 1000000
grant_burst = 10000000
"""


class BenchError(RuntimeError):
    pass


# -- servers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    ready_path: str = "/readyz"
    ready_any: bool = False  # ready once it answers at all (the baseline has no /readyz)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with {self.proc.returncode} at start\n{self.log_tail()}"
                    )
                try:
                    status = client.get(self.url + self.ready_path).status_code
                    if status == 200 or self.ready_any:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} was not ready after {timeout:.0f} s\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM and wait; SIGKILL after ``timeout``. Returns (exit code, seconds)."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(
                f"  ! {self.name} did not stop within {timeout:.0f} s of SIGTERM; killing it", file=sys.stderr
            )
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - started

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def children_cpu_seconds(self) -> float:
        """CPU of the server's live child processes (the delivery process when forwarding is on)."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.pid:  # ppid
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def memory_kib(self) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
        return out


class RssSampler:
    """Samples the server's resident memory every 0.2 s while wrk runs, split the way the kernel keeps it.

    VmHWM (the peak of VmRSS) counts file-backed pages too: the pages of chDB's 555 MB shared library
    that the process mapped (shared with the page cache, read back from the file when reclaimed).
    How many depends on how the file came into the page cache: ~210 MiB when read from disk,
    ~300-370 MiB right after pip wrote it (bench/README.md). RssAnon is what the process allocated
    itself: Python, chDB's heap, buffers.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak_anon = self.peak_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                m = self.server.memory_kib()
            except OSError:
                return
            self.peak_anon = max(self.peak_anon, m.get("RssAnon", 0))
            self.peak_file = max(self.peak_file, m.get("RssFile", 0))
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + ln for ln in lines[-n:])


OPS_TOKEN = secrets.token_urlsafe(24)  # /metrics and the full /readyz answer only to it
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


def jobpixel_server(config: Path, port: int, key: str, log: Path) -> Server:
    env = dict(os.environ, JOBPIXEL_SIGNING_KEYS=key, JOBPIXEL_HASH_KEY=key[::-1])
    env["JOBPIXEL_OPS_TOKEN"] = OPS_TOKEN
    argv = [sys.executable, "-m", "pixel_server", "serve", "--config", str(config), "--port", str(port)]
    return Server("jobpixel", argv, port, log, env)


def baseline_server(port: int, log: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "baseline_app:app",
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--no-server-header",
        "--no-proxy-headers",
        "--log-level",
        "warning",
    ]
    return Server("baseline", argv, port, log, ready_path="/", ready_any=True)


# -- the load -----------------------------------------------------------------


def get_tokens(server: Server, n: int) -> list[str]:
    tokens = []
    headers = {
        "Origin": ORIGIN,
        "Content-Type": "text/plain;charset=UTF-8",
        "User-Agent": useragents.generate(1)[0],
    }
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        for _ in range(n):
            choice = {
                "site": SITE,
                "consent_id": str(uuid.uuid4()),
                "choice_id": str(uuid.uuid4()),
                "action": "custom",
                "granted": ["necessary", "statistics"],
                "denied": ["marketing"],
                "revision": 1,
                "lang": "nb",
                "gpc": False,
                "layer": 2,
            }
            res = client.post(server.url + "/consent", content=orjson.dumps(choice), headers=headers)
            if res.status_code != 200 or not res.json().get("token"):
                raise BenchError(f"POST /consent answered {res.status_code}: {res.text[:300]}")
            tokens.append(res.json()["token"])
    return tokens


_REFERRERS = [
    ("", 30),
    ("https://www.google.com/", 22),
    ("https://www.finn.no/", 12),
    ("https://www.linkedin.com/", 8),
    ("https://l.facebook.com/", 6),
    ("https://www.nav.no/", 5),
    ("https://www.bing.com/", 3),
    ("https://duckduckgo.com/", 2),
    ("https://t.co/", 1),
    (ORIGIN + "/jobb", 8),
    (ORIGIN + "/", 3),
]
_CAMPAIGNS = [
    "?utm_source=facebook&utm_medium=paid_social&utm_campaign=sommerjobb",
    "?utm_source=linkedin&utm_medium=social&utm_campaign=it-utvikler",
    "?utm_source=finn&utm_medium=referral",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=uke-{n}&utm_content=knapp",
    "?gclid=Cj0KCQjw{r}BhDNARIsAG",
    "?fbclid=IwAR{r}x9_aem_{r}",
    "?li_fat_id={u}",
]


@dataclass
class Load:
    uas: list[str]
    bodies: list[str]  # JSON with SLOT where an event id's last 12 hex digits go
    events_per_body: list[int]
    mix: dict[str, int]

    @property
    def mean_events(self) -> float:
        return sum(self.events_per_body) / len(self.events_per_body)

    def write(self, directory: Path) -> tuple[Path, Path]:
        ua_file, body_file = directory / "uas.txt", directory / "bodies.txt"
        ua_file.write_text("\n".join(self.uas) + "\n")
        body_file.write_text("\n".join(b.replace(SLOT, "\t") for b in self.bodies) + "\n")
        return ua_file, body_file

    def sample(self, i: int, tag: str = "ff") -> bytes:
        """Body ``i`` with its slots filled outside wrk's id space (wrk threads are 00, 01, …)."""
        parts = self.bodies[i].split(SLOT)
        out = parts[0]
        for k, p in enumerate(parts[1:]):
            out += f"{tag}{k:02x}{secrets.randbits(32):08x}" + p
        return out.encode()


def make_load(n_uas: int, n_bodies: int, tokens: list[str], seed: int) -> Load:
    r = random.Random(seed)
    ids = random.Random(secrets.randbits(64))  # event ids differ from run to run
    now_ms = int(time.time() * 1000)
    ads = [str(r.randint(100_000, 999_999)) for _ in range(400)]
    refs, ref_w = zip(*_REFERRERS, strict=True)

    def eid() -> str:
        g = ids.getrandbits
        return f"{g(32):08x}-{g(16):04x}-4{g(12):03x}-{ids.choice('89ab')}{g(12):03x}-{SLOT}"

    def page() -> dict[str, Any]:
        ad = r.choice(ads)
        url = f"{ORIGIN}/jobb/{ad}"
        if r.random() < 0.25:
            url += r.choice(_CAMPAIGNS).format(n=r.randint(1, 52), r=secrets.token_hex(8), u=uuid.uuid4())
        return {
            "ad": ad,
            "url": url,
            "referrer": r.choices(refs, ref_w)[0],
            "token": r.choice(tokens),
            "marketing": r.random() < 0.3,
            "pageview_id": str(uuid.UUID(int=ids.getrandbits(128), version=4)),
        }

    def event(name: str, p: dict[str, Any], **extra: Any) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "site": SITE,
            "ad": p["ad"],
            "name": name,
            "url": p["url"],
            "referrer": p["referrer"],
            "event_id": eid(),
        }
        if name != "pageview":
            ev["pageview_id"] = p["pageview_id"]
        ev |= {"client_ts": now_ms - r.randint(0, 5_000), "token": p["token"], "marketing": p["marketing"]}
        return ev | extra

    def engagement(p: dict[str, Any]) -> dict[str, Any]:
        return event(
            "engagement",
            p,
            engaged_ms=r.randint(3_000, 120_000),
            scroll=r.randint(0, 100),
            activity=r.randint(0, 24),
        )

    kinds = [("pageview", 45), ("engagement", 40), ("apply_click", 8), ("apply_complete", 2), ("batch", 5)]
    names, weights = zip(*kinds, strict=True)
    bodies, counts = [], []
    mix: collections.Counter[str] = collections.Counter()
    for _ in range(n_bodies):
        kind = r.choices(names, weights)[0]
        p = page()
        doc: Any
        if kind == "pageview":
            doc = event("pageview", p)
        elif kind == "engagement":
            doc = engagement(p)
        elif kind == "apply_click":
            doc = event("apply_click", p)
        elif kind == "apply_complete":
            doc = event("apply_complete", p, props={"source": "ats", "step": "submitted"})
        else:  # what a page flushes at once: a pageview and its engagement, or engagement then a click
            doc = [event("pageview", p)] + [engagement(p) for _ in range(r.randint(1, 3))]
            if r.random() < 0.3:
                doc.append(event("apply_click", p))
        body = orjson.dumps(doc).decode()
        assert "\t" not in body and "\n" not in body
        bodies.append(body)
        counts.append(body.count(SLOT))
        mix[kind] += 1
    return Load(useragents.generate(n_uas, seed), bodies, counts, dict(mix))


# -- the machine's other load --------------------------------------------------


def cpu_busy_seconds() -> float:
    """CPU time spent by all tasks (user + nice + system), all cores, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[0]) + int(fields[1]) + int(fields[2])) / CLK_TCK


def wait_quiet(limit_s: float, busy_max: float = 0.15) -> dict[str, Any]:
    """Wait (up to ``limit_s``) until the rest of the machine uses < ``busy_max`` of its cores.

    Other sessions share these two cores (test suites, browsers); a benchmark taken
    next to them measures them too. Returns what was seen, for the record.
    """
    cores = os.cpu_count() or 1
    started = time.monotonic()
    while True:
        b0, t0 = cpu_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        busy = (cpu_busy_seconds() - b0) / (time.monotonic() - t0) / cores
        waited = time.monotonic() - started
        if busy < busy_max:
            return {"busy_before": round(busy, 3), "waited_s": round(waited, 1), "quiet": True}
        if waited >= limit_s:
            print(f"  ! the machine is {busy:.0%} busy with other work; measuring anyway", file=sys.stderr)
            return {"busy_before": round(busy, 3), "waited_s": round(waited, 1), "quiet": False}
        if waited < 1.5:
            print(f"bench: the machine is {busy:.0%} busy with other work; waiting up to {limit_s:.0f} s")


# -- wrk ------------------------------------------------------------------------


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit(
            "bench: wrk not found. Install the Debian package: apt-get install wrk "
            "(as root; run apt-get update first on a fresh machine)"
        )
    return path


def wrk_command(args: argparse.Namespace, url: str, ua_file: Path, body_file: Path) -> list[str]:
    return [
        wrk_path(),
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "--timeout",
        f"{args.timeout}s",
        "-s",
        str(LUA),
        url + "/collect",
        "--",
        str(ua_file),
        str(body_file),
        ORIGIN,
    ]


def distinct_uas(spans: list[list[int]], n: int) -> int:
    """How many of the ``n`` User-Agents the wrk threads used: each thread walks the list from its start."""
    seen = bytearray(n)
    for start, count in spans:
        if count >= n:
            return n
        for k in range(count):
            seen[(start + k) % n] = 1
    return sum(seen)


def run_wrk(
    cmd: list[str], server: Server, duration: int, n_uas: int, profile: Path | None = None
) -> dict[str, Any]:
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(duration),
                "--rate",
                "250",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    busy0, cpu0, rus0 = cpu_busy_seconds(), server.cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    kids0 = server.children_cpu_seconds()
    with RssSampler(server) as rss:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    rus1, cpu1, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), server.cpu_seconds(), cpu_busy_seconds()
    kids1 = server.children_cpu_seconds()
    if spy is not None:
        _, err = spy.communicate(timeout=120)
        if spy.returncode != 0:
            print(f"  ! py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = None
    others = []
    for line in proc.stdout.splitlines():
        if line.startswith("JSON:"):
            data = json.loads(line[5:])
        elif line.startswith("OTHER:"):
            others.append(line[6:])
    if data is None:
        raise BenchError(f"wrk printed no summary:\n{proc.stdout}\n{proc.stderr}")
    seconds = data["duration_us"] / 1e6
    data |= {
        "seconds": seconds,
        "requests_per_s": data["requests"] / seconds,
        "ok204_per_s": data["ok204"] / seconds,
        "events_per_request": data["sent_events"] / max(1, data["sent_requests"]),
        "socket_errors": sum(v for k, v in data["errors"].items() if k != "status"),
        "non_2xx": data["errors"]["status"],
        "other_samples": others,
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "server_children_cpu_s": round(max(0.0, kids1 - kids0), 2),
        "wrk_cpu_s": round((rus1.ru_utime + rus1.ru_stime) - (rus0.ru_utime + rus0.ru_stime), 2),
        "machine_cpu_s": round(busy1 - busy0, 2),
        "wrk_stdout": proc.stdout,
        "peak_rss_anon_kib": rss.peak_anon,
        "peak_rss_file_kib": rss.peak_file,
    }
    data["events_per_s"] = data["ok204_per_s"] * data["events_per_request"]
    data["distinct_uas_sent"] = distinct_uas(data.pop("ua_spans"), n_uas)
    # the server caches parsed User-Agents: how many requests brought one it had not seen in this run
    data["new_ua_share"] = round(data["distinct_uas_sent"] / max(1, data["sent_requests"]), 3)
    # CPU that neither the server nor wrk used during the run: other sessions' work (+ py-spy)
    own = data["server_cpu_s"] + data["server_children_cpu_s"] + data["wrk_cpu_s"]
    data["other_cpu_s"] = round(max(0.0, data["machine_cpu_s"] - own), 2)
    data["other_cpu_share"] = round(data["other_cpu_s"] / (seconds * (os.cpu_count() or 1)), 3)
    return data


def sanity_post(server: Server, load: Load) -> None:
    """One real request before the load: fail fast with the server's answer if it is not 204."""
    headers = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8", "User-Agent": load.uas[-1]}
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        res = client.post(server.url + "/collect", content=load.sample(0), headers=headers)
    if res.status_code != 204:
        raise BenchError(f"{server.name}: sanity POST /collect answered {res.status_code}: {res.text[:300]}")


# -- jobpixel after the load ---------------------------------------------------


def drain(server: Server, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    first = None
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        while True:
            body = client.get(server.url + "/readyz", headers=OPS).json()
            if first is None:
                first = body.get("spool_rows")
            if body.get("spool_rows") == 0:
                return {
                    "spool_rows_after_load": first,
                    "drain_s": round(time.monotonic() - started, 2),
                    "last_flush_error": body.get("last_flush_error"),
                }
            if time.monotonic() - started > timeout:
                raise BenchError(f"spool did not drain within {timeout:.0f} s: {body}")
            time.sleep(0.2)


def server_counters(server: Server) -> dict[str, float]:
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        text = client.get(server.url + "/metrics", headers=OPS).text
    out: dict[str, float] = {"accepted": 0.0, "dropped": 0.0}
    for m in re.finditer(r"^jobpixel_events_(accepted|dropped)_total\{[^}]*\} (\S+)$", text, re.MULTILINE):
        out[m.group(1)] += float(m.group(2))
    # what one spool commit (write + fdatasync) and one load into ClickHouse look like
    sums = dict(re.findall(r"^(jobpixel_\w+_(?:sum|count)) (\S+)$", text, re.MULTILINE))
    for key, metric, scale in (
        ("spool_commit_ms", "jobpixel_spool_commit_seconds", 1000),
        ("spool_requests_per_commit", "jobpixel_spool_group_requests", 1),
        ("flush_ms", "jobpixel_flush_seconds", 1000),
        ("flush_rows", "jobpixel_flush_batch_rows", 1),
    ):
        n = float(sums.get(metric + "_count", 0))
        if n:
            out[key + "_mean"] = round(float(sums[metric + "_sum"]) / n * scale, 2)
            out[metric.removeprefix("jobpixel_") + "_count"] = n
    return out


def count_stored(chdb_path: Path) -> dict[str, Any]:
    import chdb

    conn = chdb.connect(str(chdb_path))
    try:

        def q(sql: str) -> list[dict[str, Any]]:
            return [
                orjson.loads(ln) for ln in conn.query(sql, "JSONEachRow").bytes().splitlines() if ln.strip()
            ]

        final = q("SELECT count() AS n FROM jobpixel.events FINAL")[0]["n"]
        raw = q(
            "SELECT count() AS n, uniqExact(event_id) AS ids, uniqExact(browser, browser_version, os, "
            "os_version) AS ua_kinds FROM jobpixel.events"
        )[0]
        devices = {
            r["device"]: r["n"] for r in q("SELECT device, count() AS n FROM jobpixel.events GROUP BY device")
        }
        names = {r["name"]: r["n"] for r in q("SELECT name, count() AS n FROM jobpixel.events GROUP BY name")}
    finally:
        conn.close()
    return {
        "final": int(final),
        "rows": int(raw["n"]),
        "distinct_event_ids": int(raw["ids"]),
        "distinct_ua_results": int(raw["ua_kinds"]),
        "by_device": devices,
        "by_name": names,
    }


# -- profile summary -----------------------------------------------------------


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive and self sample shares from py-spy's raw (folded) output."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        funcs = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]
        for f in set(funcs):
            inclusive[f] += count
        if funcs:
            self_[funcs[-1]] += count

    def share(c: collections.Counter[str], only: str | None = None) -> list[tuple[str, float]]:
        return [(f, round(100 * v / total, 1)) for f, v in c.most_common() if only is None or only in f][:top]

    return {
        "samples": total,
        "threads": share(threads),
        "inclusive_pixel_server": [
            (f, pct)
            for f, pct in share(inclusive, "pixel_server/")
            if "cli.py" not in f and "__main__" not in f
        ],
        "inclusive_all": share(inclusive),
        "self_all": share(self_),
    }


# -- report --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def version(mod: str) -> str:
        try:
            from importlib.metadata import version as v

            return v(mod)
        except Exception:
            return "?"

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    wrk_v = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--", "pixel_server"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            != ""
        )
    except OSError:
        rev, dirty = "?", False
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": " ".join(wrk_v).split(" Copyright")[0],
        "packages": {
            m: version(m) for m in ("starlette", "uvicorn", "uvloop", "httptools", "chdb", "ua-parser")
        },
        "git": rev + ("+dirty pixel_server/" if dirty else ""),
    }


def fmt_int(v: float) -> str:
    return f"{v:,.0f}"


def print_summary(res: dict[str, Any]) -> None:
    b, j = res["baseline"], res["jobpixel"]
    rows = [
        ("requests/s", fmt_int(b["requests_per_s"]), fmt_int(j["requests_per_s"])),
        ("events/s (204 × events/request)", fmt_int(b["events_per_s"]), fmt_int(j["events_per_s"])),
        ("requests with a new User-Agent", f"{b['new_ua_share']:.0%}", f"{j['new_ua_share']:.0%}"),
        ("events per request", f"{b['events_per_request']:.3f}", f"{j['events_per_request']:.3f}"),
        ("latency p50 ms", f"{b['latency_us']['p50'] / 1000:.2f}", f"{j['latency_us']['p50'] / 1000:.2f}"),
        ("latency p99 ms", f"{b['latency_us']['p99'] / 1000:.2f}", f"{j['latency_us']['p99'] / 1000:.2f}"),
        ("latency max ms", f"{b['latency_us']['max'] / 1000:.1f}", f"{j['latency_us']['max'] / 1000:.1f}"),
        ("responses (204 / other)", f"{b['ok204']} / {b['other']}", f"{j['ok204']} / {j['other']}"),
        (
            "non-2xx / socket errors",
            f"{b['non_2xx']} / {b['socket_errors']}",
            f"{j['non_2xx']} / {j['socket_errors']}",
        ),
        (
            "server CPU s / wrk CPU s",
            f"{b['server_cpu_s']} / {b['wrk_cpu_s']}",
            f"{j['server_cpu_s']} / {j['wrk_cpu_s']}",
        ),
        ("other processes' CPU share", f"{b['other_cpu_share']:.0%}", f"{j['other_cpu_share']:.0%}"),
        (
            "server peak RSS (VmHWM)",
            f"{b['memory_kib'].get('VmHWM', 0) / 1024:.0f} MiB",
            f"{j['memory_kib'].get('VmHWM', 0) / 1024:.0f} MiB",
        ),
        (
            "  of which anonymous / file-backed (peaks, 0.2 s samples)",
            f"{b['peak_rss_anon_kib'] / 1024:.0f} / {b['peak_rss_file_kib'] / 1024:.0f} MiB",
            f"{j['peak_rss_anon_kib'] / 1024:.0f} / {j['peak_rss_file_kib'] / 1024:.0f} MiB",
        ),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "baseline", "")])
    print(f"\n{'':<{w0}}  {'baseline':>{w1}}  jobpixel")
    for name, bv, jv in rows:
        print(f"{name:<{w0}}  {bv:>{w1}}  {jv}")
    r, d, s = res["ratios"], res["durability"], res["stored"]
    print(f"\nratio jobpixel events/s ÷ baseline requests/s: {r['events_per_s_vs_baseline_rps']:.3f}")
    print(f"ratio jobpixel requests/s ÷ baseline requests/s: {r['rps_vs_baseline_rps']:.3f}")
    print(
        f"\nspool after the load: {d['spool_rows_after_load']} rows, drained in {d['drain_s']} s; "
        f"stop (SIGTERM) took {d['stop_s']:.1f} s, exit {d['exit_code']}"
        + (" (uvicorn re-raises SIGTERM after a clean shutdown)" if d["exit_code"] == -15 else "")
    )
    print(
        f"spool commits: {d.get('spool_commit_seconds_count', 0):,.0f}, each "
        f"{d.get('spool_commit_ms_mean', 0)} ms and {d.get('spool_requests_per_commit_mean', 0)} requests "
        f"on average; loads into chDB: {d.get('flush_seconds_count', 0):,.0f}, each "
        f"{d.get('flush_ms_mean', 0)} ms and {d.get('flush_rows_mean', 0)} rows on average"
    )
    print(
        f"stored: {s['final']:,} events (FINAL; {s['rows']:,} rows, "
        f"{s['distinct_event_ids']:,} distinct ids)\n"
        f"server accepted {d['accepted']:,.0f} events (incl. {d['sanity_events']} from the sanity POST)\n"
        f"wrk: {j['ok204']:,} × 204 of {j['sent_requests']:,} requests sent, "
        f"carrying {j['sent_events']:,} events "
        f"(acknowledged events ≥ {d['acked_events_min']:,}, ≈ {d['acked_events_est']:,})"
    )
    print(f"stored by device: {s['by_device']}\nstored by name: {s['by_name']}")
    print(f"distinct (browser, version, os, os version) stored: {s['distinct_ua_results']:,}")
    for name in ("baseline", "jobpixel"):
        if res[name]["other_cpu_share"] > 0.05:
            print(
                f"\nNOTE: other processes used {res[name]['other_cpu_share']:.0%} of the CPU during the "
                f"{name} run: its figures are low; re-run on a quiet machine"
            )
    t = res["target"]
    print(
        f"\ntarget (issue #2): ≥ {TARGET_EVENTS_PER_S:,} events/s durable and ratio ≥ {TARGET_RATIO}: "
        f"{'MET' if t['met'] else 'MISSED'} ({fmt_int(j['events_per_s'])} events/s, "
        f"ratio {r['events_per_s_vs_baseline_rps']:.3f})"
    )


def check_valid(res: dict[str, Any]) -> list[str]:
    problems = []
    for name in ("baseline", "jobpixel"):
        run = res[name]
        if run["non_2xx"] or run["other"]:
            problems.append(
                f"{name}: {run['other']} answers other than 204 ({run['non_2xx']} non-2xx): "
                f"{run['other_samples'][:3]}"
            )
        if run["ok204"] + run["other"] != run["requests"]:
            problems.append(
                f"{name}: the wrk script saw {run['ok204'] + run['other']} of {run['requests']} responses "
                "(wrk calls response() only for answers with headers)"
            )
        if run["socket_errors"]:
            problems.append(f"{name}: socket errors {run['errors']}")
    s, d, j = res["stored"], res["durability"], res["jobpixel"]
    if s["final"] != d["accepted"]:
        problems.append(f"stored {s['final']} events but the server accepted {d['accepted']:.0f}")
    if s["distinct_event_ids"] != s["rows"]:
        problems.append(f"{s['rows'] - s['distinct_event_ids']} duplicate event ids among the stored rows")
    wrk_events = s["final"] - d["sanity_events"]
    if not d["acked_events_min"] <= wrk_events <= j["sent_events"]:
        problems.append(
            f"stored {wrk_events} events from wrk; expected between {d['acked_events_min']} (acknowledged) "
            f"and {j['sent_events']} (sent)"
        )
    if d["dropped"]:
        problems.append(
            f"the server dropped {d['dropped']:.0f} events (see /metrics jobpixel_events_dropped_total)"
        )
    return problems


# -- main ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("-t", "--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("-c", "--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("-d", "--duration", type=int, default=10, help="seconds per run (default 10)")
    p.add_argument("--timeout", type=int, default=5, help="wrk request timeout in seconds (default 5)")
    p.add_argument("--quick", action="store_true", help="~3 s per run: a sanity check")
    p.add_argument("--uas", type=int, default=20_000, help="distinct User-Agents (default 20000)")
    p.add_argument("--bodies", type=int, default=5_000, help="event body templates (default 5000)")
    p.add_argument("--tokens", type=int, default=16, help="visitor tokens from /consent (default 16)")
    p.add_argument(
        "--seed", type=int, default=1, help="seed for User-Agents and bodies (event ids stay random)"
    )
    p.add_argument("--drain-timeout", type=int, default=180, help="seconds to wait for the spool to drain")
    p.add_argument(
        "--profile",
        action="store_true",
        help="record the jobpixel run with py-spy (skews the figures; pip install py-spy)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        help="wait up to this many seconds before each run for other work on the machine to stop (120)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (config, data, logs)")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/collect-*.json")
    p.add_argument("--require-target", action="store_true", help="exit 1 when the issue #2 target is missed")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 3
    if args.profile and shutil.which("py-spy") is None:
        venv_spy = Path(sys.executable).parent / "py-spy"
        if not venv_spy.exists():
            p.error("--profile needs py-spy: .venv/bin/pip install py-spy")
        os.environ["PATH"] = f"{venv_spy.parent}{os.pathsep}{os.environ['PATH']}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_path()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp = Path(tempfile.mkdtemp(prefix="jobpixel-bench-"))
    data_dir = tmp / "data"
    config = tmp / "jobpixel.toml"
    jp_port, base_port = free_port(), free_port()
    config.write_text(CONFIG.format(port=jp_port, data_dir=data_dir, origin=ORIGIN))
    key = secrets.token_urlsafe(32)
    jp = jobpixel_server(config, jp_port, key, tmp / "jobpixel.log")
    base = baseline_server(base_port, tmp / "baseline.log")
    print(f"bench: temporary directory {tmp}")
    res: dict[str, Any] = {
        "started": stamp,
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in ("threads", "connections", "duration", "timeout", "uas", "bodies", "tokens", "seed")
        },
    }
    try:
        print("bench: starting jobpixel for visitor tokens (POST /consent)")
        jp.start()
        tokens = get_tokens(jp, args.tokens)
        jp.stop()
        load = make_load(args.uas, args.bodies, tokens, args.seed)
        ua_file, body_file = load.write(tmp)
        res["load"] = {
            "distinct_user_agents": len(set(load.uas)),
            "body_templates": len(load.bodies),
            "mix": load.mix,
            "mean_events_per_body": round(load.mean_events, 4),
            "mean_body_bytes": round(sum(map(len, load.bodies)) / len(load.bodies)),
        }
        print(f"bench: load {res['load']}")

        runs: dict[str, dict[str, Any]] = {}
        for server in (base, jp):
            server.start()
            sanity_post(server, load)
            quiet = wait_quiet(args.wait_quiet)
            cmd = wrk_command(args, server.url, ua_file, body_file)
            res["command"] = " ".join(cmd).replace(str(tmp), "$TMP")
            print(f"bench: {server.name}: {res['command']}")
            profile = RESULTS / f"collect-{stamp}.folded" if args.profile and server is jp else None
            if profile is not None:
                RESULTS.mkdir(exist_ok=True)
            run = run_wrk(cmd, server, args.duration, len(load.uas), profile) | {"before": quiet}
            print(
                f"bench: {server.name}: {fmt_int(run['requests_per_s'])} requests/s, "
                f"{fmt_int(run['events_per_s'])} events/s, p99 {run['latency_us']['p99'] / 1000:.1f} ms"
            )
            if server is jp:
                res["durability"] = drain(jp, args.drain_timeout)
                counters = server_counters(jp)
                res["durability"] |= counters
            run["memory_kib"] = server.memory_kib()
            code, stop_s = server.stop()
            if server is jp:
                res["durability"] |= {"exit_code": code, "stop_s": stop_s}
            runs[server.name] = run
            if profile is not None and profile.exists():
                res["profile"] = summarize_profile(profile) | {"folded": str(profile.relative_to(ROOT))}
        res |= runs
        b, j = runs["baseline"], runs["jobpixel"]
        res["stored"] = count_stored(data_dir / "chdb")
        per_req = j["events_per_request"]
        d = res["durability"]
        d["sanity_events"] = load.events_per_body[0]  # one sanity POST before the load
        max_per_req = max(load.events_per_body)
        d["acked_events_min"] = j["sent_events"] - (j["sent_requests"] - j["ok204"]) * max_per_req
        d["acked_events_est"] = round(j["ok204"] * per_req)
        res["ratios"] = {
            "events_per_s_vs_baseline_rps": j["events_per_s"] / b["requests_per_s"],
            "rps_vs_baseline_rps": j["requests_per_s"] / b["requests_per_s"],
        }
        res["target"] = {
            "events_per_s": TARGET_EVENTS_PER_S,
            "ratio": TARGET_RATIO,
            "met": j["events_per_s"] >= TARGET_EVENTS_PER_S
            and res["ratios"]["events_per_s_vs_baseline_rps"] >= TARGET_RATIO,
        }
        problems = check_valid(res)
        res["valid"] = not problems
        res["problems"] = problems
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in (base, jp):
            server.stop(timeout=30)
        if not args.keep and res.get("valid"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bench: kept {tmp} (config, data, server logs)")

    print_summary(res)
    if "profile" in res:
        prof = res["profile"]
        print(f"\nprofile ({prof['samples']} samples, {prof['folded']}); share of samples by thread:")
        for f, pct in prof["threads"][:6]:
            print(f"  {pct:5.1f}%  {f}")
        print("inclusive share of functions in pixel_server/ (coroutine stacks are cut at await points):")
        for f, pct in prof["inclusive_pixel_server"][:15]:
            print(f"  {pct:5.1f}%  {f}")
        print("self (leaf) share, all code:")
        for f, pct in prof["self_all"][:15]:
            print(f"  {pct:5.1f}%  {f}")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"collect-{stamp}.json"
        out.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
        print(f"\nbench: wrote {out.relative_to(ROOT)}")
    if problems:
        print("\nbench: INVALID RUN:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    if args.require_target and not res["target"]["met"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
