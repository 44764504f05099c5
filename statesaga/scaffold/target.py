"""The saga's folder: checked before anything is rendered, then filled all at once or not at all.

Generated files are copied beside their destinations first and only then renamed into place, so
an error or an interruption leaves the folder as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath

from ..errors import ScaffoldError


def check_target(directory: Path, target: Path, force: bool) -> None:
    """Refuse a ``target`` folder that cannot be made in ``directory``, or that is in use."""
    # The nearest part of --dir that exists must be a folder, or the folder cannot be made.
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ScaffoldError(f"{str(existing)!r} is not a folder: choose another --dir")
    if not target.exists():
        return
    if not target.is_dir():
        raise ScaffoldError(
            f"{str(target)!r} exists and is not a folder: remove it or choose another name"
        )
    if not force and any(target.iterdir()):
        raise ScaffoldError(
            f"{str(target)!r} already exists and is not empty: choose another name or --dir, "
            "or pass --force to overwrite the generated files (other files are kept)"
        )


def check_overwrites(target: Path, outputs: Iterable[str]) -> None:
    """Refuse to generate a file where the target folder has a folder (or a file as a folder)."""
    if not target.is_dir():
        return
    for relative in outputs:
        path = target
        for part in PurePosixPath(relative).parts[:-1]:
            path = path / part
            if path.exists() and not path.is_dir():
                raise ScaffoldError(
                    f"{str(path)!r} is a file but the template makes it a folder: move it away"
                )
        if (target / relative).is_dir():
            raise ScaffoldError(
                f"{str(target / relative)!r} is a folder but the template writes a file there: "
                "move it away"
            )


def existing(target: Path, generated: set[str]) -> tuple[str, ...]:
    """Files already in ``target`` that the templates do not make (they are kept)."""
    if not target.is_dir():
        return ()
    found = (p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    return tuple(sorted(p for p in found if p not in generated))


def install(stage: Path, target: Path, files: Sequence[str]) -> None:
    """Move the rendered folder into place, all of it or (on any error) nothing."""
    made: list[Path] = []  # folders created here, removed again if the install fails
    try:
        _make_folder(target.parent, made)
        if not target.exists():
            _install_folder(stage, target)
        else:
            _install_files(stage, target, files, made)
    except BaseException as error:  # an interruption too: leave nothing behind
        for folder in reversed(made):
            with suppress(OSError):
                folder.rmdir()
        if not isinstance(error, OSError):
            raise
        hint = (
            "check its permissions"
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
            else "nothing was written"
        )
        raise ScaffoldError(
            f"cannot write {str(target)!r}: {error.strerror or error}: {hint}"
        ) from None


def _make_folder(folder: Path, made: list[Path]) -> None:
    """Create ``folder`` and its missing parents, adding each to ``made`` as it is created."""
    for path in [p for p in (folder, *folder.parents) if not p.exists()][::-1]:
        path.mkdir()
        made.append(path)


def _install_folder(stage: Path, target: Path) -> None:
    try:
        stage.rename(target)  # at once, when both are on one file system
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    # Copied next to the target first, then renamed: an interrupted copy leaves no half folder.
    copy = target.with_name(f".{target.name}.statesaga-new-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(stage, copy)
        if target.exists():  # appeared in the meantime: never merge into it
            raise FileExistsError(errno.EEXIST, "it appeared while the folder was generated")
        os.rename(copy, target)
    finally:
        if copy.exists():
            shutil.rmtree(copy, ignore_errors=True)


def _install_files(stage: Path, target: Path, files: Sequence[str], made: list[Path]) -> None:
    """Into an existing folder: copy every generated file beside its destination, then rename.

    Only once every copy has worked are the destinations replaced, each by a rename, so an
    error or an interruption while copying leaves the folder's files as they were.
    """
    copies: list[tuple[Path, Path]] = []
    try:
        for relative in files:
            destination = target / relative
            _make_folder(destination.parent, made)
            copy = destination.with_name(f".{destination.name}.statesaga-new")
            copies.append((copy, destination))
            shutil.copyfile(stage / relative, copy)
        for copy, destination in copies:
            os.replace(copy, destination)
    finally:
        for copy, _ in copies:
            with suppress(FileNotFoundError):
                copy.unlink()
