"""A finished run's outcome, kept in the bucket next to its report
(reports/APP_NAME/outcome.json): the counts and machine-hours its last summary
gave. The run's monitor file is deleted at its end, so a `monitor` that was
following a run the automatic monitor finished, or a `report` written after
the clean-up, reads them here, never a zero.
"""
import time

from ds.core.aws import explain
from ds.core.jsonfile import load_object, store_object


def key_for(app_name):
    return "reports/%s/outcome.json" % app_name


def save(s3, settings, fleet_id, done, dead, hours, usd):
    record = {"fleet_id": fleet_id, "finished": time.time(), "done": done, "dead": dead,
              "machine_hours": hours, "cost_usd": usd}
    key = key_for(settings.APP_NAME)
    with explain("record the outcome of run %s in s3://%s/%s"
                 % (settings.APP_NAME, settings.AWS_BUCKET, key)):
        store_object(s3, settings.AWS_BUCKET, key, record)
    return record


def load(s3, settings, fleet_id):
    """The outcome of the run of spot fleet `fleet_id`, or None: not finished, or
    the one recorded is another run's (an earlier run of the same APP_NAME)."""
    key = key_for(settings.APP_NAME)
    with explain("read s3://%s/%s" % (settings.AWS_BUCKET, key)):
        record = load_object(s3, settings.AWS_BUCKET, key)
    return record if record and record.get("fleet_id") == fleet_id else None


def usd(record):
    """The estimated cost a record holds; records written before cost_usd hold the
    region's lowest spot price instead."""
    if "cost_usd" in record:
        return record["cost_usd"]
    spot = record.get("spot_price")
    return None if spot is None or record.get("machine_hours") is None \
        else record["machine_hours"] * spot
