"""What a run costs under Distributed-Something's monitor and ours: a discrete-event simulation.

Each run is simulated once per policy on the same random draws (job
durations, and the spot lifetime of the k-th machine launched):

  Distributed-Something   its monitor looks every minute to see whether the
         queue is empty, but only every 10 minutes, if the queue has nothing
         visible and fewer jobs in flight than machines, sets the fleet's
         target to the number of jobs in flight (not machines), terminating
         nothing. It asks for every machine of the scenario, and its service
         does not drain spot machines.
  ours   the scale-in (ds/monitor/scalein.py): once nothing is visible, lowers
         the target to the busy machines and ends the idle ones; the fleet
         asks for no more machines than the jobs fill (ds/monitor/scaleout.py);
         the service drains a machine at its spot notice (its minimum healthy
         percent is 0: ds/resources/cluster.py).
         Under the laptop monitor it looks every MONITOR_TIME (60 s), under
         the automatic monitor at its schedule's rate (monitor/install.py).

In all, an idle alarm ends a machine after 15 idle minutes plus the alarm's
own delay, the fleet replaces lost machines while it runs fewer than its
target, a job on a machine that dies without draining comes back one lease
after its last renewal, and the run is torn down at the first look that finds
the queue empty. Billing is per second with a 60 s minimum.

    python benchmarks/costsim.py                  # the table of documentation/costs.md
    python benchmarks/costsim.py --seeds 1-200    # the same over 200 seeds (minutes)
    python benchmarks/costsim.py --jobs 2000 --machines 20 --seeds 1-3   # a scenario of your own
"""
import argparse
import collections
import heapq
import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ds.core.settings import KNOBS  # noqa: E402
from ds.monitor.install import RATE_MINUTES  # noqa: E402

MONITOR_TIME = KNOBS["MONITOR_TIME"][1]   # the laptop monitor's default look interval

INF = float("inf")
# Same-time events: finished work first, then machine changes, then the monitor.
PRIO = {"done": 0, "reappear": 1, "boot": 2, "notice": 3, "death": 4, "alarm": 5, "poll": 6}


class Scenario:
    def __init__(self, jobs=10000, median=300.0, tail_share=0.01, tail_factor=10.0,
                 spread=0.25, machines=100, slots=4, boot=180.0, interrupt_rate=0.05,
                 notice=120.0, lease=600.0, alarm_idle=900.0, alarm_delay=300.0,
                 min_bill=60.0):
        self.__dict__.update(locals())
        del self.__dict__["self"]


class Policy:
    """A scale-in rule, how often its monitor looks, and what the service does.

    drain: the service stops a machine's tasks at its spot notice (ours since its
    minimum healthy percent is 0; with ECS's default of 100 nothing is stopped).
    fit: the fleet asks for no more machines than the jobs fill
    (ceil(jobs / slots), as startCluster does), else for every machine of the scenario.
    """

    def __init__(self, name, rule, poll, drain, downscale_every=1, fit=False):
        self.name, self.rule, self.poll, self.drain = name, rule, poll, drain
        self.downscale_every = downscale_every   # polls between scale-down decisions
        self.fit = fit


def policies(tick_minutes=RATE_MINUTES):
    """Distributed-Something's monitor, and ours under either of its monitors."""
    return [Policy("Distributed-Something", "ds", 60.0, False, downscale_every=10),
            Policy("ours, laptop monitor", "new", float(MONITOR_TIME), True, fit=True),
            Policy("ours, automatic monitor", "new", 60.0 * tick_minutes, True, fit=True)]


def machines_at_start(sc, policy):
    """What the fleet asks for first: every machine, or (fit) those the jobs fill."""
    if policy.fit:
        return min(sc.machines, int(math.ceil(sc.jobs / float(sc.slots))))
    return sc.machines


