"""Example tool: summarize one well's cell measurements (count, mean, sd, min, max per column)."""
import csv
import json
import statistics
import sys

source, target = sys.argv[1], sys.argv[2]
with open(source, newline="") as f:
    rows = list(csv.DictReader(f))
columns = [c for c in rows[0] if c != "cell"]
summary = {"cells": len(rows)}
for c in columns:
    values = [float(r[c]) for r in rows]
    summary[c] = {"mean": statistics.mean(values), "sd": statistics.stdev(values),
                  "min": min(values), "max": max(values)}
with open(target, "w") as f:
    json.dump(summary, f, indent=2)
print("summarized %d cells from %s" % (len(rows), source))
