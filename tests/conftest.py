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
def make_harness(request):
    """Builds daemons as `harness` does, for a test that needs a variant: another database URL (a
    private cluster, a second SQLite file), extra configuration, the restartable or the OAuth
    Dovecot and its receiver. Each harness it made is closed after the test. List `database` (or
    whatever gives the URL) before `make_harness` in a test's arguments, so the apps are closed
    before their database goes."""
    made: list[Harness] = []

    def make(database_url: str, *, dovecot=None, receiver=None, extra_config: str = "", user: str | None = None) -> Harness:
        dovecot = dovecot if dovecot is not None else request.getfixturevalue("dovecot")
        receiver = receiver if receiver is not None else request.getfixturevalue("smtp_receiver")
        h = Harness(dovecot, receiver, database_url, user or dovecot.new_user(), extra_config=extra_config)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def harness(request, dovecot, smtp_receiver, database, make_harness):
    """A daemon wired to a fresh Dovecot user, the aiosmtpd receiver and the test database.

    A variant by marker: `@pytest.mark.harness(extra_config="[retention]\nclosed_case_days = 30\n")`,
    or `dovecot=` a fixture's server (looked up by name, e.g. "dovecot_running")."""
    marker = request.node.get_closest_marker("harness")
    options = dict(marker.kwargs) if marker else {}
    if isinstance(options.get("dovecot"), str):
        options["dovecot"] = request.getfixturevalue(options["dovecot"])
    return make_harness(database.url, **{"dovecot": dovecot, "receiver": smtp_receiver, **options})
