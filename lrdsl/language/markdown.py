"""The language reference in Markdown, generated from the catalogue.

``lrdsl list --markdown`` prints :func:`markdown_table` (the table of every primitive and
operator) and :func:`markdown_reference` (one section per primitive); docs/language.md holds
both verbatim, and a test keeps it so, so that a new primitive reaches the docs with no hand edit.
"""

from __future__ import annotations

from lrdsl.language.catalogue import PRIMITIVES

#: the operators, for the language table (their rules live in nodes.py and plan.py)
OPERATORS = (
    ("a >> b", "`a` for its duration, then `b` with its own clock from 0; one unbounded segment "
               "before a bounded last one stretches to fill `total`", "SequentialLR"),
    ("a + b, a - b", "pointwise sum and difference (a difference must provably stay ≥ 0)", "—"),
    ("a * b, k * a", "pointwise product", "—"),
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
