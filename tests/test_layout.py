"""The package's layout rules: which subpackage may import which, and that tests mirror the package."""

import ast

import pytest

from tests.common import REPO

PACKAGE = REPO / "pyrovae"
#: what the modules of each place must never import
FORBIDDEN = {
    "data": ("pyrovae.models", "pyrovae.infer", "pyrovae.train", "pyrovae.viz", "pyrovae.cli"),
    "infer": ("pyrovae.models", "pyrovae.train", "pyrovae.viz", "pyrovae.cli"),
    "models": ("pyrovae.train", "pyrovae.viz", "pyrovae.cli"),
    "viz": ("pyrovae.train", "pyrovae.cli"),
    "checkpoint.py": ("pyrovae.models", "pyrovae.infer", "pyrovae.train", "pyrovae.viz", "pyrovae.cli"),
}


def imported(path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("place", sorted(FORBIDDEN))
def test_imports_point_down_only(place):
    files = [PACKAGE / place] if place.endswith(".py") else sorted((PACKAGE / place).glob("*.py"))
    assert files
    for path in files:
        bad = sorted(m for m in imported(path) if m.startswith(FORBIDDEN[place]))
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_every_subpackage_has_its_tests_and_no_test_imports_a_private_name():
    for sub in ("data", "models", "infer", "train", "viz"):
        assert (REPO / "tests" / sub / "__init__.py").exists(), sub
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyrovae"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(REPO)} imports {private} from {node.module}"
