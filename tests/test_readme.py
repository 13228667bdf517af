"""Run the README's Python code blocks, so that the README cannot rot."""

import re

from tests.common import REPO, run_python_blocks


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
