"""tools/check-log.R, which judges the two R CMD check --as-cran runs of
`make test`, accepts a clean check and refuses every kind of problem."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "check-log.R"

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")

CLEAN = """\
* using log directory '/x/kerasswa.Rcheck'
* checking CRAN incoming feasibility ... Note_to_CRAN_maintainers
Maintainer: 'kerasswa authors <kerasswa@example.org>'
* checking package dependencies ... OK
* checking examples ... [20s/24s] OK
* checking tests ... [60s/70s] OK
  Running 'testthat.R' [60s/70s]
* DONE
Status: OK
"""

TIMINGS = "name\tuser\tsystem\telapsed\nfirst\t5.3\t0.8\t9.0\nsecond\t1.0\t0.1\t7.0\n"


def check(tmp_path, log, *options, timings=TIMINGS, outputs=None):
    folder = tmp_path / "check" / "kerasswa.Rcheck"
    (folder / "tests").mkdir(parents=True, exist_ok=True)
    (folder / "00check.log").write_text(log)
    (folder / "kerasswa-Ex.timings").write_text(timings)
    for name, text in (outputs or {}).items():
        (folder / name).write_text(text)
    result = subprocess.run(
        ["Rscript", str(SCRIPT), str(tmp_path / "check"), *options],
        capture_output=True, text=True, timeout=60,
    )
    return result.returncode, result.stderr


def test_a_clean_check_passes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code, output = check(tmp_path, CLEAN, "no-python", str(home), "examples", "5")
    assert code == 0, output
    assert "the first (first) 6.1 s of CPU, 9.0 s elapsed" in output


@pytest.mark.parametrize(
    "log",
    [
        CLEAN.replace("checking examples ... [20s/24s] OK", "checking examples ... [20s/24s] NOTE\nslow"),
        CLEAN.replace("dependencies ... OK", "dependencies ... WARNING\nmissing"),
        CLEAN.replace("* DONE\nStatus: OK\n", ""),
        CLEAN.replace("Status: OK", "Status: 1 ERROR"),  # a result the loop cannot read
        CLEAN.replace("Note_to_CRAN_maintainers\nMaintainer", "NOTE\nSuggests or Enhances not in mainstream\nMaintainer"),
    ],
    ids=["note", "warning", "unfinished", "status-disagrees", "other-incoming-note"],
)
def test_a_problem_in_the_log_fails(tmp_path, log):
    code, output = check(tmp_path, log)
    assert code == 1
    assert "is not clean" in output


def test_a_download_attempt_or_reticulate_cache_fails(tmp_path):
    home = tmp_path / "home"
    (home / ".cache" / "R" / "reticulate").mkdir(parents=True)
    code, output = check(
        tmp_path, CLEAN, "no-python", str(home),
        outputs={"kerasswa-Ex.Rout": "Downloading uv...\n"},
    )
    assert code == 1
    assert "reticulate tried to download software 1 times" in output
    assert "reticulate's cache appeared in HOME" in output


def test_a_slow_example_fails_unless_it_runs_first(tmp_path):
    slow_second = TIMINGS.replace("second\t1.0\t0.1", "second\t5.0\t0.5")
    code, output = check(tmp_path, CLEAN, "examples", "5", timings=slow_second)
    assert code == 1
    assert "second 5.5 s" in output
    # The first example pays the import of Keras (6.1 s of CPU here) and is
    # not held to the limit; elapsed time is not judged.
    code, output = check(tmp_path, CLEAN, "examples", "5")
    assert code == 0, output
