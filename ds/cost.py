"""What a run costs: the ceiling startCluster prints, the estimate monitor prints.

The ceiling is per hour (machines x MACHINE_PRICE, the spot price cap):
jobs carry no durations, so a run's length cannot be estimated up front.
The estimate uses the lowest current spot price of MACHINE_TYPE in the
region, not each machine's own price, so it is a floor-ish guess; the
ceiling at MACHINE_PRICE is printed next to it. See documentation/costs.md.
"""
import datetime


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def ceiling_line(settings):
    machines, cap = settings.CLUSTER_MACHINES, settings.MACHINE_PRICE
    return ("Cost ceiling: %s x $%.4g per machine-hour (MACHINE_PRICE) = $%.2f per hour "
            "while they all run; idle machines are ended once the queue runs dry."
            % (_plural(machines, "machine"), cap, machines * cap))


def lowest_spot_price(ec2, machine_types):
    """The lowest current Linux spot price among machine_types, or None if unknown."""
    try:
        found = ec2.describe_spot_price_history(
            InstanceTypes=list(machine_types),
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=datetime.datetime.now(datetime.timezone.utc), MaxResults=100)
    except Exception:  # a price is a nicety; the summary must still print
        return None
    prices = [float(p["SpotPrice"]) for p in found.get("SpotPriceHistory", [])
              if p.get("SpotPrice")]
    return min(prices) if prices else None


def estimate_line(hours, spot_price, cap):
    """The monitor summary's cost sentence."""
    ceiling = "at most $%.2f at MACHINE_PRICE $%.4g" % (hours * cap, cap)
    if spot_price is None:
        return "Estimated cost: %s (current spot prices could not be read)." % ceiling
    return ("Estimated cost: about $%.2f at the lowest current spot price ($%.4g per "
            "machine-hour), %s." % (hours * spot_price, spot_price, ceiling))
