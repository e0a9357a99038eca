"""The control plane of Distributed-Something, one package per kind of thing.

Imports point down this list, never up, and never in a circle
(tests/test_layout.py checks both):

core        settings, errors, the AWS session, waits, JSON files, the run's state file
resources   the run's AWS resources: one module each (queue, cluster, fleet, logs, ...)
operate     reading a run: the job-log parser, cost, status, failures, redrive, report
monitor     one look at a run and its teardown, scale-in, the laptop loop;
            monitor/auto/ is the automatic monitor, exactly what its Lambda function runs
commands    setup, submitJob, startCluster, prepare, check, local
cli         from parsed command-line arguments to the command
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The worker's own modules (awscompat's error classifier, dsjob's job parser)
# are imported from worker/ by plain `import`, so both sides follow one rule
# (and the automatic monitor's package builder sees which ones it needs).
WORKER_DIR = os.path.join(REPO, "worker")
if WORKER_DIR not in sys.path:
    sys.path.insert(0, WORKER_DIR)
