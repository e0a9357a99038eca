"""The core every other package stands on: settings (config.py), errors, the AWS
session (retries, one-line refusals), waits, JSON files and the run's state file."""
