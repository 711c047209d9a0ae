"""Fixtures for tests that run `conduct-inbox` as a child process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.daemons import Notifications


@pytest.fixture
def notify() -> Iterator[Notifications]:
    n = Notifications()
    yield n
    n.close()


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts; any still running at the end are killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
