"""Shared fixtures: real servers on loopback (see tests/fixtures/)."""

pytest_plugins = [
    "tests.fixtures.dovecot",
    "tests.fixtures.smtp_receiver",
    "tests.fixtures.database",
    "tests.fixtures.pg_cluster",
    "tests.fixtures.oauth_server",
    "tests.fixtures.dovecot_oauth",
    "tests.fixtures.smtp_receiver_oauth",
]


import pytest  # noqa: E402

from tests.harness import Harness  # noqa: E402


@pytest.fixture
def harness(dovecot, smtp_receiver, database):
    """A daemon wired to a fresh Dovecot user, the aiosmtpd receiver and the test database."""
    h = Harness(dovecot, smtp_receiver, database.url, dovecot.new_user())
    yield h
    h.close()
