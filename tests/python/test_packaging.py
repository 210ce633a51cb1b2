"""The R and Python halves of kerasswa are one release: the same version in
DESCRIPTION, pyproject.toml and `kerasswa.__version__`, and the R package's
copy of the Python module (inst/python/kerasswa, written by `make`) equal to
its source, python/kerasswa."""

import filecmp
import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11; pytest depends on tomli there
    import tomli as tomllib

import kerasswa

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_everywhere():
    description = (ROOT / "DESCRIPTION").read_text()
    r_version = re.search(r"^Version:\s*(\S+)\s*$", description, re.MULTILINE).group(1)
    with open(ROOT / "pyproject.toml", "rb") as f:
        python_version = tomllib.load(f)["project"]["version"]
    assert (r_version, python_version) == (kerasswa.__version__,) * 2


def test_the_r_package_ships_the_python_module_unchanged():
    source, copy = ROOT / "python" / "kerasswa", ROOT / "inst" / "python" / "kerasswa"
    names = sorted(p.name for p in source.glob("*.py"))
    copied = sorted(p.name for p in copy.glob("*.py")) if copy.is_dir() else []
    _, mismatch, errors = filecmp.cmpfiles(source, copy, names, shallow=False)
    assert (copied, mismatch, errors) == (names, [], []), (
        "inst/python/kerasswa differs from python/kerasswa: run `make python-copy` "
        "and commit the copy"
    )


def test_every_declared_floor_is_the_tested_one():
    """The oldest Python, Keras, NumPy and JAX that pyproject.toml, R's
    py_require() and DESCRIPTION declare are those that `make
    test-python-oldest` tests: requirements/oldest.txt pins each floor of
    pyproject.toml, and the Makefile makes that environment with the oldest
    Python declared."""
    from packaging.version import Version

    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    declared = list(project["dependencies"]) + [
        requirement for extra in project["optional-dependencies"].values() for requirement in extra
    ]
    floors = dict(re.fullmatch(r"([\w.-]+)>=(\S+)", r).groups() for r in declared if ">=" in r)
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)", (ROOT / "requirements" / "oldest.txt").read_text(), re.M))
    assert {"keras", "numpy", "jax"} <= set(floors)
    assert {name: Version(pins.get(name, "0")) for name in floors} == {
        name: Version(floor) for name, floor in floors.items()
    }

    python = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PYTHON_OLDEST_VERSION := (\S+)$", makefile, re.M).group(1) == python

    zzz = (ROOT / "R" / "zzz.R").read_text()
    r_declared = re.search(r"^kerasswa_python_requirements <- c\((.*)\)$", zzz, re.M).group(1)
    assert re.findall(r'"([^"]+)"', r_declared) == project["dependencies"]

    description = " ".join((ROOT / "DESCRIPTION").read_text().split())
    for name, floor in [("Python", python), ("Keras", floors["keras"]), ("NumPy", floors["numpy"])]:
        assert f"{name} (>= {floor})" in description
