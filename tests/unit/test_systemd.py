"""systemd units: the daemon's contract with systemd, a clean verify, and the hardening score."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conduct_inbox.config_sources import SECRETS
from tests.systemd_units import FAILURE, SERVICE, TEMPLATE, UNIT_DIR, parse_unit, single, values

#: Keys of the template unit that name its instance's own files; every other line is the service's.
PER_INSTANCE = {"Description", "Documentation", "ExecStartPre", "ExecStart", "LoadCredential", "StateDirectory"}
MAX_EXPOSURE = 1.5
REQUIRED_CREDENTIALS = ("imap-password", "smtp-password", "token-secret")

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")


def run_analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze offline, never paging, with a deadline."""
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def verifiable_units(tmp_path: Path) -> Path:
    """Copies of both units, ExecStart pointing at a stub: the daemon need not be installed."""
    stub = tmp_path / "conduct-inbox"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = SERVICE.read_text()
    exec_start = "ExecStart=/opt/conduct-inbox/bin/conduct-inbox "
    assert exec_start in text
    text = text.replace(exec_start, f"ExecStart={stub} ").replace(
        "ExecStartPre=/opt/conduct-inbox/bin/conduct-inbox ", f"ExecStartPre={stub} "
    )
    (tmp_path / SERVICE.name).write_text(text)
    template = TEMPLATE.read_text().replace("/opt/conduct-inbox/bin/conduct-inbox ", f"{stub} ")
    (tmp_path / TEMPLATE.name).write_text(template)
    shutil.copy(FAILURE, tmp_path / FAILURE.name)
    return tmp_path


def test_service_tells_systemd_when_ready_and_is_watched():
    unit = parse_unit(SERVICE)
    assert single(unit, "Service", "Type") == "notify"
    assert single(unit, "Service", "NotifyAccess") == "main"
    assert single(unit, "Service", "WatchdogSec") == "120"
    assert single(unit, "Service", "Restart") == "on-failure"
    assert values(unit, "Service", "RestartSec")
    assert values(unit, "Unit", "StartLimitIntervalSec") and values(unit, "Unit", "StartLimitBurst")
    # Enough time to finish the current message after SIGTERM.
    assert single(unit, "Service", "TimeoutStopSec") == "60"
    assert single(unit, "Service", "ExecStart") == (
        "/opt/conduct-inbox/bin/conduct-inbox run --config /etc/conduct-inbox/config.toml"
    )
    # `systemctl reload`: SIGHUP to the daemon (tests/e2e/test_reload.py)
    assert single(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_admin_is_told_when_the_service_fails():
    unit = parse_unit(SERVICE)
    hook = single(unit, "Unit", "OnFailure")
    assert hook == "conduct-inbox-failure@%n.service"
    # The template the hook instantiates ships next to the service.
    assert (UNIT_DIR / re.sub(r"@[^.]*\.", "@.", hook)).is_file()
    failure = parse_unit(FAILURE)
    assert single(failure, "Service", "Type") == "oneshot"
    assert "%i" in single(failure, "Service", "ExecStart")


def test_secrets_come_from_credentials_the_daemon_looks_for():
    unit = parse_unit(SERVICE)
    loaded = dict(v.split(":", 1) for v in values(unit, "Service", "LoadCredential"))
    assert set(loaded) == set(REQUIRED_CREDENTIALS)
    for name, source in loaded.items():
        assert source == f"/etc/conduct-inbox/credentials/{name}"
    # Every credential name is one the configuration reads from $CREDENTIALS_DIRECTORY.
    conventional = {credential for *_, credential in SECRETS}
    assert set(loaded) <= conventional
    # The optional encryption key is offered, commented out (a missing file would fail the start).
    assert "#LoadCredential=encryption-key:/etc/conduct-inbox/credentials/encryption-key" in (
        SERVICE.read_text()
    )


def test_state_is_private_and_the_network_stays_reachable():
    unit = parse_unit(SERVICE)
    assert single(unit, "Service", "StateDirectory") == "conduct-inbox"
    assert single(unit, "Service", "StateDirectoryMode") == "0700"
    assert single(unit, "Service", "UMask") == "0077"
    assert single(unit, "Service", "ProtectSystem") == "strict"
    # Mail and database servers may be anywhere; forkserver and asyncio need AF_UNIX.
    families = set(single(unit, "Service", "RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families
    assert not values(unit, "Service", "IPAddressDeny")
    assert values(unit, "Service", "PrivateNetwork") in ([], ["no"])


@needs_analyze
def test_hardening_exposure_is_at_most_1_5():
    result = run_analyze("security", "--offline=yes", "--no-pager", SERVICE.name, cwd=UNIT_DIR)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@needs_analyze
@pytest.mark.parametrize(
    "unit_name",
    [
        "conduct-inbox.service",
        "conduct-inbox-failure@.service",
        "conduct-inbox-failure@conduct-inbox.service.service",  # the instance OnFailure= starts
        "conduct-inbox@pycon.service",  # one committee of several on the host
        "conduct-inbox-failure@conduct-inbox@pycon.service.service",
    ],
)
def test_units_verify_without_warnings(verifiable_units: Path, unit_name: str):
    unit_path = str(verifiable_units / unit_name)
    result = run_analyze("verify", "--man=no", unit_path, cwd=verifiable_units)
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values; any line naming our units is a warning.
    complaints = [line for line in result.stderr.splitlines() if "conduct-inbox" in line]
    assert complaints == [], result.stderr


# ----- several committees on one host: the template unit --------------------------------------


def test_template_unit_is_the_service_with_one_config_state_and_credentials_per_instance():
    service, template = parse_unit(SERVICE), parse_unit(TEMPLATE)
    # Same hardening, restart policy, watchdog and hook: every other line is identical.
    for section in ("Unit", "Service", "Install"):
        assert [kv for kv in template[section] if kv[0] not in PER_INSTANCE] == [
            kv for kv in service[section] if kv[0] not in PER_INSTANCE
        ], section
    config = "/etc/conduct-inbox/%i/config.toml"
    assert single(template, "Service", "ExecStart") == f"/opt/conduct-inbox/bin/conduct-inbox run --config {config}"
    assert single(template, "Service", "ExecStartPre") == f"/opt/conduct-inbox/bin/conduct-inbox db upgrade --config {config}"
    assert single(template, "Service", "StateDirectory") == "conduct-inbox/%i"
    loaded = dict(v.split(":", 1) for v in values(template, "Service", "LoadCredential"))
    assert loaded == {name: f"/etc/conduct-inbox/%i/credentials/{name}" for name in REQUIRED_CREDENTIALS}
    assert "#LoadCredential=encryption-key:/etc/conduct-inbox/%i/credentials/encryption-key" in TEMPLATE.read_text()


def test_template_unit_is_documented():
    readme = (UNIT_DIR / "README.md").read_text()
    assert "conduct-inbox@.service" in readme and "/etc/conduct-inbox/NAME/config.toml" in readme
    assert "conduct-inbox@.service" in (UNIT_DIR.parent / "README.md").read_text()


@needs_analyze
def test_template_instance_hardening_exposure_is_at_most_1_5(verifiable_units: Path):
    result = run_analyze("security", "--offline=yes", "--no-pager", "conduct-inbox@pycon.service", cwd=verifiable_units)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
