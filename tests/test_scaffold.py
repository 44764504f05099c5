from __future__ import annotations

import errno
import importlib.resources
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import run_cli

from statesaga.cli import main
from statesaga.scaffold import DEFAULT_STEPS, ScaffoldError, new_saga, template_dir

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
HAS_DOT = shutil.which("dot") is not None
GENERATED = (
    "README.md",
    "__init__.py",
    "__main__.py",
    "actions.py",
    "compensations.py",
    "main.py",
    "pytest.ini",
    "services.py",
)
# The project's own lint rules, applied to the generated code at ruff's default line length.
HOUSE_RULES = ",".join(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["select"]
)
LONGEST = "abcdefghij_abcdefghij_abcdefghij_abcdefg"  # 40 characters, the longest name allowed


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in ``cwd`` with this interpreter (its venv has statesaga)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "my_templates"
    shutil.copytree(str(template_dir()), folder)
    return folder


# -- what is generated ------------------------------------------------------------------------


def test_default_saga_has_three_steps_and_every_file(tmp_path: Path) -> None:
    """Without --steps the saga has the three default steps and every documented file."""
    made = new_saga("order_saga", directory=tmp_path)
    assert made.path == tmp_path / "order_saga"
    expected = {
        *GENERATED,
        "test_order_saga.py",
        "test_failure_space.py",
        *(["diagram.svg"] if HAS_DOT else []),
    }
    assert set(made.files) == expected
    assert files_under(made.path) == sorted(expected)
    main_py = (made.path / "main.py").read_text()
    assert "class OrderSaga(Saga):" in main_py
    for step in DEFAULT_STEPS:
        assert f"async def {step}(ctx: Context)" in (made.path / "actions.py").read_text()
        assert (
            f"async def undo_{step}(ctx: Context)" in (made.path / "compensations.py").read_text()
        )
        assert f"compensate=compensations.undo_{step}," in main_py


def test_readme_shows_the_machine_as_mermaid_and_svg(tmp_path: Path) -> None:
    """The README embeds the compiled machine's Mermaid text and links the SVG when drawn."""
    from statesaga.loader import load_saga
    from statesaga.render import mermaid_of

    made = new_saga("trip", steps="book_flight, book_hotel", directory=tmp_path)
    readme = (made.path / "README.md").read_text()
    sys.path.insert(0, str(tmp_path))
    try:
        mermaid = mermaid_of(load_saga("trip:TripSaga"))
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "trip" or m.startswith("trip.")]:
            del sys.modules[name]
    assert f"```mermaid\n{mermaid}```" in readme
    if HAS_DOT:
        assert "![TripSaga's state machine](diagram.svg)" in readme
        assert b"<svg" in (made.path / "diagram.svg").read_bytes()


def test_without_graphviz_the_readme_has_mermaid_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Graphviz's dot cannot run, no SVG is written and the result says why."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    made = new_saga("trip", directory=tmp_path)
    assert made.diagram_problem is not None
    assert "Graphviz" in made.diagram_problem
    assert "diagram.svg" not in made.files
    readme = (made.path / "README.md").read_text()
    assert "```mermaid" in readme
    assert ".svg" not in readme


def test_generating_leaves_no_module_or_bytecode_behind(tmp_path: Path) -> None:
    """The generated package is imported to draw it, then forgotten; no __pycache__ is left."""
    before = set(sys.modules)
    made = new_saga("order_saga", directory=tmp_path)
    added = [sys.modules[m] for m in set(sys.modules) - before]
    assert not [m for m in added if "statesaga-new-" in str(getattr(m, "__file__", None))]
    assert not any("_statesaga_new_" in m or m.startswith("order_saga") for m in sys.modules)
    assert not list(made.path.rglob("__pycache__"))


def test_steps_accept_a_list_or_a_comma_separated_string(tmp_path: Path) -> None:
    """`steps` may be a sequence of names or one comma-separated string, spaces allowed."""
    a = new_saga("a_saga", steps=["one", "two"], directory=tmp_path)
    b = new_saga("b_saga", steps=" one , two ", directory=tmp_path)
    for made in (a, b):
        assert '"one",\n            actions.one,' in (made.path / "main.py").read_text()
        assert "async def two(" in (made.path / "actions.py").read_text()


