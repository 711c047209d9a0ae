"""Shared fixtures: real servers on loopback (see tests/fixtures/)."""

pytest_plugins = [
    "tests.fixtures.dovecot",
    "tests.fixtures.smtp_receiver",
    "tests.fixtures.database",
    "tests.fixtures.pg_cluster",
]
