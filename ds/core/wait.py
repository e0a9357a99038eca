"""Waiting for AWS to reach a state: poll with backoff and a timeout, never a fixed sleep."""
import time

from ds.core.errors import UserError


def until(check, what, timeout=300, first=0.2, longest=15.0, fail=True):
    """Call check() until it returns something truthy; return that.

    Polls quickly at first (the emulator and many AWS calls settle in well
    under a second) and backs off to `longest` seconds between polls.
    """
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() + delay > deadline:
            if not fail:
                return None
            raise UserError("Timed out after %d s waiting for %s; run the command again "
                            "to continue, or check the AWS console." % (timeout, what))
        time.sleep(delay)
        delay = min(delay * 2, longest)
