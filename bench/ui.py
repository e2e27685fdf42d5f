#!/usr/bin/env python3
"""The web UI with a large store: the list page's server time and a 10,000-span trace in Chromium.

Targets (DESIGN.md): the dashboard and trace list page (`/`) answered in under 50 ms with 1 million
spans stored; a 10,000-span trace's page interactive in Chromium in under 1 s.

The store is filled as `bench/reads.py` fills it (its realistic 10-span agent traces over
OTLP/HTTP, spread over five environments), plus one agent trace of `--big-trace-spans` spans. The
pages are read signed in (a session opened through the sign-in form with the dev key). Page times
are the median and p95 of sequential GETs on a keep-alive connection, which on loopback is the
server's time plus a fraction of a millisecond. The trace page is then opened in headless Chromium
(Debian's /usr/bin/chromium through Playwright) `--browser-runs` times, each in a new tab of one
signed-in browser that has loaded it once before (its static files cached, as for anyone coming
from the list), timed from the navigation: interactive when trace.js has drawn the tree's rows and
bound its keys and clicks (`#tt[data-ready]`); then a row is clicked and the time until that
span's panel is open is reported too.

    .venv/bin/python bench/ui.py                                 # SQLite, 1,000,000 spans
    .venv/bin/python bench/ui.py --spans 100000 --db postgres
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import ingest  # noqa: E402  (the sibling benchmarks: workload, server start, loading)
import reads  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TREE_READY = "#tt[data-ready]"  # set by trace.js once the tree's rows are in the page
TREE_ROW = "#tt .tt-row[data-span-id]"
SPAN_PANEL = "#span-panel .span-detail[data-span-id='{}']"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = reads.store_parser("bench/ui.py", __doc__.split("\n\n")[0], 10_000)
    p.add_argument("--browser-runs", type=int, default=5, help="times the big trace's page is opened")
    p.add_argument("--no-settle", action="store_true",
                   help="read while the search index is still catching up (it competes for the CPU)")
    return p.parse_args(argv)


def sign_in(api_url: str) -> str:
    """A session cookie (`name=value`) opened through the sign-in form with the dev key."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
    try:
        conn.request("GET", "/login")
        resp = conn.getresponse()
        form = resp.read().decode()
        signin_cookie = resp.getheader("set-cookie", "").split(";")[0]
        token = re.search(r'name="signin_token" value="([^"]+)"', form)
        if token is None:
            raise RuntimeError("the sign-in page has no form token")
        body = urllib.parse.urlencode({"signin_token": token.group(1), "next": "/", "api_key": "dev-key"})
        conn.request("POST", "/login", body, {"content-type": "application/x-www-form-urlencoded",
                                              "cookie": signin_cookie, "origin": api_url})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 303:
            raise RuntimeError(f"sign-in answered {resp.status}")
        return next(c.split(";")[0] for c in resp.headers.get_all("set-cookie") or ()
                    if c.startswith("tracehub_session="))
    finally:
        conn.close()


def timed(api_url: str, paths: list[str], cookie: str, n: int) -> dict[str, float]:
    seconds = ingest.get_times(api_url, paths, "", n, timeout=120, headers={"cookie": cookie})
    if seconds is None:
        raise RuntimeError(f"GET {paths[0]} (or a sibling) was not answered 200")
    times = sorted(s * 1000 for s in seconds)
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
            "max_ms": round(times[-1], 2)}


