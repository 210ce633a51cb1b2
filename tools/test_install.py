"""Runs the install lines of README.md as a user would, then trains once.

    python tools/test_install.py R_LIBRARY BASE_PYTHON

Reads the shell blocks of README.md's "Install" section. Each line is run
with bash, as written, from a copy of this working tree's tracked files (a
clone, as a user has one) that also holds `dist/` (what `make dist` wrote),
and installs into a place of its own:
- an `R CMD INSTALL ...` line into a new, empty R library, placed first on
  R's library path before R_LIBRARY, which stands for the user's library
  where keras3 and reticulate are installed already; then tools/smoke.R
  trains with the package from that library (Python: RETICULATE_PYTHON);
- a `pip install ...` line into a new virtualenv made by BASE_PYTHON (its
  `pip` first on PATH); then tools/smoke.py trains with that virtualenv's
  Python, from a folder where only the installed kerasswa can be imported.
Every run is on JAX, the quickest backend to load. Fails on the first line
that fails, or if a block holds a line of another kind.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def install_lines(readme: pathlib.Path) -> list[str]:
    """The command lines of the ```sh blocks under the heading "## Install"."""
    text = readme.read_text(encoding="utf-8")
    section = re.search(r"^## Install\n(.*?)(?=^## )", text, re.S | re.M)
    if not section:
        sys.exit(f"{readme} has no '## Install' section")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section.group(1), re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def run(command: str, cwd: pathlib.Path, env: dict, what: str) -> None:
    start = time.monotonic()
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", command], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
    )
    if result.returncode:
        sys.exit(f"{what} failed (exit {result.returncode}):\n$ {command}\n{result.stdout}")
    last = result.stdout.strip().splitlines()[-1:] or [""]
    print(f"  {what}: {time.monotonic() - start:.0f} s  {last[0]}")


def working_tree_copy(destination: pathlib.Path) -> None:
    """The tracked files as they are in the working tree, and dist/."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, stdout=subprocess.PIPE
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copytree(ROOT / "dist", destination / "dist")


def main(r_library: str, base_python: str) -> None:
    lines = install_lines(ROOT / "README.md")
    kinds = {"R": [l for l in lines if l.startswith("R CMD INSTALL")],
             "Python": [l for l in lines if l.startswith("pip install")]}
    others = [l for l in lines if l not in kinds["R"] + kinds["Python"]]
    if others or not kinds["R"] or not kinds["Python"]:
        sys.exit(f"README.md's install lines should be `R CMD INSTALL ...` and "
                 f"`pip install ...` lines, both kinds; found: {lines}")
    base_env = dict(os.environ, KERAS_BACKEND="jax")
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "R_LIBS_USER"):
        base_env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="kerasswa-install-") as scratch:
        scratch = pathlib.Path(scratch)
        clone = scratch / "kerasswa"
        working_tree_copy(clone)
        for number, line in enumerate(kinds["R"]):
            library = scratch / f"R-library-{number}"
            library.mkdir()
            env = dict(base_env, R_LIBS=os.pathsep.join([str(library), r_library]),
                       KERASSWA_SMOKE_LIBRARY=str(library))
            print(f"$ {line}   (into the new R library {library.name})")
            run(line, clone, env, "install")
            run(f"Rscript {ROOT / 'tools' / 'smoke.R'}", scratch, env, "train")
        for number, line in enumerate(kinds["Python"]):
            venv = scratch / f"venv-{number}"
            subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
            env = dict(base_env, VIRTUAL_ENV=str(venv),
                       PATH=os.pathsep.join([str(venv / "bin"), base_env["PATH"]]))
            print(f"$ {line}   (into the new virtualenv {venv.name})")
            run(line, clone, env, "install")
            run(f"{venv / 'bin' / 'python'} {ROOT / 'tools' / 'smoke.py'}", scratch, env, "train")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
