"""Watching a run and removing it at the end.

steps     one look at a run and its teardown steps, shared by every monitor
scalein   which machines are idle, and letting them go
laptop    `python run.py monitor`: the loop around the steps, and the summary
install   startCluster's install of the automatic monitor (function, role, schedule)
auto/     the automatic monitor's tick: exactly what its Lambda function runs
"""
