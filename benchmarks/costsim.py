"""What a run costs under three scale-in policies: a discrete-event simulation.

One invocation simulates a whole run three times on the same random draws
(job durations, and the spot lifetime of the k-th machine launched):

  ds     Distributed-Something's monitor: looks every minute to see whether
         the queue is empty, but only every 10 minutes, if the queue has
         nothing visible and fewer jobs in flight than machines, sets the
         fleet's target to the number of jobs in flight (not machines),
         terminating nothing.
  old    this project before the scale-in: looks every minute; lowers the
         target to the machines the jobs in flight need, terminating nothing.
  new    the scale-in (ds/monitor/scalein.py): looks every minute; lowers the target
         to the busy machines and ends machines idle on two polls in a row;
         spot interruptions drain (jobs released at the notice).

In all three, an idle alarm ends a machine after 15 idle minutes plus the
alarm's own delay, the fleet replaces lost machines while it runs fewer
than its target, a job on a machine that dies without draining comes back
one lease after its last renewal, and the run is torn down at the first poll
that finds the queue empty. Billing is per second with a 60 s minimum.

    python benchmarks/costsim.py                  # the documented scenario, seed 1
    python benchmarks/costsim.py --seeds 1 2 3    # one table per seed
    python benchmarks/costsim.py --jobs 2000 --machines 20
"""
import argparse
import collections
import heapq
import math
import random

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
    def __init__(self, name, rule, poll, drain, downscale_every=1):
        self.name, self.rule, self.poll, self.drain = name, rule, poll, drain
        self.downscale_every = downscale_every   # polls between scale-down decisions


POLICIES = [Policy("Distributed-Something", "ds", 60.0, False, downscale_every=10),
            Policy("ours before this", "old", 60.0, False),
            Policy("new", "new", 60.0, True)]


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
        self.target = sc.machines
        self.visible = collections.deque(range(sc.jobs))
        self.in_flight = 0
        self.tokens = 0
        self.live = {}              # token -> machine, for attempts still running
        self.starts = collections.Counter()
        self.done = 0
        self.last_done = 0.0
        self.slot_seconds = 0.0
        self.idle_before = set()
        self.polls = 0
        self.finished = False

    # ---- events --------------------------------------------------------
    def at(self, when, kind, *data):
        self.seq += 1
        heapq.heappush(self.events, (when, PRIO[kind], self.seq, kind, data))

    def simulate(self):
        for _ in range(self.sc.machines):
            self.launch()
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
            self.idle_before = set()
            return
        rule = self.p.rule
        if rule == "new":
            busy = [m for m in self.alive if m.jobs]
            if sum(len(m.jobs) for m in busy) < self.in_flight or not busy:
                rule = "old"   # jobs on dead machines: the records cannot vouch for them
            else:
                self.target = min(self.target, len(busy))
                idle = {m for m in self.alive if not m.jobs}
                ended = idle & self.idle_before   # idle on this poll and the one before
                for m in sorted(ended, key=lambda m: m.id):
                    self.end(m)
                self.idle_before = idle - ended
                return
        self.idle_before = set()
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


def run_all(sc, draws, policies=POLICIES):
    return [Run(sc, p, draws).simulate() for p in policies]


def table(rows):
    lines = ["| policy | paid machine-h | occupied machine-h | paid/occupied | slot utilization"
             " | makespan | jobs run more than once | machines launched |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %.1f | %.1f | %.3f | %.1f%% | %.1f min | %d | %d |" % (
            r["policy"], r["paid_h"], r["occupied_h"], r["ratio"], 100 * r["utilization"],
            r["makespan_min"], r["rerun"], r["machines"]))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--jobs", type=int, default=10000)
    p.add_argument("--machines", type=int, default=100)
    p.add_argument("--slots", type=int, default=4, help="tasks x workers per machine")
    p.add_argument("--interrupt-rate", type=float, default=0.05,
                   help="share of machines interrupted per hour")
    args = p.parse_args(argv)
    sc = Scenario(jobs=args.jobs, machines=args.machines, slots=args.slots,
                  interrupt_rate=args.interrupt_rate)
    print("%d jobs, median %.0f min, %.0f%% take %gx; %d machines x %d slots, %.0f-min boot; "
          "%.0f%% of machines interrupted per hour (%.0f s notice); %.0f-min lease; idle alarm "
          "%.0f+%.0f min." % (sc.jobs, sc.median / 60, 100 * sc.tail_share, sc.tail_factor,
                              sc.machines, sc.slots, sc.boot / 60, 100 * sc.interrupt_rate,
                              sc.notice, sc.lease / 60, sc.alarm_idle / 60, sc.alarm_delay / 60))
    for seed in args.seeds:
        rows = run_all(sc, Draws.random(sc, seed))
        print("\nseed %d" % seed)
        print(table(rows))
        for r in rows:
            idle = r["paid_h"] - r["occupied_h"]
            print("%s: %.1f idle machine-hours paid, %.1f of them booting" % (
                r["policy"], idle, r["booting_h"]))
        base = rows[0]
        for r in rows[1:]:
            print("%s vs %s: paid x%.3f, makespan x%.3f" % (
                r["policy"], base["policy"], r["paid_h"] / base["paid_h"],
                r["makespan_min"] / base["makespan_min"]))


if __name__ == "__main__":
    main()
