"""The R and Python halves of kerasswa are one release: the same version in
DESCRIPTION, pyproject.toml and `kerasswa.__version__`, and the R package's
copy of the Python module (inst/python/kerasswa, written by `make`) equal to
its source, python/kerasswa."""

import filecmp
import re
import tomllib
from pathlib import Path

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
