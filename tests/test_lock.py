"""The lock file (requirements.lock, made by `make lock` with pip-compile) against pyproject.toml,
environment.yml and the running interpreter's packages (`make env` installs the lock)."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# name==version and nothing else: no ranges, no markers, no URLs, no options
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")


def _lock_lines() -> list[str]:
    lines = (line.split(" #", 1)[0].strip() for line in LOCK.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pins() -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in map(PIN.match, _lock_lines()) if m}


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + project["optional-dependencies"]["test"]
    return [Requirement(r) for r in names]


def test_every_line_is_an_exact_pin():
    lines = _lock_lines()
    assert len(lines) > 100, "the lock holds every transitive dependency, not only ours"
    assert [line for line in lines if not PIN.match(line)] == []
    assert len(_pins()) == len(lines), "a package is pinned twice"


def test_the_lock_covers_every_dependency_of_the_project_within_its_range():
    pins = _pins()
    requirements = _project_requirements()
    missing = [str(r) for r in requirements if canonicalize_name(r.name) not in pins]
    assert missing == [], f"not in {LOCK.name}; run `make lock`"
    outside = [
        f"{r} (locked {pins[canonicalize_name(r.name)]})"
        for r in requirements
        if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert outside == [], "pyproject.toml rules out the lock's pin; run `make lock`"


def test_torch_and_torchvision_are_the_releases_on_this_machines_disk():
    pins = _pins()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")


def test_environment_yml_installs_the_lock_and_pins_nothing_of_its_own():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip == [f"-r {LOCK.name}", "-e ."]
    assert "python=3.11" in env["dependencies"]


def test_the_installed_packages_are_the_locked_ones():
    """A venv that drifted from the lock (a hand install, an old `make env`) fails here."""
    drifted = {}
    for name, pinned in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            drifted[name] = f"locked {pinned}, installed {installed}"
    assert drifted == {}, "run `make env` (or `make lock` if pyproject.toml changed)"


@pytest.mark.slow  # pip's startup and scan of site-packages take about 3 s
def test_pip_check_is_clean():
    done = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
