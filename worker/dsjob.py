"""Pure job logic shared by the worker and the control plane.

The control plane imports this file (via sys.path) to validate job files
before submitting them, and the worker uses it to turn a queue message into a
shell command. Therefore: standard library only, no AWS, no I/O, and source
compatible with Python 2.7 and 3.8+ (the python2worker image runs it too).

Template language for COMMAND (see documentation/worker.md):
  {name}      the shell-quoted value of job key `name` (lists: one quoted
              word per item)
  {input_dir} {output_dir} {job_name}   built-ins, also quoted
  {{  }}      literal braces
"""
from __future__ import print_function

import hashlib
import json
import re
from collections import OrderedDict

try:  # Python 3
    from shlex import quote as _shell_quote  # novermin (2.7 falls back below)
except ImportError:  # Python 2.7 keeps it in pipes
    from pipes import quote as _shell_quote

try:
    _STRING_TYPES = (str, unicode)  # noqa: F821  (Python 2)
except NameError:
    _STRING_TYPES = (str,)

BUILTINS = ("input_dir", "output_dir", "job_name")
# Keys the worker itself interprets; everything else is placeholder data.
RESERVED_KEYS = ("input", "output", "job_name", "group")
JOB_NAME_MAX = 200

# A placeholder name: what a JSON key sensibly looks like in a job file.
_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_TOKEN = re.compile(r"\{\{|\}\}|\{(" + _NAME + r")\}|\{|\}")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.=-]+")


class JobError(ValueError):
    """A job (or template) the worker cannot run; the message says why."""


def _tokens(template):
    """Yield ('text', s) and ('name', n) pieces of a template.

    A lone brace is an error rather than literal text, so that a typo such
    as `{input_dir` fails loudly instead of reaching the shell half-rendered.
    """
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            yield "text", template[pos:m.start()]
        tok = m.group(0)
        if tok == "{{":
            yield "text", "{"
        elif tok == "}}":
            yield "text", "}"
        elif m.group(1) is not None:
            yield "name", m.group(1)
        else:
            raise JobError(
                "COMMAND has a lone %r at character %d; write {{ or }} for a "
                "literal brace, or {name} for a placeholder" % (tok, m.start()))
        pos = m.end()
    if pos < len(template):
        yield "text", template[pos:]


def placeholders(template):
    """Set of placeholder names used in `template` (built-ins included)."""
    return set(v for kind, v in _tokens(template) if kind == "name")


def parse_message(body):
    """Parse a message body (JSON text) keeping key order (job names need it)."""
    try:
        msg = json.loads(body, object_pairs_hook=OrderedDict)
    except ValueError as e:
        raise JobError("message body is not valid JSON: %s" % e)
    if not isinstance(msg, dict):
        raise JobError("message body must be a JSON object, got %s"
                       % type(msg).__name__)
    group = msg.get("group", {})
    if not isinstance(group, dict):
        raise JobError('"group" must be a JSON object, got %s'
                       % type(group).__name__)
    return msg


def merge(message):
    """The flat job: shared keys, overridden by the group's keys."""
    job = OrderedDict((k, v) for k, v in message.items() if k != "group")
    job.update(message.get("group") or {})
    return job


def _scalar_text(key, value):
    if isinstance(value, _STRING_TYPES):
        return value
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        # JSON spelling (true, 3, 0.5): the job file is JSON, so is the text.
        return json.dumps(value)
    raise JobError("key %r holds a %s; placeholders take strings, numbers, "
                   "booleans or lists of those" % (key, type(value).__name__))


def value_words(key, value):
    """Unquoted words a job value becomes: a list gives one word per item."""
    if isinstance(value, (list, tuple)):
        return [_scalar_text(key, v) for v in value]
    return [_scalar_text(key, value)]


def _sanitize_name(text):
    return _UNSAFE_NAME_CHARS.sub("_", text).strip("._-")[:JOB_NAME_MAX]