def browser_times(api_url: str, cookie: str, trace_id: str, runs: int) -> dict[str, Any]:
    """Milliseconds from the navigation until the tree is ready, and until a clicked row's panel
    has opened."""
    from playwright.sync_api import sync_playwright

    name, _, value = cookie.partition("=")
    ready, clicked, rows = [], [], 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_cookies([{"name": name, "value": value, "url": api_url}])
        try:
            for _ in range(runs + 1):  # the first run fills the browser's cache of the static files
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{api_url}/traces/{trace_id}", wait_until="commit")
                page.wait_for_selector(TREE_READY, timeout=60_000)
                t_ready = time.perf_counter()
                row = page.locator(TREE_ROW).first
                span_id = row.get_attribute("data-span-id")
                row.click()
                page.wait_for_selector(SPAN_PANEL.format(span_id), timeout=60_000)
                t_clicked = time.perf_counter()
                rows = page.locator(TREE_ROW).count()
                ready.append((t_ready - t0) * 1000)
                clicked.append((t_clicked - t0) * 1000)
                page.close()
        finally:
            context.close()
            browser.close()
    ready, clicked = ready[1:], clicked[1:]
    return {"tree_ready_p50_ms": round(statistics.median(ready), 1), "tree_ready_max_ms": round(max(ready), 1),
            "panel_open_p50_ms": round(statistics.median(clicked), 1),
            "panel_open_max_ms": round(max(clicked), 1), "rows_in_dom": rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    run_tag = f"ui-{seed:x}"
    server = reads.server_args(args)
    handle = ingest.start_server(server)
    result: dict[str, Any] = {"db": args.db, "seed": seed,
                              "server_code": ingest.server_code_version(str(server.python))}
    try:
        t0 = time.perf_counter()
        stored, big_id = reads.fill(handle, args, seed, run_tag)
        api = handle.api_url
        big = reads.get_json(api, f"/api/v1/traces?page_size=1&environment={reads.BIG_TRACE_ENV}")
        if big["items"][0]["span_count"] != args.big_trace_spans:
            raise RuntimeError(f"the big trace has {big['items'][0]['span_count']} spans")
        total = reads.get_json(api, "/api/v1/traces?page_size=1")["total"]
        if not args.no_settle:
            ingest.log("waiting for the search index to catch up ...")
            while reads.get_json(api, "/readyz").get("search_unindexed_rows"):
                time.sleep(2)
        ingest.log(f"{total:,} traces stored in {time.perf_counter() - t0:.0f} s; reading pages ...")
        cookie = sign_in(api)
        env1 = f"{run_tag}-1"
        pages = {
            "/ (dashboard, newest 50)": ["/"],
            "/ one environment": [f"/?environment={env1}"],
            "/ status=error": ["/?status=error"],
            "/ page 100": ["/?page=100"],
            "live-tail list fragment (newest 50)": ["/ui/traces/list"],
            "KPI cards and charts fragment (24 h)": ["/ui/dashboard/overview"],
            "/sessions": ["/sessions"],
            f"/traces/<{args.big_trace_spans:,}-span trace> (HTML)": [f"/traces/{big_id}"],
        }
        measured = {}
        for name, paths in pages.items():
            measured[name] = timed(api, paths, cookie, args.reads)
            ingest.log(f"  {name}: p50 {measured[name]['p50_ms']} ms")
        ingest.log(f"opening the {args.big_trace_spans:,}-span trace in Chromium {args.browser_runs} times ...")
        browser = browser_times(api, cookie, big_id, args.browser_runs)
        result.update({
            "spans": stored + args.big_trace_spans, "traces": total, "pages": measured, "browser": browser,
            "targets": {
                "list page < 50 ms": measured["/ (dashboard, newest 50)"]["p50_ms"] < 50,
                f"{args.big_trace_spans}-span trace interactive < 1 s": browser["tree_ready_p50_ms"] < 1000,
            },
        })
    finally:
        ingest.stop_server(handle)
        if args.keep:
            ingest.log(f"kept: {handle.db_desc}")
        ingest.cleanup(handle, args.keep)
    return result


def report(r: dict[str, Any]) -> str:
    lines = [f"tracehub web UI  (server code {r['server_code'].get('commit')}, {r['db']}, seed {r['seed']})",
             f"store      : {r['spans']:,} spans in {r['traces']:,} traces",
             f"{'page':48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"]
    for name, m in r["pages"].items():
        lines.append(f"{name:48} {m['p50_ms']:8} {m['p95_ms']:8} {m['max_ms']:8}")
    b = r["browser"]
    lines.append(f"big trace in Chromium: interactive p50 {b['tree_ready_p50_ms']} ms (max {b['tree_ready_max_ms']}),"
                 f" a clicked span's panel open p50 {b['panel_open_p50_ms']} ms (max {b['panel_open_max_ms']});"
                 f" {b['rows_in_dom']:,} tree rows in the DOM")
    for name, ok in r["targets"].items():
        lines.append(f"target {name:40}: {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