class Draws:
    """The random part of a run, shared by every policy."""

    def __init__(self, durations, lifetimes):
        self.durations = list(durations)   # seconds per job (every attempt alike)
        self.lifetimes = lifetimes         # k -> seconds from launch to notice of machine k

    @classmethod
    def random(cls, sc, seed):
        rng = random.Random(seed)
        durations = []
        for _ in range(sc.jobs):
            d = sc.median * math.exp(sc.spread * rng.gauss(0, 1))
            if rng.random() < sc.tail_share:
                d *= sc.tail_factor
            durations.append(d)
        life_rng = random.Random(seed * 7919 + 1)
        rate = sc.interrupt_rate / 3600.0
        lifetimes = [life_rng.expovariate(rate) if rate > 0 else INF
                     for _ in range(20 * sc.machines + 100)]
        return cls(durations, lambda k: lifetimes[k] if k < len(lifetimes) else INF)


class Machine:
    def __init__(self, mid, now):
        self.id, self.launched, self.ended = mid, now, None
        self.ready = False          # booted and taking jobs
        self.draining = False
        self.jobs = {}              # token -> (job, start)
        self.busy_since = None
        self.occupied = 0.0
        self.idle_token = 0


class Run:
    def __init__(self, sc, policy, draws):
        self.sc, self.p, self.d = sc, policy, draws
        self.now = 0.0
        self.events, self.seq = [], 0
        self.machines, self.alive = [], set()
        self.target = machines_at_start(sc, policy)
        self.visible = collections.deque(range(sc.jobs))
        self.in_flight = 0
        self.tokens = 0
        self.live = {}              # token -> machine, for attempts still running
        self.starts = collections.Counter()
        self.done = 0
        self.last_done = 0.0
        self.slot_seconds = 0.0
        self.polls = 0
        self.finished = False

    # ---- events --------------------------------------------------------
    def at(self, when, kind, *data):
        self.seq += 1
        heapq.heappush(self.events, (when, PRIO[kind], self.seq, kind, data))

    def simulate(self):
        self.maintain()
        self.at(self.p.poll, "poll")
        while self.events and not self.finished:
            self.now, _, _, kind, data = heapq.heappop(self.events)
            getattr(self, "on_" + kind)(*data)
        return self.results()

    # ---- machines ------------------------------------------------------
    def launch(self):
        m = Machine(len(self.machines), self.now)
        self.machines.append(m)
        self.alive.add(m)
        self.at(self.now + self.sc.boot, "boot", m)
        life = self.d.lifetimes(m.id)
        if life < INF:
            self.at(self.now + life, "notice", m)

    def maintain(self):
        """The fleet launches machines while it runs fewer than its target."""
        while len(self.alive) < self.target:
            self.launch()

    def end(self, m):
        if m.ended is not None:
            return
        m.ended = self.now
        self.alive.discard(m)
        if m.busy_since is not None:
            m.occupied += self.now - m.busy_since
            m.busy_since = None
        for token, (job, start) in list(m.jobs.items()):
            self.slot_seconds += self.now - start
            del self.live[token]
            # lost with the machine: back when the lease from its last renewal runs out
            third = self.sc.lease / 3.0
            renewed = start + math.floor((self.now - start) / third) * third
            self.at(renewed + self.sc.lease, "reappear", job)
        m.jobs = {}
        self.maintain()

    def on_boot(self, m):
        if m.ended is None:
            m.ready = True
            self.fill(m)
            self.check_idle(m)

    def on_notice(self, m):
        if m.ended is not None:
            return
        self.at(self.now + self.sc.notice, "death", m)
        if self.p.drain:
            # ECS stops the tasks: every job goes back to the queue at once
            m.draining = True
            for token, (job, start) in list(m.jobs.items()):
                self.stop_job(m, token)
                self.in_flight -= 1
                self.visible.append(job)
            self.dispatch()

    def on_death(self, m):
        self.end(m)

    def on_alarm(self, m, token):
        if m.ended is None and token == m.idle_token and not m.jobs:
            self.end(m)

    # ---- jobs ----------------------------------------------------------
    def fill(self, m):
        while (m.ready and not m.draining and m.ended is None and self.visible
               and len(m.jobs) < self.sc.slots):
            job = self.visible.popleft()
            self.tokens += 1
            if not m.jobs:
                m.busy_since = self.now
                m.idle_token += 1
            m.jobs[self.tokens] = (job, self.now)
            self.live[self.tokens] = m
            self.in_flight += 1
            self.starts[job] += 1
            self.at(self.now + self.d.durations[job], "done", self.tokens)

    def dispatch(self):
        for m in sorted(self.alive, key=lambda m: m.id):   # the same order on every run
            if not self.visible:
                return
            self.fill(m)

    def stop_job(self, m, token):
        job, start = m.jobs.pop(token)
        del self.live[token]
        self.slot_seconds += self.now - start
        if not m.jobs and m.busy_since is not None:
            m.occupied += self.now - m.busy_since
            m.busy_since = None
            self.check_idle(m)
        return job

    def check_idle(self, m):
        if not m.jobs and m.ended is None:
            m.idle_token += 1
            self.at(self.now + self.sc.alarm_idle + self.sc.alarm_delay, "alarm", m,
                    m.idle_token)

    def on_done(self, token):
        m = self.live.get(token)
        if m is None:
            return  # its machine died first
        self.stop_job(m, token)
        self.in_flight -= 1
        self.done += 1
        self.last_done = self.now
        self.fill(m)

    def on_reappear(self, job):
        self.in_flight -= 1
        self.visible.append(job)
        self.dispatch()

    # ---- the monitor ---------------------------------------------------
    def on_poll(self):
        self.polls += 1
        if not self.visible and self.in_flight == 0:
            self.target = 0              # teardown: the fleet is cancelled
            for m in list(self.alive):
                self.end(m)
            self.finished = True
            return
        self.at(self.now + self.p.poll, "poll")
        if self.visible or self.polls % self.p.downscale_every:
            return
        rule = self.p.rule
        if rule == "new":
            busy = [m for m in self.alive if m.jobs]
            if sum(len(m.jobs) for m in busy) < self.in_flight or not busy:
                rule = "old"   # jobs on dead machines: the records cannot vouch for them
            else:
                self.target = min(self.target, len(busy))
                for m in sorted(self.alive - set(busy), key=lambda m: m.id):
                    self.end(m)   # idle at this look
                return
        if rule == "ds":
            if self.in_flight < len(self.alive):
                self.target = self.in_flight
        else:
            self.target = min(self.target, int(math.ceil(self.in_flight / float(self.sc.slots))))
        self.maintain()

    # ---- results -------------------------------------------------------
    def results(self):
        paid = occupied = booting = 0.0
        for m in self.machines:
            end = m.ended if m.ended is not None else self.now
            paid += max(end - m.launched, self.sc.min_bill)
            occupied += m.occupied
            booting += min(self.sc.boot, end - m.launched)
        return {"policy": self.p.name, "paid_h": paid / 3600, "occupied_h": occupied / 3600,
                "ratio": paid / occupied if occupied else INF,
                "utilization": self.slot_seconds / (paid * self.sc.slots) if paid else 0.0,
                "makespan_min": self.last_done / 60, "done": self.done,
                "rerun": sum(1 for n in self.starts.values() if n > 1),
                "booting_h": booting / 3600,
                "machines": len(self.machines)}


