"""Log disk, memory and CPU use of the machine every INSTANCE_MONITOR_SECONDS.

Started in the background by run-worker.sh so that the container's log shows
why jobs slow down or die (a full disk or memory pressure), with a WARNING
line above 90%. Standard library only; Python 2.7 and 3.8+.

  python instance-monitor.py          # until SIGTERM
  python instance-monitor.py --once   # one report (measures CPU over 1 s)
"""
from __future__ import print_function

import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time

THRESHOLD = 90.0


def disk_percent(path):
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize  # what non-root processes can still use
    if total == 0:
        return 0.0
    return 100.0 * (total - free) / total


def memory_percent(meminfo="/proc/meminfo"):
    values = {}
    try:
        with open(meminfo) as f:
            for line in f:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0])
    except (IOError, OSError, ValueError, IndexError):
        return None
    total = values.get("MemTotal")
    if not total:
        return None
    available = values.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = values.get("MemFree", 0) + values.get("Cached", 0)
    return 100.0 * (total - available) / total


def cpu_times(stat="/proc/stat"):
    """(busy, total) jiffies since boot, or None off Linux."""
    try:
        with open(stat) as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (IOError, OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def cpu_percent(before, after):
    if before is None or after is None or after[1] == before[1]:
        # No /proc/stat: the load average per core is the next best thing.
        try:
            return 100.0 * os.getloadavg()[0] / multiprocessing.cpu_count()
        except (OSError, AttributeError, NotImplementedError):
            return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def report(cpu, scratch):
    """Lines for one sample; WARNING lines for anything above THRESHOLD."""
    parts, warnings = [], []
    checks = [("disk /", disk_percent("/"))]
    if scratch and os.path.isdir(scratch):
        checks.append(("disk %s" % scratch, disk_percent(scratch)))
    checks.append(("memory", memory_percent()))
    checks.append(("cpu", cpu))
    for name, value in checks:
        if value is None:
            parts.append("%s n/a" % name)
            continue
        parts.append("%s %.1f%%" % (name, value))
        if value > THRESHOLD:
            warnings.append("WARNING %s at %.1f%% (above %d%%)"
                            % (name, value, THRESHOLD))
    return ["usage: " + ", ".join(parts)] + warnings


def main(argv):
    once = "--once" in argv
    try:
        interval = float(os.environ.get("INSTANCE_MONITOR_SECONDS") or 60)
    except ValueError:
        interval = 60.0
    scratch = os.environ.get("WORKER_SCRATCH") or tempfile.gettempdir()
    tag = "[%s monitor %s]" % (os.environ.get("APP_NAME", "DS"),
                               socket.gethostname())
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not once:
        print("%s %s monitoring every %gs" % (time.strftime("%Y-%m-%d %H:%M:%S"),
                                            tag, interval))
        sys.stdout.flush()
    before = cpu_times()
    while True:
        # Event.wait, not sleep: SIGTERM ends the monitor at once.
        if stop.wait(1.0 if once else interval):
            return 0
        after = cpu_times()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in report(cpu_percent(before, after), scratch):
            print("%s %s %s" % (stamp, tag, line))
        sys.stdout.flush()
        before = after
        if once:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
