"""The command line as an admin uses it: inspect, demo, cases, members, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from conduct_inbox.cli import main

EML = Path(__file__).parent.parent / "data" / "eml"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_inspect_prints_parsed_fields_as_json():
    sample = next(EML.glob("clients/*.eml"))
    code, out = run("inspect", str(sample), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["classification"] == "new_report" and info["subject"]


def test_inspect_of_a_file_that_is_not_mail_is_a_clear_error(tmp_path, capsys):
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\x01\x02 not a mail message \xff" * 10)
    code = main(["inspect", str(junk)])
    assert code == 1
    err = capsys.readouterr().err
    assert "not a mail message" in err and "Traceback" not in err


def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text('[mailbox]\nport = "x"\n[committee]\naddress = "nope"\n')
    assert main(["cases", "list", "--config", str(config)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("config:")]
    assert any("mailbox.port" in line for line in lines) and any("committee.address" in line for line in lines)


def test_demo_runs_the_daemon_on_a_local_mailbox():
    folder = Path(tempfile.mkdtemp(prefix="ci-demo-"))
    result = subprocess.run(
        [sys.executable, "-m", "conduct_inbox.cli", "demo", "--dir", str(folder)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CONDUCT_INBOX_CONFIG": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "Open cases:" in result.stdout and "reporter robin@example.net" in result.stdout
    assert "Your report has been received" in result.stdout
    assert len(list((folder / "sent" / "new").iterdir())) == 4  # acknowledgement + three members
    code, out = run("cases", "list", "--json", "--config", str(folder / "config.toml"))
    [case] = json.loads(out)
    assert set(case) >= {"ref", "status", "urgent", "flags", "reporter", "assignee", "recused", "created_at"}
    code, out = run("members", "--config", str(folder / "config.toml"))
    assert code == 0 and out.count("personal address: conduct+") == 4
    for line in result.stderr.splitlines():  # logs carry ids, never addresses
        assert "@" not in line
