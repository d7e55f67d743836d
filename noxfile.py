"""Test sessions: `nox` runs lint, typecheck, tests and e2e (the web page in Chromium).

`nox -s tests -- -k boot` passes extra arguments to pytest.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "e2e"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff over the package, the tests and this file."""
    session.install("ruff>=0.6")
    paths = ["evsim_trio", "tests", "benchmarks", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


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
        "-m",
        "not e2e",
        *session.posargs,
        env={"EVSIM_TRIO_EXPECT_INSTALLED": "1"},
    )


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not run by default): `nox -s bench -- --stations 100,1000 --out bench.json`.

    Runs benchmarks/run_bench.py against the installed package; see BENCHMARKS.md.
    """
    session.install(".")
    session.run("python", "benchmarks/run_bench.py", *session.posargs)


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """The web page in headless Chromium: Debian's /usr/bin/chromium (.ci/run installs it).

    Playwright drives that browser through `executable_path`; never `playwright install`.
    On a machine without Chromium the session installs Debian's package (as root), or stops
    with the command to run.
    """
    if shutil.which("chromium") is None:
        if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
            session.run("apt-get", "update", "-qq", external=True)
            session.run("apt-get", "install", "-y", "-qq", "chromium", external=True)
        else:
            session.error("Chromium is missing: run `apt-get install -y chromium` as root")
    session.install(".[test]", "playwright>=1.45")
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        "e2e",
        "tests/e2e",
        *session.posargs,
        env={"EVSIM_TRIO_EXPECT_INSTALLED": "1"},
    )
