"""Test sessions: `nox` runs lint, typecheck and tests.

`nox -s tests -- -k boot` passes extra arguments to pytest.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff over the package, the tests and this file."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "evsim_trio", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "evsim_trio", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("mypy>=1.11", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """pytest against the installed (non-editable) package, so missing package data fails."""
    # A plain install (not -e): the tests import evsim_trio from site-packages.
    session.install(".[test]")
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"EVSIM_TRIO_EXPECT_INSTALLED": "1"},
    )
