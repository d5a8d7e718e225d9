"""A Griffe extension for the API pages: the docstrings' Sphinx roles (:func:`curve`,
:class:`~lrdsl.torch.Scheduler`) read as code spans (`curve`, `Scheduler`), as the rest of
their Markdown does; the source keeps its roles (mkdocs.yml, mkdocstrings ``extensions``)."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