def run_all(sc, draws, chosen=None):
    return [Run(sc, p, draws).simulate() for p in (chosen or policies())]


class Named(Scenario):
    def __init__(self, name, **kw):
        super().__init__(**kw)
        self.name = name


# The scenarios of documentation/costs.md (issue 19 names them).
SCENARIOS = [
    Named("10,000 jobs x 5 min, 100 machines"),
    Named("1,000 jobs x 30 min, 100 machines", jobs=1000, median=1800.0),
    Named("100,000 jobs x 20 s, 100 machines", jobs=100000, median=20.0),
    Named("10,000 jobs x 5 min, 20%/h interrupted", interrupt_rate=0.2),
    Named("1,000 jobs x 5 min, 500 machines", jobs=1000, machines=500),
    Named("10,000 jobs x 5 min, 1,000 machines", jobs=10000, machines=1000),
]


def seeds_arg(text):
    """"1-5" or "3": the seeds to run."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def calm(sc):
    """The same scenario without spot interruptions."""
    out = Scenario(**{k: v for k, v in sc.__dict__.items() if k != "name"})
    out.interrupt_rate = 0.0
    return out


def one_seed(args):
    sc, seed, chosen = args
    return (run_all(sc, Draws.random(sc, seed), chosen),
            run_all(calm(sc), Draws.random(calm(sc), seed), chosen))


def summarize(sc, seeds, chosen, pool):
    """Per policy: the ranges over seeds, and the mean makespan against the first policy's."""
    results = list(pool.map(one_seed, [(sc, seed, chosen) for seed in seeds]))
    out = []
    for i, policy in enumerate(chosen):
        rows = [r[i] for r, _ in results]
        vs = [r[i]["makespan_min"] / r[0]["makespan_min"] for r, _ in results]
        vs_calm = [c[i]["makespan_min"] / c[0]["makespan_min"] for _, c in results]
        mean = sum(r[i]["makespan_min"] for r, _ in results) / len(results)
        mean_ds = sum(r[0]["makespan_min"] for r, _ in results) / len(results)
        out.append({"policy": policy.name, "machines": machines_at_start(sc, policy),
                    "ratio": (min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)),
                    "makespan": (min(vs), max(vs)), "mean_makespan": (mean, mean / mean_ds),
                    "calm_makespan": (min(vs_calm), max(vs_calm))})
    return out


