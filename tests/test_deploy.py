"""examples/deploy: the image's install steps stay those of `make wheel-check`, and the
Kubernetes base renders (`kubectl kustomize`), fits the Kubernetes schemas and holds together."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "examples" / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
EXTRAS = ("postgres", "messaging", "prometheus")
ON_CI = os.environ.get("CI", "").lower() == "true"


# -- the Dockerfile ---------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined and
    comments left out."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        word, _, rest = whole.strip().partition(" ")
        found.append((word.upper(), " ".join(rest.split())))
    return found


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (each begins with FROM)."""
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions(text):
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def wheel_check_recipe() -> str:
    """The shell text of the Makefile's wheel-check target, as one line."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^wheel-check:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert match, "the Makefile has no wheel-check target"
    return " ".join(line.strip().rstrip("\\") for line in match.group(1).splitlines())


def pip_command(text: str, verb: str) -> list[str]:
    """The words of the first ``pip VERB ...`` command in ``text`` (up to ``;`` or ``&&``),
    quotes removed."""
    for command in re.split(r";|&&", text):
        words = shlex.split(command.replace('"', ""))
        for i in range(len(words) - 1):
            if words[i] == "pip" and words[i + 1] == verb:
                return words[i + 2 :]
    raise AssertionError(f"no `pip {verb}` in {text!r}")


def wheel_dir(words: list[str]) -> str:
    """The ``-w`` folder of a ``pip wheel`` command."""
    return words[words.index("-w") + 1]


def without_dir(words: list[str]) -> list[str]:
    """``pip wheel``'s words with the ``-w`` folder (which differs by design) left out."""
    i = words.index("-w")
    return words[: i + 1] + words[i + 2 :]


def image_runs() -> tuple[str, str]:
    """The RUN that builds the wheel (first stage) and the one that installs it (last)."""
    first, *_, last = stages(DOCKERFILE.read_text(encoding="utf-8"))
    (build,) = [rest for word, rest in first if word == "RUN" and "pip wheel" in rest]
    (install,) = [rest for word, rest in last if word == "RUN" and "pip install" in rest]
    return build, install


def test_image_builds_the_wheel_as_wheel_check_does() -> None:
    """The image's first stage builds the wheel with the very `pip wheel` of `make wheel-check`."""
    build, _ = image_runs()
    ours, theirs = pip_command(build, "wheel"), pip_command(wheel_check_recipe(), "wheel")
    assert without_dir(ours) == without_dir(theirs)
    assert ours[-1] == ".", "the wheel is built from the checkout's root"


def test_image_installs_that_wheel_with_the_deployment_extras() -> None:
    """The last stage installs the wheel wheel-check installs (its `-w` folder's statesaga-*.whl)
    with exactly the postgres, messaging and prometheus extras, copied from the first stage."""
    build, install = image_runs()
    folder = wheel_dir(pip_command(build, "wheel"))
    theirs = wheel_check_recipe()
    their_folder = wheel_dir(pip_command(theirs, "wheel"))
    assert any(w == f"{their_folder}/statesaga-*.whl" for w in pip_command(theirs, "install"))
    assert f"{folder}/statesaga-*.whl" in install.replace('"', "")
    extras = re.findall(r"\[([a-z,]+)\]", " ".join(pip_command(install, "install")))
    assert extras == [",".join(EXTRAS)]
    last = stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    assert ("COPY", f"--from=build {folder}/ {folder}/") in last


def test_the_extras_the_image_names_exist() -> None:
    """Every extra the image installs is one pyproject.toml defines."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        defined = tomllib.load(file)["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(defined), sorted(set(EXTRAS) - set(defined))


def test_image_copies_what_the_wheel_is_built_from() -> None:
    """The build stage copies pyproject.toml, the readme, the package and what the wheel
    force-includes (the templates), and the .dockerignore lets them through."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel.get("force-include", {}))
    first = stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    copied = {
        source.rstrip("/") for word, rest in first if word == "COPY" for source in rest.split()[:-1]
    }
    assert needed <= copied, sorted(needed - copied)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for path in needed:
        assert f"!{path}" in ignore or f"!{path}/" in ignore, f"{path} is left out of the context"


