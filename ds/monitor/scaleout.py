"""Scale-out: never more machines than the jobs can use, more as jobs arrive.

startCluster asks for the machines the queue's jobs fill at once, at most
CLUSTER_MACHINES: a machine booted for no job is paid from launch for
nothing. Each look of the monitor raises the fleet's target (and the service's
tasks with it) when jobs submitted since need more, again up to
CLUSTER_MACHINES. It never lowers anything; that is the scale-in's part
(scalein.py), once nothing is left to hand out.
"""
from ds.resources import cluster, fleet


def machines_for(jobs, settings, per_machine=None):
    """Machines that `jobs` jobs fill at once, at most CLUSTER_MACHINES."""
    per_machine = per_machine or settings.jobs_per_machine
    return min(settings.CLUSTER_MACHINES, fleet.machines_needed(jobs, per_machine))


def follow(ec2, ecs, settings, fleet_id, asked, per_machine, visible, in_flight):
    """One look: raise the target (`asked`, as the look read it; None once the fleet
    is gone) if the jobs queued and running need more machines, and the service's
    tasks to match the target (on every look: one cut short between the two must
    not leave machines without workers)."""
    if not visible or asked is None:
        return
    want = machines_for(visible + in_flight, settings, per_machine)
    if want > asked and fleet.scale_up(ec2, fleet_id, want) is not None:
        print("%d jobs queued or running: the fleet now asks for %d machines (was %d; at "
              "most CLUSTER_MACHINES %d)." % (visible + in_flight, want, asked,
                                              settings.CLUSTER_MACHINES))
        asked = want
    cluster.raise_desired_count(ecs, settings, asked * settings.TASKS_PER_MACHINE)
