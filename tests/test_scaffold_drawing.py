"""`statesaga new` and its diagram: a word when drawing is slow, and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statesaga import Saga, Step, compile_saga
from statesaga.cli import main
from statesaga.scaffold import DEFAULT_STEPS


async def nothing(ctx: object) -> None:
    """An action or compensation that does nothing."""


class Default(Saga):
    """The steps `statesaga new` makes by default."""

    steps = tuple(Step(name, nothing, compensate=nothing) for name in DEFAULT_STEPS)


STATES = len(compile_saga(Default).states)  # the default saga's, as the messages show it
SVG = '<svg xmlns="http://www.w3.org/2000/svg"/>'


def fake_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, seconds: float) -> Path:
    """Put a `dot` on the PATH that takes ``seconds`` (writing its pid to the file it returns).

    It runs as a real child process, as Graphviz's does, so a test can see it stopped.
    """
    folder = tmp_path / "bin"
    folder.mkdir()
    pid = tmp_path / "dot.pid"
    script = folder / "dot"
    script.write_text(
        f"#!/bin/sh\ncat > /dev/null\necho $$ > '{pid}'\nsleep {seconds}\necho '{SVG}'\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return pid


def forever_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `dot` on the PATH that never finishes; its pid is written to the file returned."""
    folder = tmp_path / "bin"
    folder.mkdir()
    pid = tmp_path / "dot.pid"
    script = folder / "dot"
    # exec: the pid written is the process that keeps running.
    script.write_text(f"#!/bin/sh\ncat > /dev/null\necho $$ > '{pid}'\nexec sleep 300\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return pid


def running(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_slow_drawing_is_announced_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drawing that lasts past NOTICE_AFTER prints one line on stderr saying what is going on."""
    fake_dot(tmp_path, monkeypatch, seconds=1)
    monkeypatch.setattr("statesaga.scaffold.diagram.NOTICE_AFTER", 0.05)
    main(["new", "order_saga", "--dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert captured.err == "drawing diagram.svg with Graphviz...\n"
    assert "  diagram.svg\n" in captured.out
    assert (tmp_path / "order_saga" / "diagram.svg").read_text() == SVG + "\n"


def test_sigterm_while_drawing_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during `statesaga new` removes its temporary folder, as Ctrl-C does."""
    pid = forever_dot(tmp_path, monkeypatch)
    temporary = tmp_path / "tmp"  # where the command stages the folder (tempfile uses TMPDIR)
    temporary.mkdir()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "statesaga.cli", "new", "order_saga", "--dir", str(out)]
    with subprocess.Popen(
        command,
        env={**os.environ, "TMPDIR": str(temporary)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            wait_for(pid)  # dot has started: the folder is staged, the diagram being drawn
            assert any(temporary.iterdir())
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert stderr.endswith("terminated\n")
    if running(pid):  # the stand-in never writes, so nothing tells it its reader is gone
        os.kill(int(pid.read_text()), signal.SIGKILL)
    assert list(temporary.iterdir()) == []
    assert not out.exists()
