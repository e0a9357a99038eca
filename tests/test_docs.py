"""The pages render as written: every Markdown table row has its header's cells."""
import glob
import os

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
