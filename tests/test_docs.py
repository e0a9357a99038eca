"""The pages render as written (every Markdown table row has its header's cells),
and the image commands they give do what they say."""
import glob
import os
import shutil
import subprocess

import pytest

from conftest import REPO

PAGES = sorted(glob.glob(os.path.join(REPO, "documentation", "*.md"))) + [
    os.path.join(REPO, "README.md")]


def cells(row):
    """A table row's cells; a `|` inside a code span (of any number of backticks) is text."""
    found, cell, fence, i = [], "", 0, 0
    text = row.strip()
    while i < len(text):
        if text[i] == "`":
            j = i
            while j < len(text) and text[j] == "`":
                j += 1
            fence = (j - i) if fence == 0 else (0 if fence == j - i else fence)
            cell, i = cell + text[i:j], j
            continue
        if text[i] == "|" and not fence and not cell.endswith("\\"):
            found.append(cell)
            cell = ""
        else:
            cell += text[i]
        i += 1
    return found[1:]  # what comes before the first | is not a cell


def broken_rows(text):
    """(line number, cells, header's cells) of each row whose cell count differs."""
    broken, header = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            header = None
            continue
        count = len(cells(line))
        if header is None:
            header = count
        elif count != header:
            broken.append((n, count, header))
    return broken


def test_the_row_checker_sees_a_missing_cell_and_a_pipe_in_code():
    table = "| a | b | c |\n|---|---|---|\n| `x | y` | z |\n| ``q `r` s`` | t | u |\n"
    assert broken_rows(table) == [(3, 2, 3)]


def test_every_table_row_has_its_headers_cells():
    for page in PAGES:
        with open(page, encoding="utf-8") as f:
            assert broken_rows(f.read()) == [], os.path.relpath(page, REPO)


def make_dry_run(*args):
    """The commands `make -C worker ARGS` would run, without running them."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "-C",
                          os.path.join(REPO, "worker")] + list(args),
                         capture_output=True, text=True, check=True).stdout
    return [" ".join(l.split()) for l in out.replace("\\\n", " ").splitlines()]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_readme_image_step_builds_and_pushes_the_name_it_gives_and_tag_pushes_too():
    image = "mydockerhubuser/distributed-something:1.0"
    lines = make_dry_run("push", "IMAGE=" + image)
    assert [l.split()[:2] for l in lines] == [["docker", "build"], ["docker", "push"]]
    assert "-t %s " % image in lines[0] and lines[1] == "docker push " + image
    lines = make_dry_run("tag", "NEW_TAG=2.0", "DOCKERHUB_USER=me", "PROJECT=tool", "TAG=1.0")
    assert lines[-2:] == ["docker tag me/tool:1.0 me/tool:2.0", "docker push me/tool:2.0"]
    ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tool"
    lines = make_dry_run("tag", "NEW_TAG=latest", "IMAGE=%s:1.0" % ecr)
    assert lines[-2:] == ["docker tag %s:1.0 %s:latest" % (ecr, ecr), "docker push %s:latest" % ecr]
