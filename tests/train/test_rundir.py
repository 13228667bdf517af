"""Run folders: one writer at a time, a stale lock taken over, an earlier run never overwritten silently."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyro
import pytest

from pyrovae import TrainConfig, fit
from pyrovae.errors import RunFolderError
from pyrovae.train import rundir
from pyrovae.train.rundir import LOCK, RunFolder, RunLock
from tests.common import REPO, cli_error, tiny_dataset, tiny_vae

HOLDER = textwrap.dedent(
    """
    import sys
    from pyrovae.train.rundir import RunLock
    with RunLock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills this process)
    """
)


@pytest.fixture
def holder(tmp_path):
    """Starts another process that holds the lock of a folder until it is told to stop or killed."""
    started = []

    def start(folder):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        assert process.stdout.readline().strip() == "held"
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def _train(out, epochs=2, **kwargs):
    pyro.clear_param_store()
    vae = tiny_vae()
    return fit(vae.model, vae.guide, tiny_dataset(), TrainConfig(epochs=epochs, batch_size=16, device="cpu"),
               out_dir=out, verbose=False, **kwargs)  # fmt: skip


def test_a_second_run_on_a_folder_in_use_is_refused_and_the_first_runs_files_are_intact(tmp_path, holder, capsys):
    out = tmp_path / "run"
    _train(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    first = holder(out)  # a run is alive in the folder
    match = f"in use by another run \\(pid {first.pid}, host .*-c .*Wait for it to end"
    with pytest.raises(RunFolderError, match=match):
        _train(out, resume=True, epochs=3)
    message = cli_error(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"])
    assert f"{out} is in use by another run (pid {first.pid}" in message
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK} == before
    first.stdin.close()  # the first run ends and releases the folder
    first.wait(timeout=30)
    assert not (out / LOCK).exists()
    assert len(_train(out, resume=True, epochs=3)) == 3


def test_the_lock_of_a_killed_run_is_stale_and_taken_over(tmp_path, holder):
    out = tmp_path / "run"
    killed = holder(out)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert json.loads((out / LOCK).read_text())["pid"] == killed.pid  # its lock file is still there
    with RunLock(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert not (out / LOCK).exists()


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with RunLock(tmp_path), RunLock(tmp_path):
        assert (tmp_path / LOCK).exists()
    assert not (tmp_path / LOCK).exists()


def test_without_fcntl_an_exclusive_lock_file_tells_how_to_remove_a_stale_one(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "fcntl", None)
    (tmp_path / LOCK).write_text(json.dumps({"pid": 99999, "host": "elsewhere"}))
    with pytest.raises(RunFolderError, match=f"pid 99999, host elsewhere.*delete {tmp_path / LOCK}"):
        with RunLock(tmp_path):
            pass
    (tmp_path / LOCK).unlink()
    with RunLock(tmp_path):
        with pytest.raises(RunFolderError, match="in use by another run"):
            RunLock(tmp_path)._create()  # what another process finds
    assert not (tmp_path / LOCK).exists()


def test_a_new_run_refuses_a_folder_that_holds_one_unless_told_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    history = _train(out)
    saved = (out / "checkpoint.pt").read_bytes(), (out / "metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match="already holds a run .checkpoint.pt.*--resume.*--overwrite"):
        _train(out, epochs=1)
    message = cli_error(capsys, ["train", "--out", str(out), "--epochs", "1", "--quiet"])
    assert message.startswith(f"{out} already holds a run")
    assert ((out / "checkpoint.pt").read_bytes(), (out / "metrics.jsonl").read_text()) == saved
    assert len(history) == 2
    assert len(_train(out, epochs=1, overwrite=True)) == 1  # replaced on request
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert "--resume continues" in cli_error(capsys, ["train", "--out", str(out), "--resume", "--overwrite"])


def test_leftover_temporary_files_of_a_killed_write_are_removed(tmp_path):
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("a user's file")
    with RunFolder(tmp_path):
        assert not stale.exists()
    assert (tmp_path / "notes.tmp").exists()
