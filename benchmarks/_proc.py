"""CPU time of process trees from /proc, for the benchmarks; not a benchmark itself."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm) ", or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # ended meanwhile
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    """Every process now."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def process_tree(root: int) -> list[int]:
    """A process and its descendants now."""
    parents = {pid: int(fields[1]) for pid in _pids() if (fields := stat_fields(pid)) is not None}
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree += children
        frontier += children
    return tree


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """CPU clock ticks (user and system) of each process that still runs, with the children it reaped."""
    ticks = {}
    for pid in pids:
        if (fields := stat_fields(pid)) is not None:
            ticks[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks


def pids_named(*names: str) -> list[int]:
    """The processes whose command name (/proc/PID/comm) is one of ``names``, e.g. the database server's."""
    found = []
    for pid in _pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:  # ended meanwhile
            continue
        if comm in names:
            found.append(pid)
    return found
