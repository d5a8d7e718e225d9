"""Schedules drawn: ``text`` (in the terminal, no dependency) and ``image`` (PNG/SVG/PDF with
matplotlib, imported when used)."""
