"""README's install block, run as written (paths moved under a temporary root) against the tests'
Dovecot and SMTP receiver: it must end in a passing `check-config`, so README cannot drift from
the code. Lines that need root, the network or systemd are skipped, but must still be there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.systemd_units import SERVICE, TEMPLATE, parse_unit, single

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARKER = "<!-- install-steps"
VENV = "/opt/conduct-inbox"
#: Moved under the temporary root.
MOVED = ("/etc/conduct-inbox", "/opt/conduct-inbox", "/var/lib/conduct-inbox", "/usr/local/bin")
#: README lines replaced by the package this test already runs (no download, no root).
REPLACED = {
    "apt-get install -y python3-venv": None,
    f"python3 -m venv {VENV}": "install -d {root}/opt/conduct-inbox/bin && ln -s {script} {root}/opt/conduct-inbox/bin/conduct-inbox",
    f"{VENV}/bin/pip install .": None,
}
SKIPPED = re.compile(r"^(systemctl|journalctl)\b|/etc/systemd/")


def install_blocks() -> list[str]:
    """The shell blocks README marks with `<!-- install-steps ... -->`, in order."""
    blocks = re.findall(re.escape(MARKER) + r"[^\n]*-->\n```sh\n(.*?)```", README.read_text(), re.S)
    assert blocks, f"README has no {MARKER} block"
    return blocks


def strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def script_for(root: Path, imap_password: str, smtp_password: str) -> str:
    console = shutil.which("conduct-inbox", path=str(Path(sys.executable).parent))
    assert console, "conduct-inbox console script not installed next to this Python"
    lines, replaced = ["set -euxo pipefail"], set()
    for block in install_blocks():
        for raw in block.splitlines():
            line = strip_comment(raw)
            if not line:
                continue
            if line in REPLACED:
                replaced.add(line)
                if REPLACED[line] is None:
                    continue
                line = REPLACED[line].format(root=root, script=console)
            elif SKIPPED.search(line):
                continue
            else:
                for path in MOVED:
                    line = line.replace(path, f"{root}{path}")
                line = line.replace("THE IMAP PASSWORD", imap_password).replace("THE SMTP PASSWORD", smtp_password)
            lines.append(line)
    assert replaced == set(REPLACED), f"README no longer has: {set(REPLACED) - replaced}"
    return "\n".join(lines) + "\n"


def test_install_block_installs_into_the_venv_the_units_run():
    text = "\n".join(install_blocks())
    assert f"python3 -m venv {VENV}" in text and f"{VENV}/bin/pip install ." in text
    assert "install -d -m 0700 /etc/conduct-inbox/credentials /var/lib/conduct-inbox" in text
    assert text.rstrip().splitlines()[-1].endswith("check-config")
    for unit, config in ((SERVICE, "/etc/conduct-inbox/config.toml"), (TEMPLATE, "/etc/conduct-inbox/%i/config.toml")):
        parsed = parse_unit(unit)
        assert single(parsed, "Service", "ExecStart") == f"{VENV}/bin/conduct-inbox run --config {config}"
        assert single(parsed, "Service", "ExecStartPre") == f"{VENV}/bin/conduct-inbox db upgrade --config {config}"
    # The unit files README copies exist.
    for name in re.findall(r"systemd/(\S+\.service)", README.read_text()):
        assert (REPO / "systemd" / name).is_file(), name


def test_readme_install_steps_end_in_a_passing_check_config(tmp_path: Path, dovecot, smtp_receiver):
    root = tmp_path / "root"
    root.mkdir()
    (root / "usr/local/bin").mkdir(parents=True)
    # The example's SMTP user, with the password README's step writes to credentials/smtp-password.
    smtp_receiver.require_auth = ("conduct@example.org", "smtp-test-secret")
    script = script_for(root, dovecot.password, "smtp-test-secret")
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith("CONDUCT_INBOX_") and key != "CREDENTIALS_DIRECTORY"
    }
    env["PATH"] = f"{root}/usr/local/bin:/usr/bin:/bin"
    # The admin's edits of config.toml ("edit: mailbox, smtp, database, roster"), as environment
    # overrides; the secrets come from the files README's steps wrote (no *_file override).
    env.update({
        "CONDUCT_INBOX_MAILBOX__HOST": dovecot.host,
        "CONDUCT_INBOX_MAILBOX__PORT": str(dovecot.port),
        "CONDUCT_INBOX_MAILBOX__SECURITY": "none",
        "CONDUCT_INBOX_MAILBOX__USERNAME": dovecot.new_user(),
        "CONDUCT_INBOX_SMTP__HOST": smtp_receiver.host,
        "CONDUCT_INBOX_SMTP__PORT": str(smtp_receiver.port),
        "CONDUCT_INBOX_SMTP__SECURITY": "none",
        "CONDUCT_INBOX_DATABASE__URL": f"sqlite:///{root}/var/lib/conduct-inbox/cases.db",
    })
    result = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    for line in ("templates: ok", "database: ok", "mailbox: ok", "smtp: ok"):
        assert line in result.stdout, result.stdout
    credentials = root / "etc/conduct-inbox/credentials"
    assert credentials.stat().st_mode & 0o777 == 0o700
    assert (root / "var/lib/conduct-inbox").stat().st_mode & 0o777 == 0o700
    assert {p.name for p in credentials.iterdir()} == {"imap-password", "smtp-password", "token-secret"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in credentials.iterdir())
    assert (root / "var/lib/conduct-inbox/cases.db").is_file()
