"""The automatic monitor: what its Lambda function runs, and nothing more.
tick (the handler), state (its copy of the run's state file in the bucket),
function (its names, and its removal by the last tick)."""
