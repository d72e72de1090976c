"""The web Hub: requests/s of its Accounts and Connect pages against a bare Starlette app.

Two servers, each uvicorn in a process of its own on 127.0.0.1, with the same settings
(`web_bare.server_options`), over the same database:

- hub (web_hub.py): ``hub_core.web.create_app`` as a host application builds it, signed in
  the way a person is: ``GET /?token=…`` answers 303 with the ``hub_session`` cookie, which
  every request of the load then carries;
- the baseline (web_bare.py): a bare Starlette + Jinja2 app drawing the same rows (the same
  page size, order and columns) straight from sqlite3, and the same guide and form.

The load comes from a third process (web_client.py: aiohttp, CONCURRENCY keep-alive
connections); each run is a fresh process, hub and the baseline take turns, the order
alternating. The store is made with `Store.save` (storage.populate): 1,000 accounts for the
requests/s, then 9,000 more for the time of one page at 10,000 (first and last page, one
request at a time). Each server's CPU time during each run is read from /proc.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import BENCH, Figure, await_listening, child_environ, cpu_seconds, spawn, stop
from storage import populate

SECTION = "web"
CONCURRENCY = 16
PROVIDER = "elastic"
SERVERS = ("hub", "bare")
DESCRIBED = {"hub": "hub_core.web.create_app", "bare": "bare Starlette + Jinja2 + sqlite3"}
#: What every answer of each page must contain (web_client.py checks each one).
EXPECT = {"/accounts": "Bench org", "/connect/": "Cloud API Key"}
_LABEL = re.compile(r"<td data-label=\"Account\"><strong>([^<]*)</strong>")


@dataclass
class Server:
    """One running server: its process and port."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class Sample:
    """One load run against one server: the client's report and the server's CPU meanwhile."""

    server: str
    page: str
    report: dict[str, Any]
    server_cpu: float

    @property
    def rate(self) -> float:
        return float(self.report["count"]) / float(self.report["seconds"])

    @property
    def cpu_per_request(self) -> float:
        return self.server_cpu / float(self.report["count"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _server(name: str, argv: Sequence[str], env: dict[str, str], work: Path) -> Iterator[Server]:
    """Start one server process on a free port; stop it on exit."""
    port = _free_port()
    log_path = work / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*argv, str(port)], stdout=log, stderr=log, env=env)
        try:
            problem = await_listening(process, ("127.0.0.1", port), 30)
            if problem == "exited":
                problem = f"exited:\n{log_path.read_text()}"
            if problem is not None:
                raise SystemExit(f"bench: the {name} web server {problem}")
            yield Server(name, process, port, log_path)
        finally:
            stop(process)


def provider_pages(path: Path) -> None:
    """Write what the baseline draws: the providers' names, one provider's guide and fields."""
    from hub_core import Hub

    hub = Hub()
    provider = hub.provider(PROVIDER)
    connect = {
        "id": provider.id,
        "name": provider.name,
        "docs_url": provider.docs_url,
        "warning": provider.guide.warning,
        "sections": [
            {
                "title": section.title,
                "content": section.content,
                "steps": [{"title": s.title, "content": s.content} for s in section.steps],
            }
            for section in provider.guide.sections
        ],
        "fields": [
            {
                "name": f.name,
                "label": f.label,
                "kind": f.kind,
                "required": f.required,
                "help": f.help,
                "placeholder": f.placeholder,
                "default": f.default,
                "choices": [[c.value, c.label] for c in f.choices],
            }
            for f in provider.fields
        ],
    }
    providers = [[p.id, p.name] for p in hub.providers()]
    path.write_text(json.dumps({"providers": providers, "connect": connect}))


def _get(server: Server, path: str, cookie: str | None = None) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def sign_in(server: Server, token: str) -> str:
    """Open the sign-in address as a person does; return the session cookie it sets."""
    status, headers, _ = _get(server, f"/?token={token}")
    cookie = headers.get("set-cookie", "").partition(";")[0]
    if status != 303 or not cookie.startswith("hub_session="):
        raise SystemExit(f"bench: signing in to the web Hub gave {status}, cookie {cookie!r}")
    return cookie


