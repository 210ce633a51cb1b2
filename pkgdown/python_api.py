"""Writes the site's "Python API" article from the docstrings of kerasswa.

Run by `make site` before pkgdown, so the page always shows the code being
documented: the signature from `inspect.signature`, then the docstring, whose
Google-style sections (`Args:`, `Returns:`, `Example:`) become an argument
list, a paragraph and a Python code block.

    python pkgdown/python_api.py vignettes/articles/python-api.Rmd
"""

import inspect
import re
import sys
import textwrap

import kerasswa

# What the page documents, in order: each object with the members shown
# under it. Every name of `kerasswa.__all__` must be here (`page` checks).
SWA_MEMBERS = [
    "assign_average_vars",
    "swap_average_vars",
    "use_average_vars",
    "take_snapshot",
    "snapshot_count",
    "update_count",
    "average_variables",
]
TOPICS = [
    (kerasswa.SWA, SWA_MEMBERS),
    (kerasswa.update_bn, []),
    (kerasswa.SWALearningRateSchedule, []),
    (kerasswa.SWACallback, []),
    (kerasswa.SWAModelCheckpoint, []),
    (kerasswa.EMA, ["decay_at"]),
    (kerasswa.PowerEMA, ["gamma", "sigma_rel"]),
    (kerasswa.PostHocEMA, ["save_profiles", "gammas", "profile_variables"]),
    (kerasswa.PostHocEMACheckpoint, []),
    (kerasswa.posthoc_ema, []),
    (kerasswa.posthoc_ema_error, []),
    (kerasswa.SWAG, ["sample_vars", "use_sample_vars", "rank"]),
    (kerasswa.swag_predict, []),
]
# The R function of each Python name, for the page's introduction.
R_COUNTERPARTS = {
    "SWA": "optimizer_swa",
    "update_bn": "swa_update_bn",
    "SWALearningRateSchedule": "learning_rate_schedule_swa",
    "SWACallback": "callback_swa",
    "SWAModelCheckpoint": "callback_swa_model_checkpoint",
    "EMA": "averaging_ema",
    "PowerEMA": "averaging_power_ema",
    "PostHocEMA": "optimizer_posthoc_ema",
    "PostHocEMACheckpoint": "callback_posthoc_ema_checkpoint",
    "posthoc_ema": "posthoc_ema",
    "posthoc_ema_error": "posthoc_ema_error",
    "SWAG": "optimizer_swag",
    "swag_predict": "swag_predict",
}
SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Examples?):\s*$")
WIDTH = 79


def signature_line(qualified_name, obj):
    """`name(arg=default, ...)` without type annotations, wrapped one
    argument a line when it is long."""
    signature = inspect.signature(obj)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty)
        for p in signature.parameters.values()
        if p.name != "self"
    ]
    plain = signature.replace(
        parameters=parameters, return_annotation=inspect.Signature.empty
    )
    line = f"{qualified_name}{plain}"
    if len(line) <= WIDTH:
        return line
    arguments = ",\n".join(f"    {p}" for p in plain.parameters.values())
    return f"{qualified_name}(\n{arguments}\n)"


def split_sections(doc):
    """The docstring's text before its first section, and its sections by
    name, each as a list of lines."""
    intro, sections, current = [], {}, None
    for line in doc.splitlines():
        match = SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1).rstrip("s"), [])
        elif current is None:
            intro.append(line)
        else:
            current.append(line)
    return "\n".join(intro).strip(), sections


def argument_list(lines):
    """`name: text` items (continued on more-indented lines) as a Markdown
    definition list."""
    items = []
    for line in textwrap.dedent("\n".join(lines)).splitlines():
        match = re.match(r"^(\*{0,2}\w+)(?: \(.*?\))?:\s*(.*)$", line)
        if match:
            items.append([match.group(1), match.group(2)])
        elif line.strip() and items:
            items[-1][1] += " " + line.strip()
    return "\n\n".join(f"`{name}`\n:   {text}" for name, text in items)


def example_block(lines):
    code = textwrap.dedent("\n".join(lines)).strip("\n")
    return f"```python\n{code}\n```"


def document(heading, qualified_name, obj, kind=None):
    doc = inspect.getdoc(obj) or ""
    intro, sections = split_sections(doc)
    parts = [heading]
    if kind == "property":
        parts.append(f"```python\n{qualified_name}  # property, read-only\n```")
    else:
        parts.append(f"```python\n{signature_line(qualified_name, obj)}\n```")
    if intro:
        parts.append(intro)
    for name in ("Arg", "Argument"):
        if name in sections:
            parts.append("**Arguments**\n\n" + argument_list(sections[name]))
    if "Return" in sections:
        parts.append("**Returns**\n\n" + textwrap.dedent("\n".join(sections["Return"])).strip())
    if "Raise" in sections:
        parts.append("**Raises**\n\n" + argument_list(sections["Raise"]))
    if "Example" in sections:
        parts.append("**Example**\n\n" + example_block(sections["Example"]))
    return "\n\n".join(parts)


def page():
    header = textwrap.dedent(
        """\
        ---
        title: "Python API"
        description: >
          The public names of the Python package kerasswa, from their docstrings.
        ---

        <!-- Written by pkgdown/python_api.py from the docstrings of kerasswa
        {version} when the site is built; do not edit. -->

        The public names of the Python package `kerasswa` {version}, written
        from their docstrings when this site was built. The examples are
        doctests, which `make test` runs on the TensorFlow, JAX and PyTorch
        backends. In R, each has a counterpart (see the
        [R reference](../reference/index.html)):

        | Python | R |
        |---|---|
        {counterparts}

        {package_doc}"""
    ).format(
        version=kerasswa.__version__,
        counterparts="\n".join(f"| `{py}` | `{r}()` |" for py, r in R_COUNTERPARTS.items()),
        package_doc=inspect.getdoc(kerasswa),
    )
    documented = {obj.__name__ for obj, _ in TOPICS}
    public = set(kerasswa.__all__) - {"__version__"}
    if documented != public or set(R_COUNTERPARTS) != public:
        sys.exit(
            "pkgdown/python_api.py: TOPICS and R_COUNTERPARTS must name every public name of "
            f"kerasswa, no more: missing {sorted(public - documented) or sorted(public - set(R_COUNTERPARTS))}, "
            f"unknown {sorted(documented - public) or sorted(set(R_COUNTERPARTS) - public)}"
        )
    parts = [header]
    for obj, members in TOPICS:
        name = obj.__name__
        parts.append(document(f"## {name}", f"kerasswa.{name}", obj))
        for member in members:
            attribute = inspect.getattr_static(obj, member)
            if isinstance(attribute, property):
                parts.append(
                    document(f"### {name}.{member}", f"{name}.{member}",
                             attribute, kind="property")
                )
            else:
                parts.append(
                    document(f"### {name}.{member}()", f"{name}.{member}",
                             getattr(obj, member))
                )
    return "\n\n".join(parts) + "\n"


def main(argv):
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} OUTPUT.Rmd")
    with open(argv[1], "w", encoding="utf-8") as output:
        output.write(page())


if __name__ == "__main__":
    main(sys.argv)