def span(pair, fmt="%.3f"):
    low, high = pair
    return fmt % low if fmt % low == fmt % high else (fmt + "-" + fmt) % (low, high)


def table(summaries):
    """One markdown table: every scenario under every policy."""
    lines = ["| scenario | monitor | machines at start | paid / occupied | mean makespan "
             "(vs DS) | makespan vs DS, per seed | the same, no interruptions |",
             "|---|---|---|---|---|---|---|"]
    for sc, rows in summaries:
        for n, r in enumerate(rows):
            lines.append("| %s | %s | %d | %s | %.0f min (x%.3f) | %s | %s |" % (
                sc.name if n == 0 else "", r["policy"], r["machines"], span(r["ratio"]),
                r["mean_makespan"][0], r["mean_makespan"][1], span(r["makespan"]),
                span(r["calm_makespan"])))
    return "\n".join(lines)


def main(argv=None):
    import concurrent.futures
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-5"),
                   help="seeds, as FIRST-LAST (default 1-5) or one number")
    p.add_argument("--tick-minutes", type=int, default=RATE_MINUTES,
                   help="the automatic monitor's interval (default: the shipped %d)" % RATE_MINUTES)
    own = p.add_argument_group("a scenario of your own instead (unset: the first's value)")
    own.add_argument("--jobs", type=int)
    own.add_argument("--median", type=float, help="median job duration in seconds")
    own.add_argument("--machines", type=int)
    own.add_argument("--slots", type=int, help="tasks x workers per machine")
    own.add_argument("--interrupt-rate", type=float, help="share of machines interrupted per hour")
    args = p.parse_args(argv)
    scenarios = SCENARIOS
    knobs = {k: v for k, v in vars(args).items()
             if k in ("jobs", "median", "machines", "slots", "interrupt_rate") and v is not None}
    if knobs:
        sc = Scenario(**knobs)
        scenarios = [Named("%d jobs x %g s, %d machines x %d slots" % (
            sc.jobs, sc.median, sc.machines, sc.slots), **knobs)]
    base = scenarios[0]
    print("Seeds %d-%d. Durations log-normal (spread %.2f), %.0f%% of jobs take %gx; %.0f-min "
          "boot; %.0f%% of machines interrupted per hour unless said (%.0f s notice); %.0f-min "
          "lease; idle alarm %.0f+%.0f min; %d slots per machine.\n"
          % (args.seeds[0], args.seeds[-1], base.spread, 100 * base.tail_share,
             base.tail_factor, base.boot / 60, 100 * base.interrupt_rate, base.notice,
             base.lease / 60, base.alarm_idle / 60, base.alarm_delay / 60, base.slots))
    chosen = policies(args.tick_minutes)
    with concurrent.futures.ProcessPoolExecutor() as pool:
        print(table([(sc, summarize(sc, args.seeds, chosen, pool)) for sc in scenarios]))


if __name__ == "__main__":
    main()
