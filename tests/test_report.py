"""The run report of a local run: parsed, and opened in a real headless browser."""
import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import REPO, client_at, own_emulator, write_json
from test_local import config_with

# the tests share one account (a module fixture): one process runs them, in order
pytestmark = pytest.mark.together

GREEN, RED = (0x2e, 0x9e, 0x44), (0xd6, 0x27, 0x28)   # SUCCESS and FAILED in ds/operate/report.py


class Page(html.parser.HTMLParser):
    """The report's bars, summary numbers and any reference to another file or host."""

    def __init__(self):
        super().__init__()
        self.bars, self.ids, self.external, self._id = [], {}, [], None
        self.titles, self._in_title = [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "rect" and "try" in a.get("class", ""):
            self.bars.append(a)
        if tag == "title" and self.bars:
            self._in_title = True
        for key in ("src", "href"):
            if key in a:
                self.external.append(a[key])
        if tag == "link" or tag == "script":
            self.external.append(tag)
        self._id = a.get("id")

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.titles.append(data)
        if self._id and data.strip():
            self.ids.setdefault(self._id, data.strip())


@pytest.fixture(scope="module")
def failing_local_run(tmp_path_factory):
    """12 example jobs and one whose input is missing its CSV (it fails both tries),
    run locally against an emulator that outlives the run, so the commands a user
    runs afterwards read the same account."""
    tmp = tmp_path_factory.mktemp("report")
    with own_emulator(tmp) as (url, env):
        job = json.load(open(os.path.join(REPO, "files", "exampleJob.json")))
        job["groups"].append({"well": "Z99", "input": ["exampleData/summarize.py"],
                              "output": "exampleOutput/Plate1/Z99"})
        write_json(tmp / "job.json", job)
        config = config_with(tmp, APP_NAME="ReportRun", JOB_RETRIES=2)
        out = tmp / "out"
        result = subprocess.run([sys.executable, "run.py", "--config", config, "local",
                                 str(tmp / "job.json"), "--out", str(out)],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stdout + result.stderr
        yield Run(result, out / "ReportRun-report.html", env, config, url)


class Run:
    def __init__(self, result, path, env, config, url):
        self.result, self.path, self.env, self.config, self.url = result, path, env, config, url

    def json(self, *args):
        r = subprocess.run([sys.executable, "run.py", "--config", self.config] + list(args),
                           cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout)

    def events(self):
        logs = client_at(self.url, "logs")
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName="ReportRun")
        return [e for page in pages for e in page["events"]]


def test_report_has_one_bar_per_try_and_the_run_numbers(failing_local_run):
    result, path = failing_local_run.result, failing_local_run.path
    assert "run report       %s" % path in result.stdout
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    assert page.external == []        # self-contained: opens offline
    assert "url(" not in text and "@import" not in text
    outcomes = [b["data-outcome"] for b in page.bars]
    # Z99 fails exactly JOB_RETRIES times and every other job succeeds once: no
    # other try can happen (a busy record is gone before its job is let go, so the
    # scale-in never ends a machine that holds a job).
    assert sorted(outcomes) == ["FAILED"] * 2 + ["SUCCESS"] * 12, outcomes
    # The numbers agree with the local summary printed by the same run.
    assert "succeeded        12" in result.stdout and "failed           1" in result.stdout
    assert "Job Z99 failed (2 tries)" in result.stdout
    jobs_tried = [t.split(", try ")[0] for t in page.titles if ", try " in t]
    example = json.load(open(os.path.join(REPO, "files", "exampleJob.json")))["groups"]
    assert sorted(jobs_tried) == sorted(["Z99", "Z99"] + [g["well"] for g in example])
    assert (page.ids["done"], page.ids["failed"], page.ids["retried"], page.ids["tries"]) == \
        ("12", "1", "1", "14")
    assert any(t.startswith("Z99, try 2: FAILED") for t in page.titles), page.titles
    failures = text.split('id="failures"')[1]
    assert "Z99" in failures and "Z99.csv" in failures    # its log tail
    assert "&#39;ReportRun&#39;" in text or "'ReportRun'" in text   # the config used


def test_every_reader_counts_each_try_once_beside_the_containers_copies(failing_local_run):
    """As on AWS, each worker's output is also in the log group under the awslogs
    driver's stream name, START and END lines included."""
    events = failing_local_run.events()
    copies = [e for e in events if e["logStreamName"].startswith("ReportRun/ReportRun/")]
    starts = lambda evs: sum(e["message"].count("START job ") for e in evs)  # noqa: E731
    ends = lambda evs: sum(e["message"].count("END job ") for e in evs)  # noqa: E731
    assert starts(copies) == ends(copies) == 14, sorted({e["logStreamName"] for e in events})
    own = [e for e in events if "/" not in e["logStreamName"]]
    assert starts(own) == 14
    dead = failing_local_run.json("failures", "--json")["jobs"]
    assert [(j["job"], j["tries"], j["outcome"]) for j in dead] == [("Z99", 2, "FAILED")]
    status = failing_local_run.json("status", "--json")
    # the 12 done tries of the last ten minutes, once each
    assert round(status["rate_per_minute"] * status["rate_window_minutes"]) == 12, status


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _pixels(png):
    """RGB(A) rows of an 8-bit, non-interlaced PNG such as Chromium writes."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw, stride, prev, rows = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return {tuple(row[i:i + 3]) for row in rows for i in range(0, stride, bpp)}


def test_report_renders_in_a_headless_browser(failing_local_run, tmp_path):
    browser = _chromium()
    if not browser:
        pytest.skip("no Chromium here: `apt-get install chromium` (.ci/run does)")
    path = failing_local_run.path
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--user-data-dir=%s" % (tmp_path / "profile"), "--enable-logging=stderr",
              "--window-size=1300,900"]
    dom = subprocess.run(common + ["--dump-dom", path.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    assert dom.stdout.count('class="try"') == len(page.bars) >= 14
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr, dom.stderr
    shot = tmp_path / "report.png"
    r = subprocess.run(common + ["--screenshot=%s" % shot, path.as_uri()], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr
    colours = _pixels(shot.read_bytes())
    for want in (GREEN, RED):   # colour management may shift a channel by a little
        assert any(all(abs(a - b) <= 8 for a, b in zip(want, got)) for got in colours), want
