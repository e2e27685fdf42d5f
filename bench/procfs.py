"""CPU and memory of a benchmark's server, its decode workers, PostgreSQL's backends and the
machine, read from /proc (Linux), and how fast the machine runs Python right now."""

from __future__ import annotations

import os
import threading
import time


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile in bytes from /proc/<pid>/status (empty if gone).
    RssFile is file-backed pages mapped into the process, e.g. SQLite's mmap of the database."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def read_pss(pid: int) -> int:
    """Proportional set size in bytes: private pages plus a share of pages shared with other
    processes (the forked decode workers share most of their memory with the server)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def server_pids(pid: int) -> list[int]:
    """The server and its decode workers."""
    return [pid, *children_of(pid)]


def tree_cpu_seconds(pid: int) -> float | None:
    main = cpu_seconds(pid)
    if main is None:
        return None
    return main + sum(cpu_seconds(k) or 0.0 for k in children_of(pid))


def proc_stat(path: str) -> tuple[str, float] | None:
    """(command name, CPU seconds) of a process or thread from its /proc stat file."""
    try:
        with open(path) as f:
            stat = f.read()
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 1:].split()
        return name, (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    found = proc_stat(f"/proc/{pid}/stat")
    return found[1] if found else None


def thread_cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds of the server and its decode workers by OS thread name: the server names its
    writer, checkpointer, indexer and decode workers `th-*`; the event loop and every other thread
    count together (threads that ended meanwhile are missed)."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            found = proc_stat(f"/proc/{pid}/task/{tid}/stat")
            if found is not None:
                key = found[0] if found[0].startswith("th-") else "event loop and others"
                out[key] = out.get(key, 0.0) + found[1]
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (from /proc/stat), to see the database's and any
    other process's share next to the server's and the client's."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    busy = sum(vals[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def machine_speed_us() -> float:
    """Microseconds of one `sum(range(1000))`, best of five rounds: how fast this machine runs Python
    right now. The same code's spans/s moves with it (it took ~10 on the fastest day seen, ~28 on
    the slowest), so figures are comparable only at a similar speed."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(2_000):
            sum(range(1000))
        best = min(best, time.perf_counter() - t)
    return round(best / 2_000 * 1e6, 2)


def db_backend_cpu(dbname: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `dbname` (matched on its process title)."""
    out: dict[int, float] = {}
    if not dbname:
        return out
    needle = f" {dbname} ".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if title.startswith(b"postgres:") and needle in title:
            cpu = cpu_seconds(int(entry))
            if cpu is not None:
                out[int(entry)] = cpu
    return out


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


class RssSampler(threading.Thread):
    """Peaks of the server process's RSS and of the whole server's (it and its workers) PSS and
    summed RSS (which counts shared pages once per process)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval = pid, interval
        self.peak_rss = 0
        self.hwm = 0
        self.peak_anon = 0
        self.peak_file = 0
        self.peak_pss_sum = 0
        self.peak_rss_sum = 0
        self.workers = 0
        self.samples = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(self.interval)

    def sample(self) -> None:
        st = read_status(self.pid)
        self.peak_rss = max(self.peak_rss, st.get("VmRSS", 0))
        self.hwm = max(self.hwm, st.get("VmHWM", 0))
        self.peak_anon = max(self.peak_anon, st.get("RssAnon", 0))
        self.peak_file = max(self.peak_file, st.get("RssFile", 0))
        pids = server_pids(self.pid)
        self.workers = max(self.workers, len(pids) - 1)
        self.peak_rss_sum = max(self.peak_rss_sum, sum(read_status(p).get("VmRSS", 0) for p in pids))
        self.samples += 1
        if self.samples % 10 == 1:
            # smaps_rollup walks the page tables under the server's mmap lock, which its mmap /
            # munmap calls then wait for: read it once a second, not every sample.
            self.peak_pss_sum = max(self.peak_pss_sum, sum(read_pss(p) for p in pids))

    def stop(self) -> None:
        self.sample()
        self._stop_evt.set()

