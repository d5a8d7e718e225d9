"""The language reference in Markdown, generated from the catalogue.

``lrdsl list --markdown`` prints :func:`markdown_table` (the table of every primitive and
operator) and :func:`markdown_reference` (one section per primitive); docs/language.md holds
both verbatim, and a test keeps it so, so that a new primitive reaches the docs with no hand edit.
"""

from __future__ import annotations

import textwrap

from lrdsl.language.catalogue import PRIMITIVES

#: the operators, for the language table (their rules live in nodes.py and plan.py)
OPERATORS = (
    ("a >> b", "`a` for its duration, then `b` with its own clock from 0; one unbounded segment "
               "before a bounded last one stretches to fill `total`", "SequentialLR"),
    ("a + b, a - b", "pointwise sum and difference (a difference must provably stay ≥ 0)", "—"),
    ("a * b, k * a", "pointwise product", "—"),
    ("a / b", "pointwise quotient, left-associative with `*`; the divisor must provably stay > 0",
     "REX (pytorch_optimizer REXScheduler); Keras InverseTimeDecay as `lr / (1 + …)`"),
    ("a[s:e]", "a(s + min(t, e − s)): a time slice, either end optional; holds a(e) past e",
     "timm warmup_prefix=False; Noam's 1-based step"),
    ("a | plateau(…)", "min(a(t), max(a(t)·s, min)), the scale s lowered on plateau (top level only)",
     "ReduceLROnPlateau"),
)


def markdown_table() -> str:
    """The README's language table: every primitive's signature, formula and native counterpart.

    Printed by ``lrdsl list --markdown``; a test holds the README to it.
    """
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    rows = ["| expression | value at t (x = min(t, d)/d) | native counterpart |", "|---|---|---|"]
    for primitive in PRIMITIVES.values():
        summary = primitive.doc.split("\n\n")[0]
        rows.append(f"| `{cell(primitive.signature())}` | {cell(summary)} | {cell(primitive.native) or '—'} |")
    for syntax, meaning, native in OPERATORS:
        rows.append(f"| `{cell(syntax)}` | {cell(meaning)} | {cell(native)} |")
    return "\n".join(rows)


def markdown_glance() -> str:
    """The README's language at a glance: every primitive and operator by name, grouped —
    time schedules (a formula), combinators (they take schedules), operators and units.

    Printed by ``lrdsl list --glance``; a test holds the README to it, so a new primitive
    reaches the README with no hand edit.
    """
    timed = [p for p in PRIMITIVES.values() if p.value is not None]
    combinators = [p for p in PRIMITIVES.values() if p.value is None and p.name != "plateau"]

    def names(items):
        return " ".join(f"`{item}`" for item in items)
    return "\n".join([
        "| | |", "|---|---|",
        f"| time schedules | {names(p.name for p in timed)} |",
        f"| combinators | {names(p.signature() for p in combinators)} |",
        "| operators | " + names(part.strip().replace("|", "\\|") for syntax, _, _ in OPERATORS
                                  for part in syntax.split(",") if not part.strip().startswith("k ")) + " |",
        "| durations | `30` ticks, `5ep`, `500st`, `10%` of total, `64sp`, `2k tok`; suffixes `k M B T` |",
    ])


#: the width the generated prose is wrapped to (the docs' line length)
WIDTH = 100


def _paragraph(text: str, indent: str = "") -> str:
    """One paragraph of a docstring, its lines joined and wrapped to WIDTH."""
    return textwrap.fill(" ".join(text.split()), WIDTH, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def markdown_reference() -> str:
    """docs/language.md's "Every primitive" section: one entry per primitive, from its catalogue
    entry — signature, meaning (the entry's docstring), formula (the docstring of its ``value``),
    parameters with their defaults and conditions, native counterpart and an example.

    Printed by ``lrdsl list --reference``; a test holds docs/language.md to it.
    """
    out: list[str] = []
    for primitive in PRIMITIVES.values():
        out += [f"### {primitive.name}", "", f"`{primitive.signature()}`", ""]
        out += [part for paragraph in primitive.doc.split("\n\n") for part in (_paragraph(paragraph), "")]
        if primitive.value is not None and primitive.value.__doc__:
            out += [_paragraph("Formula, as computed: " + primitive.value.__doc__), ""]
        out += [_paragraph(f"- `{param.name}`: {param.words()}", "  ") for param in primitive.params]
        out.append("")
        if primitive.native:
            out += [_paragraph(f"Native counterpart: {primitive.native}."), ""]
        out += [f"Example: `{primitive.example}`", ""]
    return "\n".join(out).rstrip("\n")
