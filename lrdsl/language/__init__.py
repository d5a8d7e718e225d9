"""The language, framework-free: text -> AST -> plan -> values.

``units`` (durations, ticks) and ``floats`` (plain-float numerics) at the bottom; ``catalogue``
(the primitives' table); ``nodes`` (the AST); ``parser`` (text -> AST, the only module that
sees lark); ``plateau`` (reduce-on-plateau's rule); ``plan`` (AST -> a schedule over ticks);
``curve`` (the reference evaluator every backend is checked against); ``explain`` (what the
CLI prints).  Imports no framework (an import-linter contract in pyproject.toml).
"""
