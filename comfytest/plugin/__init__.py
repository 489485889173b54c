"""The pytest layer: ``hooks`` is the ``pytest11`` entry point (options, the ``comfy`` fixture,
session state, report hooks); ``collection`` turns workflow files into items, ``case`` runs one
case end to end, ``session`` holds a session's servers, ``reporting`` writes the reports at the
end, ``scheduling`` is pytest-xdist glue. Only ``hooks`` and ``collection`` import pytest.

Importing this package imports nothing: the CLI commands use ``settings`` and ``session``
without loading pytest's hooks."""
