"""Reading a run: the job-log parser every reader uses (joblog), cost, and the
commands status, failures, redrive and report (with its HTML template)."""
