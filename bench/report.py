"""The ingest benchmark's report: its result as text, with the targets it is held to, and the
server's profile (py-spy's raw samples or cProfile's stats) summed up by function."""

from __future__ import annotations

from typing import Any

from server import MIB

TARGET_SPANS_PER_S = 20_000
TARGET_PEAK_RSS_MIB = 300
TARGET_IDLE_RSS_MIB = 120
TARGET_START_S = 2.0


def pyspy_report(path: str, top: int) -> dict[str, Any]:
    self_c: dict[str, int] = {}
    self_lines: dict[str, int] = {}
    call_sites: dict[str, int] = {}
    incl_c: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_s = line.rpartition(" ")
            try:
                count = int(count_s)
            except ValueError:
                continue
            frames = stack.split(";")
            thread = "?"
            if frames and frames[0].startswith("thread ("):
                thread = frames.pop(0)
                # "thread (1234): name" -> name
                thread = thread.split(": ", 1)[1] if ": " in thread else thread
                if thread.startswith("ThreadPoolExecutor") or thread.startswith("AnyIO worker"):
                    thread = thread.split("-")[0] + " (pool)"
            total += count
            threads[thread] = threads.get(thread, 0) + count
            keys = [_frame_key(fr) for fr in frames]
            if keys:
                self_c[keys[-1]] = self_c.get(keys[-1], 0) + count
                self_lines[frames[-1]] = self_lines.get(frames[-1], 0) + count
                # the leaf and the line that called it: tells which executemany / execute it was
                site = frames[-1] + (" <- " + frames[-2] if len(frames) > 1 else "")
                call_sites[site] = call_sites.get(site, 0) + count
            for k in set(keys):
                incl_c[k] = incl_c.get(k, 0) + count

    def rows(d: dict[str, int]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "pct": round(100 * v / total, 1) if total else 0}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"kind": "py-spy", "samples": total,
            "threads": {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1])},
            "self": rows(self_c), "inclusive": rows(incl_c), "self_lines": rows(self_lines)[:15],
            "call_sites": rows(call_sites)[:15]}


def _frame_key(frame: str) -> str:
    # "Writer._write_spans (tracehub/store/writer.py:312)" -> "Writer._write_spans (tracehub/store/writer.py)"
    name, sep, loc = frame.partition(" (")
    if sep and ":" in loc:
        loc = loc.rsplit(":", 1)[0]
        return f"{name} ({loc})"
    return frame


def cprofile_report(path: str, top: int) -> dict[str, Any]:
    import pstats

    st = pstats.Stats(path)
    entries: list[tuple[float, float, int, str]] = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        entries.append((float(tt), float(ct), int(nc), f"{func} ({file}:{line})"))
    total = sum(e[0] for e in entries) or 1.0

    def rows(idx: int) -> list[dict[str, Any]]:
        def secs(e: tuple[float, float, int, str]) -> float:
            return e[0] if idx == 0 else e[1]

        return [{"function": e[3], "seconds": round(secs(e), 3), "calls": e[2],
                 "pct": round(100 * secs(e) / total, 1)}
                for e in sorted(entries, key=lambda e: -secs(e))[:top]]

    return {"kind": "cProfile (main thread only: the writer thread is not seen)",
            "total_s": round(total, 3), "self": rows(0), "inclusive": rows(1)}


# ============================================================================ main


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))
    return v[k]



def ms(v: float | None) -> float | None:
    return round(v * 1000, 1) if v is not None else None


def _mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


_READERS = {True: ", C reader of OTLP", False: ", protobuf reads OTLP (C reader not built or off)", None: ""}


def index_note(ix: dict[str, Any]) -> str:
    if ix.get("caught_up") is None:
        return f"search index: {ix.get('error', 'not checked')}"
    if not ix["caught_up"]:
        return (f"search index NOT caught up after {ix['wait_s']:.1f} s: {ix['rows_left']:,} rows left"
                f" (of {ix['rows_at_start']:,})")
    since = ix.get("after_queryable_s")
    when = f"{since:.1f} s after queryable" if since is not None else f"after {ix['wait_s']:.1f} s of waiting"
    if ix["polls"] == 1:
        return f"index had caught up by the first check, {when}"
    return f"index caught up {when} ({ix['rows_at_start']:,} rows behind at the first check)"