def test_image_runs_statesaga_as_a_numeric_non_root_user() -> None:
    """The last stage starts from python:3.11-slim, runs as a numeric user that is not root
    (runAsNonRoot can check it) and has `statesaga` as its entry point."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    built = stages(text)
    assert len(built) >= 2, "a multi-stage build"
    assert [rest for word, rest in built[-1] if word == "FROM"] == ["${PYTHON_IMAGE}"]
    users = [rest for word, rest in built[-1] if word == "USER"]
    assert users, "the image must not run as root"
    uid = users[-1].partition(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: runAsNonRoot needs a numeric uid"
    assert int(uid) != 0, "the image must not run as root"
    assert [rest for word, rest in built[-1] if word == "ENTRYPOINT"] == ['["statesaga"]']
    assert image_uid() == int(uid)


def image_uid() -> int:
    """The uid of the image's USER."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    users = [rest for word, rest in stages(text)[-1] if word == "USER"]
    return int(users[-1].partition(":")[0])


# -- the Kubernetes base ----------------------------------------------------------------------


@cache
def _rendered() -> tuple[dict[str, Any], ...]:
    import yaml

    done = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


@pytest.fixture
def rendered() -> tuple[dict[str, Any], ...]:
    """The base's resources as `kubectl kustomize` renders them."""
    if shutil.which("kubectl") is None:
        message = "kubectl (with kustomize) is not on PATH: it renders examples/deploy/k8s"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)
    return _rendered()


def one(resources: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def deployments(resources: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == "Deployment"}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def option(args: list[str], name: str) -> str:
    """The value of ``--name`` in ``args`` (``--name VALUE`` or ``--name=VALUE``)."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
    raise AssertionError(f"{name} is not in {args}")


def port_number(box: dict[str, Any], port: int | str) -> int:
    """``port`` as a number: a name is looked up in the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in box["ports"] if p.get("name") == port]
    return int(number)


def test_base_fits_the_kubernetes_schemas(rendered: tuple[dict[str, Any], ...]) -> None:
    """Every resource validates, strictly (no unknown field), against the schemas
    kubernetes-validate ships for the latest Kubernetes it knows."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    kinds = sorted(r["kind"] for r in rendered)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "Service",
    ]
    for resource in rendered:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            name = f"{resource['kind']}/{resource['metadata']['name']}"
            pytest.fail(f"{name} does not fit Kubernetes {version}: {error.message}")


def test_three_workers_and_two_relays(rendered: tuple[dict[str, Any], ...]) -> None:
    """The base runs three workers and two relays, each command in its own Deployment."""
    found = deployments(rendered)
    assert found["statesaga-worker"]["spec"]["replicas"] == 3
    assert found["statesaga-relay"]["spec"]["replicas"] == 2
    assert container(found["statesaga-worker"])["args"][0] == "worker"
    assert container(found["statesaga-relay"])["args"][0] == "relay"


def test_grace_period_outlasts_the_drain(rendered: tuple[dict[str, Any], ...]) -> None:
    """terminationGracePeriodSeconds exceeds the worker's --drain-timeout, so a pod is not
    killed while it lets its runs in hand finish (a relay finishes its batch, no option)."""
    deployment = deployments(rendered)["statesaga-worker"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(option(container(deployment)["args"], "--drain-timeout"))
    assert grace > drain


@pytest.mark.parametrize("name", ["statesaga-worker", "statesaga-relay"])
def test_probes_ask_the_health_port(rendered: tuple[dict[str, Any], ...], name: str) -> None:
    """Liveness asks /healthz and readiness /readyz on --health-port, which also serves
    --metrics-port's /metrics."""
    box = container(deployments(rendered)[name])
    health = int(option(box["args"], "--health-port"))
    assert int(option(box["args"], "--metrics-port")) == health
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(box, box[probe]["httpGet"]["port"]) == health