def _same_pages(hub: Server, bare: Server, cookie: str, path: str, count: int) -> None:
    """The baseline must do the same job: the same accounts in the same order, the same form."""
    pages = {}
    for server in (hub, bare):
        status, _, body = _get(server, path, cookie if server is hub else None)
        if status != 200:
            raise SystemExit(f"bench: {server.name} {path} answered {status}")
        pages[server.name] = body
    labels = {name: _LABEL.findall(body) for name, body in pages.items()}
    if labels["hub"] != labels["bare"] or len(labels["hub"]) != count:
        raise SystemExit(
            f"bench: {path}: hub and the baseline show other rows "
            f"({labels['hub'][:3]} … against {labels['bare'][:3]} …)"
        )
    status, _, hub_form = _get(hub, f"/connect/{PROVIDER}", cookie)
    _, _, bare_form = _get(bare, f"/connect/{PROVIDER}")
    fields = re.compile(r'name="([a-z_]+)"')
    if status != 200 or fields.findall(hub_form) != fields.findall(bare_form):
        raise SystemExit("bench: the Connect pages of hub and the baseline have other fields")


def _load(
    server: Server, page: str, path: str, count: int, concurrency: int, env: dict[str, str]
) -> Sample:
    argv = [sys.executable, str(BENCH / "web_client.py"), server.url(path)]
    expect = next(text for start, text in EXPECT.items() if path.startswith(start))
    argv += [str(count), str(concurrency), expect]
    before = cpu_seconds(server.process.pid)
    run = spawn(argv, env)
    used = cpu_seconds(server.process.pid) - before
    if run.returncode != 0:
        raise SystemExit(f"bench: the load on {server.name} {path} failed:\n{run.stderr[-3000:]}")
    report = json.loads(run.stdout.strip().splitlines()[-1])
    if report["failures"]:
        raise SystemExit(
            f"bench: {server.name} {path}: {report['failures']} requests failed, e.g. "
            f"{report['failure_examples']}\n{server.log.read_text()[-2000:]}"
        )
    return Sample(server.name, page, report, used)


def _rounds(
    servers: dict[str, Server],
    cookie: str,
    pages: dict[str, str],
    *,
    reps: int,
    count: int,
    concurrency: int,
) -> dict[tuple[str, str], list[Sample]]:
    """Each page, hub and the baseline taking turns *reps* times, the order alternating."""
    samples: dict[tuple[str, str], list[Sample]] = {}
    for rep in range(reps):
        for page, path in pages.items():
            order = SERVERS if rep % 2 == 0 else SERVERS[::-1]
            for name in order:
                env = child_environ({"HUB_BENCH_COOKIE": cookie if name == "hub" else None})
                sample = _load(servers[name], page, path, count, concurrency, env)
                samples.setdefault((name, page), []).append(sample)
                _progress(sample, path)
    return samples


def _progress(sample: Sample, path: str) -> None:
    report = sample.report
    print(
        f"  {sample.server:<5} {path:<24} {sample.rate:7,.0f} req/s  "
        f"median {report['median_s'] * 1000:6.2f} ms  "
        f"server CPU {sample.cpu_per_request * 1e6:6.0f} µs/request",
        flush=True,
    )


