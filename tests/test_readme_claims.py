"""Every promise the README makes is tied to the tests that prove it.

A sentence that promises a security or reliability property (it says never, only, always, removed, 0600, retried or
bounded) carries a marker in the README's source, `<!-- proof: tests/test_x.py::test_y, … -->`, inside the sentence;
a claim only real Google or Bitbucket could prove says so in the sentence itself ("not tested here"). This test fails
when such a sentence has neither, or names a test that does not exist."""

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMISE = re.compile(r"\b(never|only|always|removed|0600|retried|bounded)\b", re.IGNORECASE)
MARKER = re.compile(r"<!-- proof: ([^>]*?) -->")
UNTESTABLE = "not tested here"
_ABBREVIATIONS = {"e.g.": "e_g_", "i.e.": "i_e_", "etc.": "etc_"}


def blocks(text: str) -> list[str]:
    """Paragraphs, list items and table cells of the README, without code blocks."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    found, paragraph = [], []
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            found += [cell for cell in stripped.strip("|").split("|") if cell.strip()]
            continue
        if not stripped or stripped.startswith(("#", "- ", "* ")) or re.match(r"\d+\. ", stripped):
            if paragraph:
                found.append(" ".join(paragraph))
            paragraph = [stripped] if stripped and not stripped.startswith("#") else []
            continue
        paragraph.append(stripped)
    return found


def sentences(block: str) -> list[str]:
    for written, kept in _ABBREVIATIONS.items():
        block = block.replace(written, kept)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[^\s<])", block) if s.strip()]


def promises(sentence: str) -> list[str]:
    """The promise words outside inline code and markers."""
    prose = MARKER.sub("", re.sub(r"`[^`]*`", "", sentence))
    return PROMISE.findall(prose)


@functools.cache
def defined_tests(path: str) -> frozenset[str]:
    file = ROOT / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))


CLAIMS = [s for block in blocks((ROOT / "README.md").read_text()) for s in sentences(block) if promises(s)]


def test_the_readme_makes_promises():
    assert len(CLAIMS) >= 20  # this test would pass vacuously on a README that promised nothing


@pytest.mark.parametrize("sentence", CLAIMS, ids=[re.sub(r"\W+", "-", MARKER.sub("", s))[:60] for s in CLAIMS])
def test_each_promise_names_the_tests_that_prove_it(sentence):
    markers = MARKER.findall(sentence)
    assert markers or UNTESTABLE in sentence, f"a promise ({', '.join(promises(sentence))}) with no proof: {sentence}"
    for marker in markers:
        for reference in (item.strip() for item in marker.split(",")):
            path, _, name = reference.partition("::")
            assert name in defined_tests(path), f"{reference} is no test"


def test_every_marker_anywhere_names_a_test_that_exists():
    """Also in sentences the promise words do not pick out: a marker naming a moved or renamed test is a stale proof."""
    text = (ROOT / "README.md").read_text()
    stale = [reference for marker in MARKER.findall(text) for reference in (item.strip() for item in marker.split(","))
             if reference.partition("::")[2] not in defined_tests(reference.partition("::")[0])]
    assert not stale, f"markers naming no test: {stale}"
