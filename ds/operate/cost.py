"""What a run costs: the ceiling startCluster prints, the estimate monitor prints.

The ceiling is per hour (machines x MACHINE_PRICE, the spot price cap):
jobs carry no durations, so a run's length cannot be estimated up front.

Every estimate of what a run cost (status, the monitor's last lines, the
outcome record, the run report) is one function, `estimate`: each machine's
hours times the latest spot price of its own type and zone. It is still an
estimate: AWS bills the price of each hour as it passes. See
documentation/costs.md.
"""
import datetime
import re

from ds.resources import fleet


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def ceiling_line(settings):
    machines, cap = settings.CLUSTER_MACHINES, settings.MACHINE_PRICE
    return ("Cost ceiling: %s x $%s per machine-hour (MACHINE_PRICE) = $%.2f per hour "
            "while they all run; idle machines are ended once the queue runs dry."
            % (_plural(machines, "machine"), price(cap), machines * cap))


def price(dollars):
    """A price per machine-hour as people write it: 0.042, 0.1, 0.00001 (never 1e-05)."""
    return ("%.5f" % dollars).rstrip("0").rstrip(".") or "0"


def estimate_line(usd, hours, cap):
    """The monitor summary's cost sentence; usd None where prices could not be read."""
    ceiling = "at most $%.2f at MACHINE_PRICE $%s" % (hours * cap, price(cap))
    if usd is None:
        return "Estimated cost: %s (current spot prices could not be read)." % ceiling
    return ("Estimated cost: about $%.2f at the latest spot price of each machine's type "
            "and zone, %s." % (usd, ceiling))


def ended(instance):
    """When a stopped or terminated instance ended, from its transition reason."""
    if instance["State"]["Name"] not in ("shutting-down", "terminated", "stopped", "stopping"):
        return None
    m = re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)",
                  instance.get("StateTransitionReason", ""))
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)


def machines(ec2, fleet_id):
    """The fleet's active machines: id, type, zone, state and hours so far."""
    if not fleet_id or not fleet.describe(ec2, fleet_id):
        return []
    return rows(ec2, fleet.instances(ec2, fleet_id))


def rows(ec2, ids):
    """id, type, zone, state and hours so far of these machines."""
    if not ids:
        return []
    now = datetime.datetime.now(datetime.timezone.utc)
    found = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-id", "Values": sorted(ids)}])
    for page in pages:
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                up = (ended(inst) or now) - inst["LaunchTime"]
                found.append({"id": inst["InstanceId"], "type": inst["InstanceType"],
                              "zone": inst.get("Placement", {}).get("AvailabilityZone", "?"),
                              "state": inst["State"]["Name"],
                              "hours": max(up.total_seconds(), 0) / 3600})
    return found


def spot_prices(ec2, pairs):
    """{(type, zone): latest spot price in USD/hour} for Linux machines."""
    prices = {}
    for machine_type, zone in sorted(pairs):
        try:
            found = ec2.describe_spot_price_history(
                InstanceTypes=[machine_type], AvailabilityZone=zone, MaxResults=10,
                ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"])["SpotPriceHistory"]
        except Exception:  # a price we cannot read leaves the estimate short, said below
            continue
        if found:
            latest = max(found, key=lambda p: p["Timestamp"])
            prices[(machine_type, zone)] = float(latest["SpotPrice"])
    return prices


def estimate(ec2, rows):
    """(machine-hours, estimated USD, machines without a price): the one estimate
    of what machines cost."""
    prices = spot_prices(ec2, {(r["type"], r["zone"]) for r in rows})
    hours = sum(r["hours"] for r in rows)
    cost = sum(r["hours"] * prices.get((r["type"], r["zone"]), 0.0) for r in rows)
    unpriced = sum(1 for r in rows if (r["type"], r["zone"]) not in prices)
    return hours, cost, unpriced


def of_rows(ec2, rows):
    """(machine-hours, estimated USD or None if any machine has no price): what a
    run's summary and report give."""
    hours, usd, unpriced = estimate(ec2, rows)
    return hours, None if unpriced else usd


def of_machines(ec2, ids):
    """of_rows of these machines, from launch to end (or now)."""
    return of_rows(ec2, rows(ec2, ids))
