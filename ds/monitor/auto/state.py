"""The automatic monitor's state: the run's monitor file, kept in the bucket at
monitors/APP_NAME.json so that every tick (the function's, or the laptop's)
reads and writes the same copy."""
from ds.core.aws import explain
from ds.core.jsonfile import load_object, store_object

KEY_PREFIX = "monitors/"


def key_for(app_name):
    return "%s%s.json" % (KEY_PREFIX, app_name)


def upload(s3, bucket, key, info):
    with explain("write the run's monitor file to s3://%s/%s" % (bucket, key)):
        store_object(s3, bucket, key, info)


def load(s3, bucket, key):
    """The stored monitor file, or None if it is gone."""
    return load_object(s3, bucket, key)


class NotOurs(Exception):
    """The monitor file in the bucket is gone (another tick ended the run) or
    belongs to a newer run of the same app."""


def run_of(info):
    """The run a monitor file belongs to: its spot fleet, one per startCluster."""
    return info.get("MONITOR_FLEET_ID")


def ours(s3, bucket, key, info):
    """Whether the file in the bucket is still `info`'s run's (not gone, not another's)."""
    stored = load(s3, bucket, key)
    return stored is not None and run_of(stored) == run_of(info)


def _progress(info):
    """How far a run has got, to compare two copies of its monitor file."""
    state = info.get("MONITOR_TEARDOWN") or {}
    return (bool(info.get("MONITOR_FINISHED")), bool(info.get("MONITOR_TEARDOWN")),
            state.get("step", 0), len(state.get("export", {}).get("done", [])))


def save(s3, bucket, key, info):
    """Write `info` unless another tick (the laptop's, say) has got further meanwhile:
    a slower tick never winds the run back. Raises NotOurs if the file is gone
    or another run's since this tick read it: a tick never brings an ended run
    back, nor writes another run's file."""
    stored = load(s3, bucket, key)
    if stored is None or run_of(stored) != run_of(info):
        raise NotOurs()
    if _progress(stored) > _progress(info):
        return stored
    upload(s3, bucket, key, info)
    return info