def test_secret_holds_exactly_the_urls_the_containers_read(
    rendered: tuple[dict[str, Any], ...],
) -> None:
    """The Secret's keys are the variables the containers take from it (STATESAGA_STORE and
    STATESAGA_BROKER, which the commands read), its values are marked as placeholders, and
    the URLs are not on the command line."""
    secret = one(rendered, "Secret", "statesaga-urls")
    values = secret.get("stringData") or secret["data"]
    assert set(values) == {"STATESAGA_STORE", "STATESAGA_BROKER"}
    assert all("REPLACE-ME" in value for value in values.values())
    for deployment in deployments(rendered).values():
        box = container(deployment)
        read = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in box["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert set(read) == set(values)
        assert all(ref["name"] == "statesaga-urls" and ref["key"] == n for n, ref in read.items())
        assert not {"--store", "--broker"} & set(box["args"]), "URLs would show in `ps`"
        (source,) = box["envFrom"]
        assert one(rendered, "ConfigMap", source["configMapRef"]["name"])


def test_commands_read_the_secret_from_the_environment() -> None:
    """The worker and the relay take --store from $STATESAGA_STORE and --broker from
    $STATESAGA_BROKER, which is how the Deployments pass them."""
    from statesaga.cli import cli

    for name in ("worker", "relay"):
        params = {p.name: p for p in cli.commands[name].params}
        assert params["store_url"].envvar == "STATESAGA_STORE"
        assert params["broker_url"].envvar == "STATESAGA_BROKER"


@pytest.mark.parametrize("name", ["statesaga-worker", "statesaga-relay"])
def test_every_option_the_base_passes_exists(
    rendered: tuple[dict[str, Any], ...], name: str
) -> None:
    """Each --option a Deployment passes is one its statesaga command accepts."""
    from statesaga.cli import cli

    args = container(deployments(rendered)[name])["args"]
    command: click.Command = cli.commands[args[0]]
    known = {opt for p in command.params for opt in p.opts}
    passed = {a.partition("=")[0] for a in args if a.startswith("--")}
    assert passed <= known, sorted(passed - known)


def test_pods_run_as_the_image_user_on_a_read_only_root(
    rendered: tuple[dict[str, Any], ...],
) -> None:
    """Pods run as non-root (the image's uid), with a read-only root filesystem, no privilege
    escalation, requests, and a memory limit."""
    for deployment in deployments(rendered).values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == image_uid()
        box = container(deployment)
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        assert box["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= set(box["resources"]["requests"])
        assert "memory" in box["resources"]["limits"]


def test_disruption_budgets_and_metrics_service_select_their_pods(
    rendered: tuple[dict[str, Any], ...],
) -> None:
    """Each Deployment has a PodDisruptionBudget selecting its pods, and a metrics Service
    that selects its pods (workers, relays) and tells Prometheus where to scrape."""
    found = deployments(rendered)
    budgets = [r for r in rendered if r["kind"] == "PodDisruptionBudget"]
    for deployment in found.values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        chosen = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(chosen) == 1, deployment["metadata"]["name"]
    for name in ("statesaga-worker", "statesaga-relay"):
        deployment = found[name]
        box = container(deployment)
        service = one(rendered, "Service", f"{name}-metrics")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        others = [d for n, d in found.items() if n != name]
        for other in others:  # each Service selects its own pods only
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= other_labels.items()
        notes = service["metadata"]["annotations"]
        metrics = int(option(box["args"], "--metrics-port"))
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/path"] == "/metrics"
        assert int(notes["prometheus.io/port"]) == metrics
        (port,) = service["spec"]["ports"]
        assert port_number(box, port["targetPort"]) == metrics
