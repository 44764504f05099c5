"""The test suite on every Python statesaga supports: ``nox -s tests`` (``make test-all``).

One session per Python (``tests-3.11``, ``tests-3.12``, ``tests-3.13``), each in a virtualenv of
its own under ``.nox/`` with the extras ``make install`` uses; arguments after ``--`` go to
pytest (``nox -s tests-3.13 -- -k durable``). ``-j 2`` runs two sessions at a time, each
printing its output when it ends.

Interpreters are looked for on ``PATH`` and, where pyenv is installed, under its ``versions/``:
pyenv's shims refuse to run a version its configuration does not select, so where the one on
``PATH`` does not start, the version's own ``bin/`` is put ahead of it. Nox never downloads a
Python. A missing interpreter fails its session when ``$CI`` is ``true`` and skips it (with a
warning) otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ("3.11", "3.12", "3.13")
EXTRAS = "dev,postgres,prometheus,otel,logs,messaging,ui"  # as `make install`
ON_CI = os.environ.get("CI", "").lower() == "true"

nox.options.sessions = ["tests"]
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = ON_CI
nox.options.reuse_venv = "yes"  # reinstalls into it all the same; CI starts from a fresh clone


def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = None
    path = Path(root) if root else Path.home() / ".pyenv"
    return path if (path / "versions").is_dir() else None


def _pyenv_bin(root: Path, python: str) -> Path | None:
    """The ``bin/`` of pyenv's newest CPython ``python`` (3.12 -> versions/3.12.N), if any."""
    found: list[tuple[int, Path]] = []
    for version in (root / "versions").iterdir():
        match = re.fullmatch(re.escape(python) + r"\.(\d+)", version.name)
        if match and (version / "bin" / f"python{python}").is_file():
            found.append((int(match.group(1)), version / "bin"))
    return max(found)[1] if found else None


def _runs(command: str) -> bool:
    """Whether ``command`` on PATH starts (a pyenv shim for an unselected version does not)."""
    path = shutil.which(command)
    if path is None:
        return False
    try:
        return subprocess.run([path, "-c", ""], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _expose_interpreters() -> None:
    root = _pyenv_root()
    ahead: list[str] = []
    for python in PYTHONS:
        if _runs(f"python{python}"):
            continue
        bin_dir = _pyenv_bin(root, python) if root else None
        if bin_dir is not None:
            ahead.append(str(bin_dir))
        else:
            outcome = "fails (CI=true)" if ON_CI else "is skipped (it fails when CI=true)"
            nox.logger.logger.warning(
                f"python{python} is neither on PATH nor installed by pyenv: "
                f"tests-{python} {outcome}"
            )
    if ahead:
        os.environ["PATH"] = os.pathsep.join([*ahead, os.environ.get("PATH", "")])


_expose_interpreters()


@nox.session(python=PYTHONS, allow_parallel=True)  # nox -j 2: a process per session
def tests(session: nox.Session) -> None:
    """The whole test suite against the real services, on one Python."""
    session.install("-q", "-e", f".[{EXTRAS}]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)
