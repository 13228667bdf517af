"""Run the documentation's Python code blocks, page by page, so that the docs cannot rot.

Every ``.. code-block:: python`` block of a page runs, in order, in one namespace per page and in a fresh working
folder, on the embedded ``digits`` dataset. A block that needs what a test cannot have (real MNIST, a GPU, several
processes) says so with the option ``:class: no-test``; such blocks are few, and this test checks that each one
is at least valid Python.
"""

import re

import pytest

from tests.common import REPO, run_python_blocks

DOCS = REPO / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
BLOCK = re.compile(r"^\.\. code-block:: python\n((?:[ \t]+:[\w-]+:.*\n)*)\n((?:[ \t]+.*\n|\n)+)", flags=re.M)


def python_blocks(text: str) -> list[tuple[str, bool]]:
    """``(code, runs)`` for each Python code block of a reST page; ``runs`` is False for ``:class: no-test``."""
    blocks = []
    for match in BLOCK.finditer(text + "\n"):
        options, body = match.groups()
        lines = body.rstrip("\n").split("\n")
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        code = "\n".join(line[indent:] for line in lines) + "\n"
        blocks.append((code, not re.search(r":class:.*\bno-test\b", options)))
    return blocks


def test_python_blocks_are_found():
    text = (".. code-block:: python\n\n   x = 1\n\n   y = x\n\nprose\n\n"
            ".. code-block:: python\n   :class: no-test\n\n   z\n")
    assert python_blocks(text) == [("x = 1\n\ny = x\n", True), ("z\n", False)]
    assert sum(len(python_blocks(page.read_text())) for page in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_python_blocks_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(page.read_text())
    for code, _ in blocks:
        compile(code, str(page), "exec")
    monkeypatch.chdir(tmp_path)
    run_python_blocks([code for code, runs in blocks if runs], str(page.relative_to(REPO)))
