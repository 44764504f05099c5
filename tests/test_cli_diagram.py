from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from statesaga.cli import machine, main

SAGA = """
from statesaga import Saga, Step

async def act(ctx):
    return None

class Orders(Saga):
    {inside}
    steps = (Step("reserve", act, compensate=act), Step("charge", act))

{after}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder inside tmp_path, so that '../' lands in tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def saga_file(folder: Path, inside: str = "", after: str = "") -> str:
    path = folder / "orders.py"
    path.write_text(textwrap.dedent(SAGA).format(inside=inside, after=after))
    return f"{path}:Orders"


def fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    return err


def written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix != ".py")


@pytest.mark.parametrize("name", ['"../x"', '""', "123"])
def test_unusable_saga_name_is_refused_and_nothing_is_written(
    workdir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A saga named '../x', '' or 123 is refused by `diagram`; no file appears anywhere."""
    target = saga_file(workdir.parent, inside=f"name = {name}")
    err = fail(["diagram", target, "--format", "dot"], capsys)
    assert "cannot name the saga" in err
    assert written(workdir.parent) == ["work"]


def test_saga_renamed_after_definition_is_refused_and_nothing_is_written(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name changed to '../x' after the class is defined is refused when compiled."""
    target = saga_file(workdir.parent, after='Orders.name = "../x"')
    err = fail(["diagram", target, "--format", "dot"], capsys)
    assert "name '../x' cannot name the saga" in err
    assert written(workdir.parent) == ["work"]


def test_default_output_is_a_plain_file_in_the_current_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without -o, a name that is no plain file name is a one-line error, not a path."""
    monkeypatch.setattr(machine, "compile_saga", lambda saga: SimpleNamespace(name="../x"))
    err = fail(["diagram", saga_file(workdir), "--format", "dot"], capsys)
    assert err.count("\n") == 1, err
    assert "saga name '../x' cannot name a file in the current folder" in err
    assert "-o" in err
    assert written(workdir.parent) == ["work"]


@pytest.mark.parametrize(("fmt", "start"), [("mmd", "---\ntitle: Orders"), ("dot", "digraph")])
def test_dash_writes_text_to_standard_output(
    workdir: Path, capsys: pytest.CaptureFixture[str], fmt: str, start: str
) -> None:
    """`-o -` prints dot or mmd text and writes no file."""
    main(["diagram", saga_file(workdir), "--format", fmt, "-o", "-"])
    assert capsys.readouterr().out.lstrip().startswith(start)
    assert written(workdir) == []


def test_dash_for_a_picture_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SVG cannot go to standard output: the error says which formats can, and no file
    named '-' appears."""
    with pytest.raises(SystemExit) as info:
        main(["diagram", saga_file(workdir), "-o", "-"])
    assert info.value.code == 2
    assert "--format dot or --format mmd" in capsys.readouterr().err
    assert written(workdir) == []


def test_empty_store_for_a_run_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--store ""` names no store: refused rather than read from the default."""
    with pytest.raises(SystemExit) as info:
        main(["diagram", saga_file(workdir), "--run", "r1", "--store", ""])
    assert info.value.code == 2
    assert "names no store" in capsys.readouterr().err
