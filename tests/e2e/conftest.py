"""Fixtures for tests that run `conduct-inbox` as a child process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.daemons import Notifications
from tests.oauth_harness import OAuthSetup, with_oauth


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


@pytest.fixture
def oauth_harness(database, make_harness, dovecot_oauth, smtp_receiver_oauth, oauth_server):
    """`oauth_harness(grant, **options)`: a harness on the OAuth Dovecot and receiver whose mailbox
    and SMTP log in with tokens from the tests' authorization server (see tests/oauth_harness.py)."""

    def build(grant: str, **options: str) -> OAuthSetup:
        harness = make_harness(database.url, dovecot=dovecot_oauth, receiver=smtp_receiver_oauth)
        return with_oauth(harness, oauth_server, grant, **options)

    return build