def _stored_lines(r: dict[str, Any]) -> list[str]:
    st, ix = r.get("stored") or {}, r.get("search_index") or {}
    if not st and not ix:
        return []
    if not st.get("bytes_per_span"):
        return [f"stored      : {st.get('error', 'not measured')}; {index_note(ix)}"]
    b = st["bytes_per_span"]
    out = [f"stored      : {b['total']:,} B/span (spans {b['spans']:,}, search index {b['search']:,}, traces "
           f"{b['traces']:,}, other {b['other']:,}) vs {st['otlp_bytes_per_span']:,} B/span OTLP protobuf"
           f" -> {st['ratio']:.2f}x; {index_note(ix)}"]
    if st["database"] == "sqlite":
        f = st["files"]
        out.append(f"              pages in use {st['bytes']['total'] / MIB:.1f} MiB over {st['span_rows']:,} spans;"
                   f" file {f['main'] / MIB:.1f} MiB + WAL {f['wal'] / MIB:.1f} MiB"
                   f" ({f['free_pages'] / MIB:.1f} MiB free pages)")
    else:
        out.append(f"              tables {st['bytes']['total'] / MIB:.1f} MiB over {st['span_rows']:,} spans;"
                   f" pg_database_size {st['database_bytes'] / MIB:.1f} MiB (catalogs included)")
    return out


