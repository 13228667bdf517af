"""Sphinx configuration of pyrovae's documentation. Build: ``python -m sphinx -W --keep-going -n -b html docs
docs/_build/html`` (warnings are errors, every cross-reference must resolve; no network is used)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

project = "pyrovae"
author = "the pyrovae authors"
copyright = "pyrovae authors"
release = version = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "*.txt"]
html_theme = "alabaster"
html_static_path = []
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signature shows the defaults; :param type name: in the docstrings gives the types
# MathJax is loaded by the reader's browser from its CDN; the build itself needs no network.

nitpicky = True
# Objects of torch, Pyro and NumPy are named in docstrings but not documented here, and intersphinx would download
# their inventories at build time, which CI cannot. Ignore exactly those namespaces (and torch's ``nn.Module`` as
# the docstrings write it).
nitpick_ignore_regex = [(r"py:.*", r"(torch|pyro|numpy)(\..*)?")]
nitpick_ignore = [("py:class", "nn.Module")]

autodoc_inherit_docstrings = False  # an undocumented forward() would otherwise show torch's Module.forward text


def _resolve_reexported_name(app, env, node, contnode):
    """Resolve a name that a module imports or re-exports (``pyrovae.fit``, ``pyrovae.data.load_dataset``, or
    ``CheckpointError`` in a module that imports it) to where it is documented: the module that defines it. The
    API reference documents each object once, under that module; docstrings often name the short form."""
    import importlib
    import types

    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    if not target.startswith("pyrovae.") and node.get("py:module"):  # a bare name: look it up in the module
        target = f"{node['py:module']}.{target}"
    if not target.startswith("pyrovae."):
        return None
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module, then the name after it
        try:
            package = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        obj = getattr(package, parts[i], None)
        if isinstance(obj, types.ModuleType):
            canonical = obj.__name__
        elif isinstance(obj, type | types.FunctionType):
            canonical = f"{obj.__module__}.{obj.__qualname__}"
        else:
            return None
        canonical = ".".join([canonical, *parts[i + 1:]])
        if canonical == target:
            return None
        return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical,
                                                 node, contnode)
    return None


def setup(app):
    app.connect("missing-reference", _resolve_reexported_name)
