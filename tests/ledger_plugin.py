"""A pytest plugin that prints the ledger checker's tables in the terminal summary.

``make test`` runs ``pytest -q``, which hides what tests print. Fault scenarios call
:func:`publish` with their report; at the end of the session this plugin writes every
published table under a "ledger checker" heading, whatever the verbosity.

Load it with ``pytest_plugins = ["ledger_plugin"]`` in ``tests/conftest.py``; until then
``tests/test_faults.py`` registers it at run time (:func:`ensure_registered`).
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger_checker import LedgerReport, format_table

PLUGIN_NAME = "ledger_plugin"

_reports: list[LedgerReport] = []
_notes: list[str] = []


def publish(report: LedgerReport, note: str = "") -> None:
    """Remember ``report`` (and an optional note) for the terminal summary; also print it."""
    _reports.append(report)
    if note:
        _notes.append(f"{report.scenario}: {note}")
    print(f"\n{report.table()}" + (f"\n{note}" if note else ""), flush=True)


def ensure_registered(config: pytest.Config) -> None:
    """Register this module as a plugin unless conftest already loaded it."""
    import sys

    module = sys.modules[__name__]
    manager = config.pluginmanager
    if not manager.is_registered(module) and manager.get_plugin(PLUGIN_NAME) is None:
        manager.register(module, PLUGIN_NAME)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _reports:
        return
    terminalreporter.write_sep("=", "ledger checker: fault scenarios")
    terminalreporter.write_line(format_table(_reports))
    for note in _notes:
        terminalreporter.write_line(note)