def job_name(message):
    """Name for the log stream and scratch folder of a job.

    The merged "job_name" key if given, else the group's values joined by
    "-" in the group's own order; restricted to [A-Za-z0-9_.=-], at most 200
    characters. The group's "input" and "output" paths are left out when it
    has other keys (Plate, Well, ...), since those name a job better than
    long S3 paths. A job with no usable name gets a stable hash of its
    content, so retries of the same job still share one log stream.
    """
    job = merge(message)
    if job.get("job_name") not in (None, ""):
        raw = "-".join(value_words("job_name", job["job_name"]))
    else:
        group = message.get("group") or {}
        items = [(k, v) for k, v in group.items()
                 if k not in ("input", "output")] or list(group.items())
        parts = []
        for key, value in items:
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            parts.extend(value_words(key, value))
        # Clean each value on its own so "raw/plate1/" gives "raw_plate1",
        # not a dangling "_" before the "-" separator.
        raw = "-".join(p for p in (_sanitize_name(x) for x in parts) if p)
    name = _sanitize_name(raw)
    if not name:
        digest = hashlib.sha1(
            json.dumps(message, sort_keys=True).encode("utf-8")).hexdigest()
        name = "job-" + digest[:16]
    return name


def render(template, job, builtins):
    """Render COMMAND for one job; every substituted value is shell-quoted.

    `job` is the merged job (see merge), `builtins` maps input_dir,
    output_dir and job_name to their values; built-ins win over job keys of
    the same name because the worker owns those folders. Raises JobError
    naming every unknown placeholder.
    """
    values = dict(job)
    values.update(builtins)
    names = placeholders(template)
    unknown = sorted(n for n in names if n not in values)
    if unknown:
        raise JobError(
            "COMMAND uses unknown placeholder%s %s; the job has keys: %s"
            % ("s" if len(unknown) > 1 else "",
               ", ".join("{%s}" % n for n in unknown),
               ", ".join(sorted(values)) or "(none)"))
    out = []
    for kind, v in _tokens(template):
        if kind == "text":
            out.append(v)
        else:
            out.append(" ".join(_shell_quote(w) for w in value_words(v, values[v])))
    return "".join(out)


def check_job(template, message):
    """Validate one message against COMMAND without running anything.

    Returns the rendered command (with placeholder folders) or raises
    JobError. Meant for the control plane before submission.
    """
    if isinstance(message, _STRING_TYPES):
        message = parse_message(message)
    name = job_name(message)
    job = merge(message)
    inputs(job)
    if "output" in job:
        split_s3(job["output"], "BUCKET", "output")
    return render(template, job, {"input_dir": "/scratch/input",
                                  "output_dir": "/scratch/output",
                                  "job_name": name})


def inputs(job):
    """The job's "input" as a list of strings (absent: empty list)."""
    value = job.get("input")
    if value is None:
        return []
    if isinstance(value, _STRING_TYPES):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, _STRING_TYPES) and v for v in value):
        raise JobError('"input" must be a non-empty string or a list of them')
    return list(value)


def split_s3(location, default_bucket, what="input"):
    """(bucket, key) of an S3 key in default_bucket or an s3://bucket/key URI."""
    if not isinstance(location, _STRING_TYPES):
        raise JobError('"%s" must be a string, got %s'
                       % (what, type(location).__name__))
    if location.startswith("s3://"):
        rest = location[len("s3://"):]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise JobError('"%s" %r names no bucket' % (what, location))
        return bucket, key
    if not default_bucket:
        raise JobError('"%s" %r is not an s3:// URI and AWS_BUCKET is not set'
                       % (what, location))
    return default_bucket, location.lstrip("/")


def as_prefix(key):
    """Folder-style prefix: "a/b" -> "a/b/", "" stays "" (bucket root)."""
    key = key.strip("/")
    return key + "/" if key else ""


def is_done(objects, expected, min_size, necessary):
    """Check-if-done, Distributed-Something semantics.

    objects: iterable of (key, size). Done when at least `expected` objects
    are at least `min_size` bytes and, if `necessary` is non-empty, some key
    contains it.
    """
    big = 0
    found = not necessary
    for key, size in objects:
        if size >= min_size:
            big += 1
        if necessary and necessary in key:
            found = True
    return big >= expected and found


def env_bool(value):
    """'True'/'true'/'1'/'yes' -> True; anything else (or None) -> False."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("true", "1", "yes", "y", "on")