def web(*, reps: int, count: int, latency_count: int) -> list[Figure]:
    """Every figure of the web section.

    *reps* load runs of *count* requests per page and server; then, for the page time at
    10,000 accounts, ``max(1, reps // 2)`` runs of *latency_count* requests one at a time.
    """
    import web_bare

    from hub_core.web import WebConfig

    size = WebConfig().page_size
    if size != web_bare.PAGE_SIZE:
        raise SystemExit(
            f"bench: WebConfig().page_size is {size}, the baseline draws {web_bare.PAGE_SIZE}"
        )
    latency_reps = max(1, reps // 2)
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="hub-bench-web-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        seconds = populate(home, 1000)
        print(f"  stored 1,000 accounts in {seconds:.1f} s (Store.save)", flush=True)
        provider_pages(work / "pages.json")
        python = sys.executable
        hub_env = child_environ({"HUB_HOME": str(home), "HUB_BENCH_WEB_TOKEN": token})
        bare_argv = [python, str(BENCH / "web_bare.py"), str(home / "hub.db")]
        with (
            _server("hub", [python, str(BENCH / "web_hub.py"), str(home)], hub_env, work) as hub,
            _server("bare", [*bare_argv, str(work / "pages.json")], child_environ(), work) as bare,
        ):
            servers = {"hub": hub, "bare": bare}
            cookie = sign_in(hub, token)
            _same_pages(hub, bare, cookie, "/accounts", size)
            pages = {"accounts": "/accounts", "connect": f"/connect/{PROVIDER}"}
            # Warm-up: bytecode, template caches, sqlite's page cache, the first connections.
            _rounds(servers, cookie, pages, reps=1, count=200, concurrency=CONCURRENCY)
            rates = _rounds(servers, cookie, pages, reps=reps, count=count, concurrency=CONCURRENCY)

            seconds = populate(home, 10000, start=1000)
            print(f"  stored 9,000 more accounts in {seconds:.1f} s (Store.save)", flush=True)
            last = -(-10000 // size)
            deep = {"first": "/accounts", "deep": f"/accounts?page={last}"}
            _same_pages(hub, bare, cookie, deep["deep"], 10000 - (last - 1) * size)
            _rounds(servers, cookie, deep, reps=1, count=20, concurrency=1)
            times = _rounds(
                servers, cookie, deep, reps=latency_reps, count=latency_count, concurrency=1
            )
    options = web_bare.server_options()
    setting = {"http": options["http"], "loop": options["loop"], "concurrency": CONCURRENCY}
    return _figures(rates, times, last, setting)


def _median(samples: Sequence[Sample], attribute: str) -> float:
    return statistics.median(float(getattr(sample, attribute)) for sample in samples)


def _summary(samples: Sequence[Sample]) -> dict[str, Any]:
    return {
        "runs": len(samples),
        "requests": samples[0].report["count"],
        "rates": [round(sample.rate) for sample in samples],
        "median_latency_ms": [round(s.report["median_s"] * 1000, 3) for s in samples],
        "p99_latency_ms": [round(s.report["p99_s"] * 1000, 3) for s in samples],
        "server_cpu_per_request_us": [round(s.cpu_per_request * 1e6) for s in samples],
        "client_cpu_per_s": round(
            statistics.median(s.report["cpu_seconds"] / s.report["seconds"] for s in samples), 3
        ),
        "page_bytes": samples[0].report["bytes"],
    }


def _figures(
    rates: dict[tuple[str, str], list[Sample]],
    times: dict[tuple[str, str], list[Sample]],
    last: int,
    setting: dict[str, Any],
) -> list[Figure]:
    figures = []
    names = {"accounts": "Accounts page, 1,000 accounts", "connect": f"Connect page ({PROVIDER})"}
    for page, name in names.items():
        mine, theirs = rates[("hub", page)], rates[("bare", page)]
        details = {"hub": _summary(mine), "bare": _summary(theirs), "server": setting}
        figures.append(
            Figure(
                section=SECTION,
                name=name,
                value=_median(mine, "rate"),
                baseline=_median(theirs, "rate"),
                unit="req/s",
                baseline_name=DESCRIBED["bare"],
                check="ratio>=",
                target=0.5,
                details=details,
            )
        )
    for page, name in names.items():
        mine, theirs = rates[("hub", page)], rates[("bare", page)]
        # The same comparison in server CPU per request: less sensitive to a noisy neighbour
        # than requests/s, and it says what one page costs hub's server.
        figures.append(
            Figure(
                section=SECTION,
                name=f"{name}: server CPU per request",
                value=_median(mine, "cpu_per_request") * 1e6,
                baseline=_median(theirs, "cpu_per_request") * 1e6,
                unit="µs",
                baseline_name=DESCRIBED["bare"],
            )
        )
    for page, name in (("first", "first page"), ("deep", f"page {last}")):
        mine, theirs = times[("hub", page)], times[("bare", page)]

        def latency(samples: Sequence[Sample]) -> float:
            return statistics.median(float(s.report["median_s"]) for s in samples) * 1000

        figures.append(
            Figure(
                section=SECTION,
                name=f"Accounts page time, 10,000 accounts, {name}",
                value=latency(mine),
                baseline=latency(theirs),
                unit="ms",
                baseline_name=DESCRIBED["bare"],
                details={"hub": _summary(mine), "bare": _summary(theirs), "server": setting},
            )
        )
    return figures