def render(r: dict[str, Any]) -> str:
    c, w, s, res = r["config"], r["workload"], r.get("server", {}), r.get("results", {})
    prof = r.get("profile")
    prof_kind = prof.get("kind") if prof else None
    # py-spy attached for the send window only leaves the start-up unprofiled
    start_profiled = bool(c["profile"]) and (c.get("profile_window") != "send" or prof_kind != "py-spy")
    lines = ["", "=" * 78,
             f"tracehub OTLP ingest benchmark  {r['date']}  ({r['machine']['cpus']} CPUs, "
             f"Python {r['machine']['python']})",
             "=" * 78,
             f"target      : {s.get('database') or s.get('url')}   (server code "
             f"{r.get('server_code', {}).get('commit')}"
             f"{' + local changes' if r.get('server_code', {}).get('tracehub_modified') else ''}"
             f"{_READERS[r.get('server_code', {}).get('c_reader')]})",
             f"transport   : {c['transport']}{' + gzip' if c['gzip'] else ''}, concurrency "
             f"{c['concurrency']}, batch {c['batch_size']} spans{', PROFILED' if c['profile'] else ''}",
             f"workload    : {c['spans']:,} spans, {w['traces']:,} traces "
             f"({w['spans_per_trace']} spans/trace),"
             f" {w['requests']} requests, {w['bytes_per_span']} B/span protobuf,"
             f" {w['wire_bytes'] / MIB:.1f} MiB on the wire",
             f"              {w['traces_split_across_requests']:,} traces split across requests, "
             f"{w['traces_with_children_before_root']:,} with children sent before the root;"
             f" built in {w['build_s']}s (untimed)"]
    m = r["machine"]
    if "speed_us_before" in m:
        lines.append(f"machine     : sum(range(1000)) took {m['speed_us_before']} µs before the run and "
                     f"{m.get('speed_us_after', '?')} after (lower is faster; compare runs at a similar speed)")
    if not res:
        return "\n".join(lines + ["(no results: the run failed, see above)"])
    lat = res["latency_ms"]
    q_rate = res["queryable_spans_per_s"]
    lines += [
        "-" * 78,
        f"acked       : {res['acked_spans']:,} spans in {res['ack_s']:.2f}s  ->  "
        f"{res['acked_spans_per_s'] or 0:,} spans/s",
        (f"queryable   : all {res['stored_spans']:,} spans listed by GET /api/v1/traces after "
         f"{res['queryable_s']:.2f}s  ->  {q_rate:,} spans/s" if q_rate else
         f"queryable   : NOT all spans became queryable ({res['stored_spans']:,} of {res['sent_spans']:,})"),
        (f"              (verification pass started at {res['verify_pass_start_s']:.2f}s and took "
         f"{res['verify_pass_s']:.2f}s over {res['stored_traces']:,} traces; {res['polls']} polls)"
         if q_rate else ""),
        (f"decisions   : {res['decided_at_queryable']:,} of {res['expected_traces']:,} traces decided when"
         f" queryable; all " + (f"after {res['decided_all_s']:.2f}s" if res.get("decided_all_s") else "NOT in time")
         if res.get("decided_at_queryable") is not None else ""),
        f"sent/acked/stored: {res['sent_spans']:,} / {res['acked_spans']:,} / {res['stored_spans']:,}"
        f"   not stored {res['lost_spans']:,} (acked but not stored: {res.get('lost_acked_spans', '?')},"
        f" never acked: {res.get('undelivered_spans', '?')})   rejected {res['rejected_spans']}"
        f"   failed requests {res['failed_requests']}",
        f"retries     : {res['retries']} {res['retry_reasons'] or ''}"
        + (f" (slept {res['retry_sleep_s']:.1f}s)" if res["retries"] else ""),
        f"latency     : p50 {lat['p50']} ms   p90 {lat['p90']} ms   p99 {lat['p99']} ms   "
        f"max {lat['max']} ms   (per accepted request)",
        f"cpu         : server {res['server_cpu_s']} s ({res['server_cores_used']} cores), "
        f"client {res['client_cpu_s']} s" + (f", postgres backends {res['db_cpu_s']} s"
                                              if res.get("db_cpu_s") is not None else ""),
        f"              whole machine {res['machine_busy_cpu_s']} s busy ({res['machine_cores_busy']} of "
        f"{r['machine']['cpus']} cores); other processes {res.get('other_cpu_s')} s"
        f"{'  <- interference' if (res.get('other_cpu_s') or 0) > 0.1 * res['machine_busy_cpu_s'] else ''}",
    ]
    if res.get("thread_us_per_span"):
        lines.append("cpu a span  : " + ", ".join(f"{k} {v:g} µs" for k, v in res["thread_us_per_span"].items())
                     + " (server threads, first request to last ack)")
    if res.get("writer_busy") is not None:
        lines.append(f"writer      : in a transaction {res['writer_busy']:.0%} of the time from first request to last"
                     f" ack, {res['writer_transactions']} transactions"
                     f" (near 100%: ingest waits on the writer)")
    if s.get("spawned"):
        lines += [
            f"server      : start {s['start_s']:.2f}s (spawn -> /healthz 200), idle RSS "
            f"{s['idle_rss_mib']} MiB, stop {s.get('stop_s')}s after SIGTERM",
            f"peak RSS    : {s.get('peak_rss_mib')} MiB (VmHWM); of it at most "
            f"{s.get('peak_rss_anon_mib')} MiB anonymous (heap) and {s.get('peak_rss_file_mib')} MiB "
            f"file-backed (mmap of the database, libraries)",
        ]
        if s.get("workers"):
            lines.append(
                f"with {s['workers']} decode worker(s): PSS idle {s['idle_pss_sum_mib']} / peak "
                f"{s.get('peak_pss_sum_mib')} MiB (shared pages counted once); RSS summed over the "
                f"processes idle {s['idle_rss_sum_mib']} / peak {s.get('peak_rss_sum_mib')} MiB")
    spot = res.get("spot_check") or {}
    if spot:
        lines.append(f"spot check  : trace {spot['trace_id']}: {spot['spans']} spans, "
                     f"{spot['llm_with_model_tokens_text']}/{spot['llm_spans']} LLM spans with model, "
                     f"tokens, input and output; types {', '.join(spot['span_types'])}")
        if "list50_ms_p50" in spot:
            lines.append(f"reads after: GET /api/v1/traces?page_size=50 p50 {spot['list50_ms_p50']} ms, "
                         f"one trace's detail p50 {spot['detail_ms_p50']} ms")
    lines += _stored_lines(r)
    if res.get("stalled"):
        lines.append("STALLED     : the server stopped acknowledging requests; the send phase was "
                     "abandoned (see the server log with --keep)")
    for e in res["errors"]:
        lines.append(f"error       : {e}")
    lines.append("-" * 78)
    rate = q_rate or 0
    lines.append(f"target {TARGET_SPANS_PER_S:,} spans/s until queryable, zero loss : "
                 f"{_mark(rate >= TARGET_SPANS_PER_S and res['lost_spans'] == 0)}"
                 f"{'  (profiled: not comparable)' if c['profile'] else ''}")
    st = r.get("stored") or {}
    if st.get("bytes_per_span"):
        total, otlp = st["bytes_per_span"]["total"], st["otlp_bytes_per_span"]
        left = (r.get("search_index") or {}).get("rows_left")
        lines.append(f"target stored bytes <= OTLP bytes a span  : {_mark(total <= otlp)}  ({total:,} vs "
                     f"{otlp:,} B/span, search index included"
                     + (f"; the index had {left:,} rows left" if left else "") + ")")
    if s.get("spawned"):
        # The server's memory: its own RSS, or with workers their PSS together if that is more.
        peak = max(s.get("peak_rss_mib") or 0, s.get("peak_pss_sum_mib") or 0)
        idle = max(s["idle_rss_mib"], s.get("idle_pss_sum_mib") or 0)
        lines.append(f"target peak RSS <= {TARGET_PEAK_RSS_MIB} MiB             : "
                     f"{_mark(peak <= TARGET_PEAK_RSS_MIB)}  ({peak} MiB)")
        lines.append(f"target idle RSS <= {TARGET_IDLE_RSS_MIB} MiB             : "
                     f"{_mark(idle <= TARGET_IDLE_RSS_MIB)}  ({idle} MiB)")
        lines.append(f"target start < {TARGET_START_S:.0f} s                      : "
                     f"{_mark(s['start_s'] < TARGET_START_S)}"
                     + ("  (profiled: not comparable)" if start_profiled else ""))
    if prof:
        window = ("first request .. last ack" if c.get("profile_window") == "send"
                  and prof["kind"] == "py-spy" else "whole server process")
        lines += ["-" * 78, f"profile ({prof['kind']}, {window})"]
        if "error" in prof:
            lines.append(f"  {prof['error']}\n{prof.get('log_tail', '')}")
        elif prof["kind"] == "py-spy":
            lines.append(f"  {prof['samples']} samples of running (non-idle) threads; by thread: " +
                         ", ".join(f"{k} {100 * v / max(1, prof['samples']):.0f}%"
                                   for k, v in list(prof["threads"].items())[:6]))
            lines.append("  self time (the function itself, incl. C calls it makes):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof["self"]]
            lines.append("  self time by source line (where a C call such as executemany runs):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof["self_lines"]]
            lines.append("  self time by call site (leaf line <- calling line):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof.get("call_sites", [])]
            lines.append("  inclusive time (the function and everything it calls):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof["inclusive"]]
        else:
            lines.append(f"  total {prof['total_s']} s")
            lines.append("  self time:")
            lines += [f"  {x['pct']:5.1f}%  {x['seconds']:8.3f}s  {x['calls']:>9}  {x['function']}"
                      for x in prof["self"]]
            lines.append("  cumulative time:")
            lines += [f"  {x['pct']:5.1f}%  {x['seconds']:8.3f}s  {x['calls']:>9}  {x['function']}"
                      for x in prof["inclusive"]]
    lines.append("=" * 78)
    return "\n".join(x for x in lines if x != "")

