"""Run the README's Python code blocks, so that the README cannot rot."""

import json
import re
import subprocess
import sys

import pytest

from tests.common import REPO, run_python_blocks

#: the README's route to a CPU-only install: PyTorch's CPU builds first, then the project over them
CPU_ROUTE = """python -m venv .venv && . .venv/bin/activate
pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
pip install -e ".[dev]"
"""


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    run_python_blocks(blocks, "README.md")
    assert (tmp_path / "runs" / "readme" / "checkpoint.pt").exists()
    assert "'epoch': 5" in capsys.readouterr().out


def test_ci_runs_the_readme_set_up_commands():
    readme = (REPO / "README.md").read_text()
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert 'python -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && pyrovae train' in ci
    assert "python -m pytest" in ci
    for command in ('python -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && pyrovae train',
                    "python -m pytest"):
        assert f"```bash\n{command}\n```" in readme


def test_the_project_install_keeps_the_torch_it_finds(tmp_path):
    """The CPU route (:data:`CPU_ROUTE`) works only if installing the project over a torch and torchvision already
    there installs neither again (nor CUDA libraries): a requirement they do not meet would replace the CPU builds
    by PyPI's CUDA ones. Checked with pip's resolver, offline, against this environment's torch: what the project
    install would add is the project alone."""
    assert f"```bash\n{CPU_ROUTE}```" in (REPO / "README.md").read_text()
    pytest.importorskip("setuptools", reason="the offline build of the project's metadata needs setuptools here")
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation", "--quiet"]
    try:
        result = subprocess.run([*pip, "--report", str(report), "-e", f"{REPO}[dev]"], capture_output=True,
                                text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no pip in this environment")
    if "No module named pip" in result.stderr:
        pytest.skip("no pip in this environment")
    assert result.returncode == 0, f"the project's requirements are not met by this environment:\n{result.stderr}"
    added = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert added == ["pyrovae"], f"installing the project would also install {added}"
