"""The Python recipes of the migration guide run as written.

vignettes/articles/migrating.Rmd carries one recipe per system a user
migrates from (tensorflow-addons, the SWA_keras callback, PyTorch's weight
averaging) as labelled ```{python label} chunks, knitted into the page. The
tests read those chunks from the article and run them, each in a fresh
namespace, so the page and the tests cannot drift apart. Each recipe checks
its own results with `assert`s on numbers worked out in its text.
"""

import pathlib
import re

import pytest

ARTICLE = (
    pathlib.Path(__file__).resolve().parents[2] / "vignettes" / "articles" / "migrating.Rmd"
)
RECIPES = [
    "recipe-tfa-py",
    "recipe-swa-keras-py",
    "recipe-torch-ema-py",
    "recipe-torch-manual-py",
    "pretrained-py",
]


def python_chunks(path):
    """{label: code} for each ```{python label ...} chunk of an R Markdown file."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r"^```\{python\s+([\w-]+)[^}]*\}\n(.*?)^```\s*$", re.S | re.M)
    return {label: code for label, code in pattern.findall(text)}


CHUNKS = python_chunks(ARTICLE)


def test_every_recipe_is_in_the_article():
    assert sorted(CHUNKS) == sorted(RECIPES)


@pytest.mark.parametrize("label", RECIPES)
def test_recipe_runs(label, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # files a recipe writes land here
    code = CHUNKS[label]
    exec(compile(code, f"{ARTICLE}:{label}", "exec"), {"__name__": "__recipe__"})
    assert capsys.readouterr().out.strip(), "a recipe should print its result"
