"""worker/dsjob.py: the pure template / job-name functions the control plane
imports. Also run under Python 2.7 when that interpreter is installed."""
import os
import subprocess
import sys

import pytest

from worker_helpers import python27

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "worker"))
import dsjob  # noqa: E402

B = {"input_dir": "/s/in", "output_dir": "/s/out dir", "job_name": "j"}


def test_placeholders_and_literal_braces():
    t = "awk '{{print $1}}' {input_dir}/{Plate}.csv > {output_dir}/{group.Well}"
    assert dsjob.placeholders(t) == {"input_dir", "Plate", "output_dir", "group.Well"}
    assert dsjob.render("awk '{{print $1}}' {x}", {"x": "f"}, B) == "awk '{print $1}' f"


@pytest.mark.parametrize("bad", ["echo {x", "echo x}", "echo { x }", "echo {}"])
def test_lone_braces_are_errors(bad):
    with pytest.raises(dsjob.JobError, match="lone"):
        dsjob.placeholders(bad)


def test_values_are_quoted_and_lists_become_words():
    job = {"v": "a; rm -rf /", "n": 3, "f": 0.5, "t": True, "none": None,
           "l": ["x y", "z", 1]}
    out = dsjob.render("t {v} {n} {f} {t} {none} {l} {output_dir}", job, B)
    assert out == "t 'a; rm -rf /' 3 0.5 true '' 'x y' z 1 '/s/out dir'"


def test_builtins_win_over_job_keys():
    assert dsjob.render("{input_dir}", {"input_dir": "/etc"}, B) == "/s/in"


def test_unknown_placeholders_are_named():
    with pytest.raises(dsjob.JobError) as e:
        dsjob.render("{Plat} {Wel} {Plate}", {"Plate": "P"}, B)
    assert "unknown placeholders {Plat}, {Wel}" in str(e.value)
    assert "Plate" in str(e.value)


def test_dict_values_are_refused():
    with pytest.raises(dsjob.JobError, match="'d' holds a dict"):
        dsjob.render("{d}", {"d": {"a": 1}}, B)


def test_merge_group_overrides_shared():
    msg = dsjob.parse_message('{"a": 1, "b": 2, "group": {"b": 3, "c": 4}}')
    assert dict(dsjob.merge(msg)) == {"a": 1, "b": 3, "c": 4}


def test_job_name_rules():
    name = lambda body: dsjob.job_name(dsjob.parse_message(body))
    # group order, not sorted order
    assert name('{"x": 1, "group": {"Well": "B02", "Plate": "P 1/a"}}') == "B02-P_1_a"
    assert name('{"job_name": "mine", "group": {"Plate": "P1"}}') == "mine"
    assert name('{"group": {"Plate": "P1", "input": "a/b", "output": "o"}}') == "P1"
    assert name('{"group": {"input": "raw/img 1.tif"}}') == "raw_img_1.tif"
    assert len(name('{"group": {"k": "%s"}}' % ("x" * 500))) == 200
    hashed = name('{"group": {"k": "///"}}')
    assert hashed.startswith("job-") and hashed == name('{"group": {"k": "///"}}')
    assert name('{"group": {"k": "a=b"}}') == "a=b"


def test_parse_message_errors():
    for body, msg in (("{x", "not valid JSON"), ("[1]", "JSON object"),
                      ('{"group": 3}', '"group" must be')):
        with pytest.raises(dsjob.JobError, match=msg):
            dsjob.parse_message(body)


def test_inputs_and_s3_locations():
    assert dsjob.inputs({}) == []
    assert dsjob.inputs({"input": "a"}) == ["a"]
    assert dsjob.inputs({"input": ["a", "b/"]}) == ["a", "b/"]
    with pytest.raises(dsjob.JobError):
        dsjob.inputs({"input": [1]})
    assert dsjob.split_s3("s3://bk/x/y", "def") == ("bk", "x/y")
    assert dsjob.split_s3("/x/y", "def") == ("def", "x/y")
    with pytest.raises(dsjob.JobError, match="AWS_BUCKET"):
        dsjob.split_s3("x", "")
    assert dsjob.as_prefix("a/b") == "a/b/" and dsjob.as_prefix("a/b/") == "a/b/"
    assert dsjob.as_prefix("") == ""


def test_is_done():
    objs = [("o/a.csv", 20), ("o/b_summary.csv", 20), ("o/tiny", 1)]
    assert dsjob.is_done(objs, 2, 10, "")
    assert dsjob.is_done(objs, 2, 10, "summary")
    assert not dsjob.is_done(objs, 3, 10, "")
    assert not dsjob.is_done(objs, 1, 10, "missing")
    assert dsjob.is_done([], 0, 1, "")


def test_env_bool():
    assert [dsjob.env_bool(v) for v in ("True", "true", "TRUE", True, "1")] == [True] * 5
    assert [dsjob.env_bool(v) for v in ("False", "false", "", None, "no")] == [False] * 5


def test_check_job_for_the_control_plane():
    cmd = dsjob.check_job("tool {input_dir} {Plate}", '{"input": "a", "group": {"Plate": "P"}}')
    assert cmd == "tool /scratch/input P"
    with pytest.raises(dsjob.JobError, match="unknown placeholder"):
        dsjob.check_job("tool {Well}", {"group": {"Plate": "P"}})


PY27 = python27()  # found at import: other tests change HOME


@pytest.mark.skipif(PY27 is None, reason="no Python 2.7 interpreter here")
def test_dsjob_under_python27():
    code = ("import sys; sys.dont_write_bytecode = True; sys.path.insert(0, %r); import dsjob\n"
            "m = dsjob.parse_message('{\"group\": {\"W\": \"B02\", \"P\": \"a b\"}}')\n"
            "print(dsjob.job_name(m)); print(dsjob.render('x {P} {{}}', dsjob.merge(m), {}))"
            % os.path.join(REPO, "worker"))
    r = subprocess.run([PY27, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["B02-a_b", "x 'a b' {}"]
