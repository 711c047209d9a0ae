"""`[templates] dir`: overrides by file name, resolved against the config file's folder, checked by check-config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conduct_inbox.cases.render import SAMPLES, Renderer, check_templates, shipped_names
from conduct_inbox.cli import main
from conduct_inbox.config import load_settings
from conduct_inbox.errors import ConfigError
from conduct_inbox.shell.daemon import run_once
from tests.harness import MEMBERS, parsed, report, text_of

README = Path(__file__).resolve().parents[2] / "README.md"


def _with_templates(harness, folder: str, files: dict[str, str]) -> Path:
    """Put override files under the harness's config folder and point `[templates] dir` at them."""
    target = harness.folder / folder
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text)
    harness.extra_config = f'[templates]\ndir = "{folder}"\n'
    return target


def test_shipped_templates_render_with_their_sample_values():
    assert sorted(SAMPLES) == shipped_names()
    assert check_templates() == ([], [])


def test_readme_lists_every_template_and_its_variables():
    text = README.read_text()
    for name in shipped_names():
        [row] = [line for line in text.splitlines() if line.startswith(f"| `{name}.txt.j2` |")]
        for variable in SAMPLES[name][0]:
            assert f"`{variable}`" in row, (name, variable)


def test_override_is_used_by_file_name_relative_to_the_config_folder(harness, smtp_receiver, tmp_path, monkeypatch):
    _with_templates(harness, "mail-texts", {
        "ack.txt.j2": "OUR OWN WORDING for case {{ ref }}: a member answers within {{ ack_time }}, "
                      "a full answer within {{ response_time }}.\n",
    })
    monkeypatch.chdir(tmp_path)  # not the config file's folder: the relative dir must not depend on it
    settings = harness.settings()
    assert settings.templates.dir == str((harness.folder / "mail-texts").resolve())
    harness.deliver(report(sender="reporter@example.net"))
    app = harness.app()
    run_once(app)
    smtp_receiver.wait_for(1 + len(MEMBERS))
    [ack] = smtp_receiver.to("reporter@example.net")
    text = text_of(ack).strip()
    assert re.fullmatch(r"OUR OWN WORDING for case 2026-\d{4}: a member answers within 24 hours, "
                        r"a full answer within one week\.", text)
    assert parsed(ack)["Subject"].endswith("Your report has been received")  # the neutral subject stays
    # Templates not overridden stay the shipped ones.
    assert "New report: case" in text_of(smtp_receiver.to("alice@example.org")[0])


def test_templates_dir_absolute_env_and_missing(harness, tmp_path):
    absolute = tmp_path / "abs-templates"
    absolute.mkdir()
    harness.extra_config = f'[templates]\ndir = "{absolute}"\n'
    assert load_settings(harness.config_path, environ={}).templates.dir == str(absolute.resolve())
    elsewhere = harness.folder / "from-env"
    elsewhere.mkdir()
    env = {"CONDUCT_INBOX_TEMPLATES__DIR": "from-env"}
    assert load_settings(harness.config_path, environ=env).templates.dir == str(elsewhere.resolve())
    with pytest.raises(ConfigError) as raised:
        load_settings(harness.config_path, environ={"CONDUCT_INBOX_TEMPLATES__DIR": "no-such-folder"})
    [line] = raised.value.problems
    assert line.startswith("templates.dir:") and "no-such-folder" in line and "not a folder" in line


def test_no_templates_dir_means_shipped_templates(harness):
    assert harness.settings().templates.dir == ""
    shipped = Path(Renderer(None).source("ack")[1])
    assert shipped.name == "ack.txt.j2" and "{{ ack_time }}" in shipped.read_text()


@pytest.mark.parametrize("name, text, expect", [
    ("ack.txt.j2", "Case {{ ref }}, dear {{ reporter_name }}.\n", "undefined variable reporter_name"),
    ("ack.txt.j2", "{% if urgent %}{{ police_number }}{% endif %}Case {{ ref }}\n", "undefined variable police_number"),
    ("report.txt.j2", "{% if auto %}New report {{ ref }}\n", "syntax error"),
    ("escalation.txt.j2", "{{ ref | no_such_filter }}\n", "syntax error"),
    ("to_party.txt.j2", "{{ text.upper() }} {{ ref + 1 }}\n", "cannot render"),
])
def test_check_config_reports_a_broken_override_in_one_line(harness, capsys, name, text, expect):
    folder = _with_templates(harness, "texts", {name: text})
    code = main(["check-config", "--config", str(harness.config_path)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("template ")]
    assert len(lines) == 1
    [line] = lines
    assert line.startswith(f"template {folder.resolve() / name}: ") and expect in line
    assert "Traceback" not in err + out
    assert "templates: ok" not in out


def test_check_config_accepts_a_good_override_and_warns_about_a_stray_file(harness, capsys):
    folder = _with_templates(harness, "texts", {
        "ack.txt.j2": "Case {{ ref }}{% if urgent %} (urgent){% endif %}: within {{ ack_time }}.\n",
        "acknowledgement.txt.j2": "misnamed\n",
    })
    main(["check-config", "--config", str(harness.config_path)])
    out, err = capsys.readouterr()
    assert f"templates: ok (overrides from {folder.resolve()})" in out
    assert f"warning: template {folder.resolve() / 'acknowledgement.txt.j2'}: replaces no shipped template" in out
    assert not [line for line in err.splitlines() if line.startswith("template ")]


def test_run_refuses_to_start_with_a_broken_override(harness, capsys):
    folder = _with_templates(harness, "texts", {"ack.txt.j2": "{{ ref }\n"})
    assert main(["run", "--once", "--config", str(harness.config_path)]) == 2
    err = capsys.readouterr().err
    assert f"template {folder.resolve() / 'ack.txt.j2'}: line 1: syntax error" in err and "Traceback" not in err


def test_samples_list_exactly_the_variables_the_code_gives(harness, smtp_receiver, monkeypatch):
    """check-config's samples cannot drift from the code: a new variable must be listed (and documented)."""
    given: dict[str, set[str]] = {}
    original = Renderer.render

    def recording(self, name, **context):
        given.setdefault(name, set()).update(context)
        return original(self, name, **context)

    monkeypatch.setattr(Renderer, "render", recording)
    harness.deliver(report(sender="one@example.net"))
    harness.deliver(report(sender="two@example.net", body="I feel unsafe."))
    harness.deliver(report(sender="three@example.net", headers={"X-Spam-Flag": "YES"}))
    run_once(harness.app())
    assert {"ack", "report"} <= set(given)
    for name, variables in given.items():
        assert variables == set(SAMPLES[name][0]), name