def test_missing_dir_is_created(tmp_path: Path) -> None:
    """--dir names a folder that is created when it does not exist."""
    made = new_saga("order_saga", directory=tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "order_saga" / "main.py").is_file()
    assert made.path == tmp_path / "a" / "b" / "order_saga"


def test_folder_is_copied_when_the_temporary_folder_is_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary folder on another file system (no rename across them) is copied instead."""

    def cross_device(self: Path, target: Path) -> Path:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(Path, "rename", cross_device)
    made = new_saga("order_saga", directory=tmp_path)
    assert set(files_under(made.path)) == set(made.files)


def test_an_interrupted_copy_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while copying across file systems leaves no half folder and no created --dir."""
    real_copytree = shutil.copytree

    def cross_device(self: Path, target: Path) -> Path:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def interrupted(source: Path, destination: Path) -> None:
        real_copytree(source, destination)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "rename", cross_device)
    monkeypatch.setattr("statesaga.scaffold.target.shutil.copytree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        new_saga("order_saga", directory=tmp_path / "sagas" / "orders")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_with_force_changes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --force, a disk that fills up midway leaves every existing file as it was."""
    target = new_saga("order_saga", directory=tmp_path).path
    (target / "main.py").write_text("edited\n")
    before = {name: (target / name).read_bytes() for name in files_under(target)}
    real_copyfile = shutil.copyfile
    copies: list[str] = []

    def disk_full(source: Path, destination: Path) -> None:
        copies.append(str(destination))
        if len(copies) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_copyfile(source, destination)

    monkeypatch.setattr("statesaga.scaffold.target.shutil.copyfile", disk_full)
    with pytest.raises(ScaffoldError, match=r"No space left on device: nothing was written$"):
        new_saga("order_saga", steps="one,two", directory=tmp_path, force=True)
    assert {name: (target / name).read_bytes() for name in files_under(target)} == before


def test_class_name_does_not_repeat_saga(tmp_path: Path) -> None:
    """order_saga makes OrderSaga; orders makes OrdersSaga."""
    new_saga("order_saga", directory=tmp_path)
    new_saga("orders", directory=tmp_path)
    assert "class OrderSaga(Saga):" in (tmp_path / "order_saga" / "main.py").read_text()
    assert "class OrdersSaga(Saga):" in (tmp_path / "orders" / "main.py").read_text()


# -- bad input: one line, nothing written -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "saga name is empty"),
        ("/tmp/order_saga", "is an absolute path"),
        ("..", "points outside the target folder"),
        ("../order_saga", "points outside the target folder"),
        ("sagas/order_saga", "contains a path separator"),
        ("sagas\\order_saga", "contains a path separator"),
        ("OrderSaga", "is not snake_case: use lowercase letters, digits and single underscores"),
        ("order-saga", "(such as 'order_saga')"),
        ("ordér", "(such as 'order')"),
        ("ＯＲＤＥＲ", "(such as 'order')"),
        ("2fast", "is not snake_case"),
        ("order__saga", "is not snake_case"),
        ("class", "is a Python keyword"),
        ("token", "standard library module, which the generated package would hide"),
        ("click", "a module installed by click"),
        ("test", "would be taken for a test by pytest"),
        ("testing_orders", "would be taken for a test by pytest"),
        ("conftest", "would be taken for a test by pytest"),
        ("statesaga", "a module installed by statesaga"),
        (LONGEST + "x", "has 41 characters: use at most 40"),
    ],
)
def test_bad_saga_name_is_refused(tmp_path: Path, name: str, message: str) -> None:
    """A saga name that cannot be a folder, package and class is refused; nothing is written."""
    with pytest.raises(ScaffoldError, match=r"^saga name") as caught:
        new_saga(name, directory=tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("", "no steps given"),
        ("reserve,,ship", "step 2 of 3 has an empty name"),
        ("reserve,", "step 2 of 2 has an empty name"),
        ("/reserve", "is an absolute path"),
        ("../reserve", "points outside the target folder"),
        ("stock/reserve", "contains a path separator"),
        ("Reserve", "step name 'Reserve' is not snake_case"),
        ("reserve stock", "(such as 'reserve_stock')"),
        ("class", "step name 'class' is a Python keyword: choose another name"),
        ("saga", "step name 'saga' is reserved for the saga's own states: choose another name"),
        ("print", "is a Python builtin, which the generated function would hide"),
        ("reserve,ship,reserve", "step 'reserve' is listed more than once"),
        (LONGEST + "x", "has 41 characters"),
    ],
)
def test_bad_step_names_are_refused(tmp_path: Path, steps: str, message: str) -> None:
    """Step names that cannot be functions and states, or repeat, are refused; nothing written."""
    with pytest.raises(ScaffoldError) as caught:
        new_saga("order_saga", steps=steps, directory=tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_without_force(tmp_path: Path) -> None:
    """A non-empty target folder is left alone unless --force is given."""
    target = tmp_path / "order_saga"
    target.mkdir()
    (target / "main.py").write_text("mine\n")
    with pytest.raises(ScaffoldError, match=r"already exists and is not empty.*--force"):
        new_saga("order_saga", directory=tmp_path)
    assert files_under(target) == ["main.py"]
    assert (target / "main.py").read_text() == "mine\n"


def test_empty_existing_folder_is_filled(tmp_path: Path) -> None:
    """An empty target folder is used as it is, without --force."""
    (tmp_path / "order_saga").mkdir()
    made = new_saga("order_saga", directory=tmp_path)
    assert (made.path / "main.py").is_file()


def test_force_overwrites_generated_files_and_keeps_all_others(tmp_path: Path) -> None:
    """--force rewrites what the templates make and never deletes or touches anything else."""
    target = new_saga("order_saga", directory=tmp_path).path
    (target / "main.py").write_text("edited\n")
    (target / "notes.txt").write_text("mine\n")
    (target / "data").mkdir()
    (target / "data" / "keep.json").write_text("{}\n")
    made = new_saga("order_saga", steps="one,two", directory=tmp_path, force=True)
    assert "async def one(" in (target / "actions.py").read_text()
    assert "edited" not in (target / "main.py").read_text()
    assert (target / "notes.txt").read_text() == "mine\n"
    assert (target / "data" / "keep.json").read_text() == "{}\n"
    assert made.kept == ("data/keep.json", "notes.txt")


def test_target_that_is_a_file_is_refused_even_with_force(tmp_path: Path) -> None:
    """A file where the saga's folder would go is never replaced."""
    (tmp_path / "order_saga").write_text("mine\n")
    with pytest.raises(ScaffoldError, match="exists and is not a folder"):
        new_saga("order_saga", directory=tmp_path, force=True)
    assert (tmp_path / "order_saga").read_text() == "mine\n"


def test_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """A --dir that names a file is refused."""
    (tmp_path / "sagas").write_text("mine\n")
    with pytest.raises(ScaffoldError, match="is not a folder: choose another --dir"):
        new_saga("order_saga", directory=tmp_path / "sagas")
    assert (tmp_path / "sagas").read_text() == "mine\n"


def test_dir_inside_a_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A --dir below a file names that file, before anything is rendered or written."""
    (tmp_path / "sagas").write_text("mine\n")
    with pytest.raises(ScaffoldError) as caught:
        new_saga("order_saga", directory=tmp_path / "sagas" / "orders")
    assert str(caught.value) == f"{str(tmp_path / 'sagas')!r} is not a folder: choose another --dir"
    assert (tmp_path / "sagas").read_text() == "mine\n"


def test_force_refuses_to_replace_a_folder_with_a_file(tmp_path: Path) -> None:
    """With --force, a folder where a generated file would go is refused before any write."""
    target = tmp_path / "order_saga"
    (target / "main.py").mkdir(parents=True)
    (target / "README.md").write_text("mine\n")
    with pytest.raises(ScaffoldError, match="is a folder but the template writes a file there"):
        new_saga("order_saga", directory=tmp_path, force=True)
    assert files_under(target) == ["README.md"]
    assert (target / "README.md").read_text() == "mine\n"


# -- templates --------------------------------------------------------------------------------


def test_templates_come_from_the_checkout_when_not_installed() -> None:
    """In an editable install the package has no _templates: the checkout's templates/ is used."""
    assert Path(str(template_dir())) == ROOT / "templates"
    assert (ROOT / "templates" / "main.py.jinja").is_file()


def test_templates_come_from_the_package_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed from a wheel, the package's own _templates folder is used."""
    package = tmp_path / "statesaga"
    (package / "_templates").mkdir(parents=True)
    monkeypatch.setattr(importlib.resources, "files", lambda name: package)
    assert Path(str(template_dir())) == package / "_templates"


def test_wheel_ships_the_templates() -> None:
    """pyproject puts templates/ into the wheel as statesaga/_templates (make wheel-check)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"templates" = "statesaga/_templates"' in pyproject


def test_custom_template_folder_is_used_with_the_same_variables(tmp_path: Path) -> None:
    """--template renders a user's folder: names in paths, every variable, plain files copied."""
    templates = copy_templates(tmp_path)
    (templates / "docs").mkdir()
    (templates / "docs" / "{{ name }}_steps.txt.jinja").write_text(
        "{{ class_name }} ({{ title }}): {{ summary }}\n"
        "{% for s in steps %}{{ s.index }} {{ s.name }} {{ s.title }} {{ s.compensation }}\n"
        "{% endfor %}statesaga {{ statesaga_version }}\n"
        "{{ mermaid.splitlines()[0] }} {{ svg is none or svg.endswith('.svg') }}\n"
    )
    (templates / "logo.png").write_bytes(b"\x89PNG\r\n{{ not a template }}")
    made = new_saga(
        "trip_booking", steps="book_flight,pay", directory=tmp_path / "out", template=templates
    )
    text = (made.path / "docs" / "trip_booking_steps.txt").read_text()
    assert text.splitlines() == [
        "TripBookingSaga (Trip booking): book flight, pay",
        "1 book_flight Book flight undo_book_flight",
        "2 pay Pay undo_pay",
        "statesaga 0.1.0",
        "--- True",
    ]
    assert (made.path / "logo.png").read_bytes() == b"\x89PNG\r\n{{ not a template }}"


def test_undefined_variable_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    """A template using an unknown variable fails in one line naming it and the known ones."""
    templates = copy_templates(tmp_path)
    readme = templates / "README.md.jinja"
    readme.write_text(readme.read_text() + "{{ author }}\n")
    out = tmp_path / "out"
    with pytest.raises(ScaffoldError) as caught:
        new_saga("order_saga", directory=out, template=templates)
    message = str(caught.value)
    assert message.startswith("template 'README.md.jinja': 'author' is undefined")
    assert "templates can use class_name, mermaid, name, statesaga_version," in message
    assert "\n" not in message
    assert not out.exists()


def test_python_templates_cannot_use_the_diagram(tmp_path: Path) -> None:
    """mermaid and svg come from the generated code, so a Python template using them fails."""
    templates = copy_templates(tmp_path)
    (templates / "diagram.py.jinja").write_text('MERMAID = """{{ mermaid }}"""\n')
    with pytest.raises(ScaffoldError, match="mermaid and svg are drawn from the generated code"):
        new_saga("order_saga", directory=tmp_path / "out", template=templates)
    assert not (tmp_path / "out").exists()


def test_template_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A Jinja syntax error is reported with its template and line."""
    templates = copy_templates(tmp_path)
    (templates / "broken.txt.jinja").write_text("ok\n{% for %}\n")
    with pytest.raises(ScaffoldError, match=r"^template 'broken.txt.jinja' line 2: "):
        new_saga("order_saga", directory=tmp_path / "out", template=templates)


def test_generated_code_that_does_not_import_is_reported(tmp_path: Path) -> None:
    """Templates whose package fails to import stop generation; nothing is written."""
    templates = copy_templates(tmp_path)
    (templates / "actions.py.jinja").write_text("raise RuntimeError('broken\\non two lines')\n")
    out = tmp_path / "out"
    with pytest.raises(ScaffoldError) as caught:
        new_saga("order_saga", directory=out, template=templates)
    assert str(caught.value) == (
        "the generated package does not import: RuntimeError: broken on two lines: "
        "fix the templates"
    )
    assert not out.exists()
    assert not any("_statesaga_new_" in m for m in sys.modules)


def test_a_missing_module_is_named_under_the_package_name(tmp_path: Path) -> None:
    """A template folder without services.py names `order_saga.services`, not a private name."""
    templates = copy_templates(tmp_path)
    (templates / "services.py.jinja").unlink()
    with pytest.raises(ScaffoldError) as caught:
        new_saga("order_saga", directory=tmp_path / "out", template=templates)
    assert str(caught.value) == (
        "the generated package does not import: ModuleNotFoundError: No module named "
        "'order_saga.services': fix the templates"
    )


def test_generated_code_that_exits_when_imported_is_reported(tmp_path: Path) -> None:
    """A template whose code calls sys.exit() at import is an error, not a silent exit."""
    templates = copy_templates(tmp_path)
    with (templates / "actions.py.jinja").open("a") as file:
        file.write("\nimport sys\n\nsys.exit(0)\n")
    out = tmp_path / "out"
    with pytest.raises(ScaffoldError) as caught:
        new_saga("order_saga", directory=out, template=templates)
    assert str(caught.value) == (
        "the generated package does not import: SystemExit: sys.exit(0) is called when the "
        "package is imported: fix the templates"
    )
    assert not out.exists()


def test_template_name_that_renders_empty_is_refused(tmp_path: Path) -> None:
    """A file name that renders to nothing is named as such, before anything is written."""
    templates = copy_templates(tmp_path)
    (templates / "{{ '' }}.jinja").write_text("x\n")
    with pytest.raises(ScaffoldError, match=r"renders to an empty file name: fix the template"):
        new_saga("order_saga", directory=tmp_path / "out", template=templates)
    assert not (tmp_path / "out").exists()


def test_template_must_export_the_saga_class(tmp_path: Path) -> None:
    """A template whose __init__.py does not export the saga class is refused."""
    templates = copy_templates(tmp_path)
    (templates / "__init__.py.jinja").write_text('"""Nothing exported."""\n')
    with pytest.raises(ScaffoldError, match="does not export the saga class OrderSaga"):
        new_saga("order_saga", directory=tmp_path / "out", template=templates)


def test_template_cannot_write_outside_the_folder(tmp_path: Path) -> None:
    """A templated path that renders outside the saga's folder is refused."""
    templates = copy_templates(tmp_path)
    (templates / "{{ '..' }}").mkdir()
    (templates / "{{ '..' }}" / "escape.txt").write_text("x\n")
    with pytest.raises(ScaffoldError, match=r"would write to '\.\./escape\.txt', outside"):
        new_saga("order_saga", directory=tmp_path / "out", template=templates)
    assert not (tmp_path / "escape.txt").exists()


# -- the command ------------------------------------------------------------------------------


def test_cli_new_lists_the_files_and_what_to_do_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`statesaga new` prints the folder, its files and how to run and test the saga."""
    main(["new", "order_saga", "--dir", str(tmp_path), "--steps", "reserve,ship"])
    out = capsys.readouterr().out
    assert f"created {tmp_path / 'order_saga'}/" in out
    assert "  test_order_saga.py\n" in out
    assert "  test_failure_space.py\n" in out
    assert f"next: cd {tmp_path / 'order_saga'} && python main.py && python -m pytest" in out


def test_cli_next_step_quotes_a_folder_with_a_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed `cd` command works when pasted, even for a folder with a space."""
    main(["new", "order_saga", "--dir", str(tmp_path / "my sagas")])
    out = capsys.readouterr().out
    assert f"next: cd '{tmp_path / 'my sagas' / 'order_saga'}' && python main.py" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "Order"], "error: saga name 'Order' is not snake_case"),
        (["new", "order_saga", "--steps", "a,a"], "error: step 'a' is listed more than once"),
        (["new", "/abs"], "error: saga name '/abs' is an absolute path"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Bad input prints one `error:` line saying what to do, exits 1, and writes nothing."""
    with pytest.raises(SystemExit) as exited:
        main([*args, "--dir", str(tmp_path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_existing_folder_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --force an existing saga folder is refused (exit 1); with it, it is rewritten."""
    main(["new", "order_saga", "--dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main(["new", "order_saga", "--dir", str(tmp_path)])
    assert exited.value.code == 1
    assert "pass --force" in capsys.readouterr().err
    (tmp_path / "order_saga" / "mine.txt").write_text("x")
    main(["new", "order_saga", "--dir", str(tmp_path), "--force"])
    assert "kept 1 other file(s) that were already there" in capsys.readouterr().out


def test_cli_wrong_arguments_exit_2(tmp_path: Path) -> None:
    """Missing NAME or a --template folder that does not exist is a usage error (exit 2)."""
    assert run_cli("new").returncode == 2
    done = run_cli("new", "order_saga", "--template", str(tmp_path / "nope"), cwd=tmp_path)
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- the generated saga, run as its user would ------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saga generated with the default steps, in its own temporary folder."""
    return new_saga("order_saga", directory=tmp_path_factory.mktemp("generated")).path


def scenario_count(folder: Path) -> int:
    """How many failure-space scenarios statesaga generates for the saga in ``folder``."""
    code = (
        "from statesaga.testing import scenarios\n"
        f"from {folder.name}.main import OrderSaga\n"
        "print(len(scenarios(OrderSaga)))"
    )
    done = run("-c", code, cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.slow
def test_generated_tests_pass(generated: Path) -> None:
    """The saga's own pytest files pass: the success path, then every scenario of its
    failure space, one test each."""
    done = run("-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", cwd=generated)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED ")]
    assert "PASSED test_order_saga.py::test_every_step_runs_and_its_effect_stays" in passed
    space = [line for line in passed if line.startswith("PASSED test_failure_space.py::")]
    assert len(space) == scenario_count(generated) > 3 * len(DEFAULT_STEPS)
    assert f"{1 + len(space)} passed" in done.stdout


UNDO = "    await SERVICES[ctx.step].undo(ctx.action_key)\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("broken", "failing"),
    [
        (
            "    return None  # forgot to undo\n",
            "charge_payment: fails (non-retryable) -> compensated: reserve_stock",
        ),
        (
            '    reply = ctx.results[ctx.step]["reference"]\n'
            '    await SERVICES[ctx.step].undo(reply.split("/", 1)[1])\n',
            "reserve_stock: reply lost after its effect (OutcomeUnknownError)",
        ),
    ],
    ids=["undoes-nothing", "trusts-the-reply"],
)
def test_generated_tests_fail_when_a_compensation_is_broken(
    tmp_path: Path, broken: str, failing: str
) -> None:
    """A compensation that undoes nothing, or finds the effect by the reply, fails the
    failure space's scenarios that need it."""
    folder = new_saga("order_saga", directory=tmp_path).path
    code = (folder / "compensations.py").read_text()
    assert code.count(UNDO) == len(DEFAULT_STEPS)
    (folder / "compensations.py").write_text(code.replace(UNDO, broken, 1))
    done = run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=folder)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"test_failure_space[{failing}" in done.stdout


@pytest.mark.slow
def test_generated_main_prints_the_result(generated: Path) -> None:
    """`python main.py` runs the saga once and prints its status and steps."""
    done = run("main.py", cwd=generated)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("OrderSaga run ")
    assert lines[0].endswith(": completed")
    assert lines[1:] == [
        "  completed:    reserve_stock, charge_payment, ship_order",
        "  compensated:  -",
    ]


@pytest.mark.slow
def test_generated_main_shows_compensation(generated: Path) -> None:
    """`python -m NAME --fail STEP` from the folder above compensates and exits 1."""
    done = run("-m", "order_saga", "--fail", "ship_order", cwd=generated.parent)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "  failed:       ship_order (injected failure of 'ship_order')",
        "  completed:    reserve_stock, charge_payment",
        "  compensated:  charge_payment, reserve_stock",
    ]


@pytest.mark.slow
def test_generated_main_records_the_run_in_a_store(generated: Path, tmp_path: Path) -> None:
    """`--store sqlite:///file.db` runs durably; `statesaga runs list` then shows the run."""
    url = f"sqlite:///{tmp_path / 'sagas.db'}"
    done = run("main.py", "--store", url, cwd=generated)
    assert done.returncode == 0, done.stderr
    listed = run_cli("runs", "list", "--store", url)
    assert listed.returncode == 0, listed.stderr
    assert "OrderSaga" in listed.stdout
    assert "completed" in listed.stdout


def test_generated_main_refuses_a_bad_store_on_one_line(generated: Path) -> None:
    """`python main.py --store` with a URL it cannot use prints one error line and exits 1."""
    done = run("main.py", "--store", "nosuch://x", cwd=generated)
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown store URL scheme 'nosuch'")
    assert done.stderr.count("\n") == 1


@pytest.mark.slow
def test_generated_code_is_lint_and_format_clean(generated: Path) -> None:
    """ruff check (its defaults and this project's rules) and ruff format find nothing."""
    for args in (
        ["check", "--no-cache", "."],
        ["check", "--no-cache", "--select", HOUSE_RULES, "."],
        ["format", "--check", "--no-cache", "."],
    ):
        done = run("-m", "ruff", *args, cwd=generated)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_generated_code_passes_mypy_strict(generated: Path, tmp_path: Path) -> None:
    """mypy --strict finds nothing in the generated package."""
    done = run("-m", "mypy", "--strict", "--cache-dir", str(tmp_path), ".", cwd=generated)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_longest_names_and_one_step_stay_clean(tmp_path: Path) -> None:
    """With 40-character names, many steps, or one, the code is formatted, typed and tested."""
    longest = new_saga(LONGEST, steps=f"{LONGEST},b{LONGEST[1:]},c", directory=tmp_path).path
    many = new_saga(
        "trip_booking",
        steps="book_flight,book_hotel,rent_car,charge_card,send_itinerary,notify_partner",
        directory=tmp_path,
    ).path
    single = new_saga("ping", steps="ping", directory=tmp_path).path
    for folder in (longest, many, single):
        for args in (
            ["-m", "ruff", "format", "--check", "--no-cache", "."],
            ["-m", "ruff", "check", "--no-cache", "."],
            ["-m", "ruff", "check", "--no-cache", "--select", HOUSE_RULES, "."],
            ["-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy"), "."],
            ["-m", "pytest", "-q", "-p", "no:cacheprovider"],
        ):
            done = run(*args, cwd=folder)
            assert done.returncode == 0, f"{folder.name}: {args}\n{done.stdout}{done.stderr}"


# -- the documentation ------------------------------------------------------------------------

DOCS = ROOT / "docs" / "scaffolding.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def test_docs_python_example_prints_what_the_page_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The page's Python example runs and prints the text block that follows it."""
    blocks = BLOCK.findall(DOCS.read_text())
    ((index, code),) = [(i, body) for i, (lang, body) in enumerate(blocks) if lang == "python"]
    exec(compile(code, str(DOCS), "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out == blocks[index + 1][1]


def test_docs_error_examples_are_what_the_command_prints(tmp_path: Path) -> None:
    """Each `$ statesaga new ...` example on the page prints the error line shown under it."""
    (tmp_path / "order_saga").mkdir()
    (tmp_path / "order_saga" / "notes.txt").write_text("mine\n")
    block = next(body for _, body in BLOCK.findall(DOCS.read_text()) if "$ statesaga" in body)
    examples = block.splitlines()
    assert len(examples) == 4
    for command, expected in zip(examples[::2], examples[1::2], strict=True):
        done = run_cli(*command.split()[2:], cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr == expected + "\n"
