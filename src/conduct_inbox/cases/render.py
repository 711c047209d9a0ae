"""Mail texts from Jinja2 templates (StrictUndefined: a missing value is an error, not a blank).

`SAMPLES` lists, for each shipped template, every variable the code gives it (with a sample
value); README's template table and `check_templates` (run by `conduct-inbox check-config`)
follow it. An admin's `[templates] dir` overrides a shipped template by file name.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from conduct_inbox.mail.parse import REPLY_MARKER


class Renderer:
    """Renders `templates/NAME.txt.j2`; an admin's override folder is searched first."""

    def __init__(self, override_dir: str | Path | None = None):
        self.override_dir = Path(override_dir) if override_dir else None
        loaders: list[jinja2.BaseLoader] = []
        if override_dir:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.FileSystemLoader(str(resources.files("conduct_inbox.templates"))))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain-text mail
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Committee mail carries our marker: a member's reply is read only above it.
        self._env.globals["reply_marker"] = REPLY_MARKER

    def render(self, name: str, **context: object) -> str:
        return self._env.get_template(f"{name}.txt.j2").render(**context)

    def source(self, name: str) -> tuple[str, str]:
        """The template's text and the file it comes from (the override's path, if there is one)."""
        assert self._env.loader is not None
        text, filename, _ = self._env.loader.get_source(self._env, f"{name}.txt.j2")
        return text, filename or f"{name}.txt.j2"

    @property
    def globals(self) -> Mapping[str, Any]:
        return self._env.globals

    def compile(self, name: str) -> jinja2.Template:
        return self._env.get_template(f"{name}.txt.j2")

    def parse(self, text: str) -> Any:
        return self._env.parse(text)


_MARKER = "To: Alice Example, Bob Builder (Carol Chen is recused)"
_ATTACHMENT = {"filename": "screenshot.png", "content_type": "image/png", "size_text": "120 KB", "forwarded": True, "scanned": True}
_LARGE = {"filename": "video.mp4", "content_type": "video/mp4", "size_text": "48.0 MB", "forwarded": False, "scanned": False}

#: Every shipped template with every variable the code passes it, as sample values (the first
#: dict); further dicts are variants rendered too (other branches). `reply_marker` is global.
SAMPLES: dict[str, list[dict[str, Any]]] = {
    "ack": [
        {"ref": "2026-0007", "committee_name": "Code of Conduct Committee", "case_tag": "conduct", "urgent": False,
         "ack_time": "24 hours", "ack_hours": 24, "response_time": "one week", "response_days": 7},
        {"urgent": True, "ack_time": "one hour", "ack_hours": 1},
    ],
    "alert": [{"marker": _MARKER, "text": "Case 2026-0007: outbox row 12 failed for good."}],
    "committee_note": [{"marker": _MARKER, "heading": "Announcement", "ref": "2026-0007", "text": "Sample text."}],
    "confirmation": [
        {"marker": _MARKER, "ref": "2026-0007", "done": ["acknowledged"], "problems": [], "help": "Commands: !ack, ..."},
        {"ref": None},
    ],
    "escalation": [
        {"marker": _MARKER, "ref": "2026-0007", "rule": "ack", "level": 1, "urgent": False,
         "description": "human acknowledgement overdue", "due": "Wed 25 Nov 2026 10:00 CET", "steering": False},
        {"rule": "response", "level": 0, "urgent": True, "steering": True},
        {"rule": "auto_ack_unsent", "level": 2},
    ],
    "followup": [
        {"marker": _MARKER, "heading": "Follow-up from a party", "ref": "2026-0007", "received": "2026-11-24 09:00 UTC",
         "sender": "Robin Reporter <robin@example.net>", "subject": "Re: your report", "body": "Sample text.",
         "named": ["Carol Chen"], "attachments": [_ATTACHMENT, _LARGE], "max_mb": 10},
        {"named": [], "attachments": []},
    ],
    "refusal": [
        {"marker": _MARKER, "ref": "2026-0007", "done": [], "problems": ["!close: no decision recorded"], "help": "Commands: !ack, ..."},
        {"ref": None},
    ],
    "report": [
        {"marker": _MARKER, "ref": "2026-0007", "auto": False, "spam": False, "unverified": False,
         "received": "Tue 24 Nov 2026 10:00 CET", "reporter": "Robin Reporter <robin@example.net>", "subject": "Incident",
         "acknowledged": True, "ack_reason": "", "ack_time": "24 hours", "ack_due": "Wed 25 Nov 2026 10:00 CET",
         "body": "Sample text.",
         "attachments": [_ATTACHMENT, _LARGE], "max_mb": 10},
        {"auto": True, "spam": True, "unverified": True, "acknowledged": False, "ack_reason": "automatic mail", "attachments": []},
        {"ack_due": "", "acknowledged": False, "ack_reason": "no reporter address"},
    ],
    "sanction_reminder": [
        {"marker": _MARKER, "ref": "2026-0007", "kind": "temporary-ban", "scope": "all project spaces",
         "ends_on": "2026-12-31", "days_left": 14},
    ],
    "spam_digest": [
        {"marker": _MARKER, "cases": [{"ref": "2026-0008", "received": "2026-11-24 09:00 UTC", "title": "Cheap watches"}]},
    ],
    "steering_report": [
        {"marker": _MARKER, "ref": "2026-0007", "reason": "severe decision", "status": "decided", "opened": "2026-11-24",
         "closed": "2026-12-01", "flags": "urgent", "inbound": 3, "outbound": 2,
         "decisions": [{"kinds": "warning", "target": "reported", "until": None, "status": "final"}],
         "timeline": ["2026-11-24 09:00 case opened"]},
        {"closed": None, "flags": "", "decisions": [{"kinds": "temporary-ban", "target": None, "until": "2027-01-01", "status": "final"}]},
    ],
    "to_party": [{"text": "Sample text.", "committee_name": "Code of Conduct Committee", "ref": "2026-0007"}],
    "weekly_overview": [
        {"marker": _MARKER, "zone": "Europe/Berlin", "cases": [
            {"ref": "2026-0007", "title": "Incident", "status": "investigating", "urgent": True,
             "opened": "Tue 24 Nov 2026 10:00 CET", "assignee": "Bob Builder", "due": "Tue 1 Dec 2026 10:00 CET"}]},
        {"cases": []},
    ],
}


def shipped_names() -> list[str]:
    """The shipped templates' names (file name without `.txt.j2`)."""
    folder = resources.files("conduct_inbox.templates")
    return sorted(p.name[: -len(".txt.j2")] for p in folder.iterdir() if p.name.endswith(".txt.j2"))


def check_templates(override_dir: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Render every template (the override where there is one) with the sample values.

    Returns (problems, warnings), one line each, naming the file: a syntax error, a variable the
    code does not give that template, or a failure to render. Lines carry no sample values."""
    renderer = Renderer(override_dir)
    problems: list[str] = []
    warnings: list[str] = []
    names = shipped_names()
    if renderer.override_dir is not None:
        for path in sorted(renderer.override_dir.glob("*.j2")):
            if not path.name.endswith(".txt.j2") or path.name[: -len(".txt.j2")] not in names:
                warnings.append(f"template {path}: replaces no shipped template (names: NAME.txt.j2, see README); not used")
    for name in names:
        try:
            text, filename = renderer.source(name)
        except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
            where = renderer.override_dir / f"{name}.txt.j2" if renderer.override_dir else f"{name}.txt.j2"
            what = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else type(exc).__name__
            problems.append(f"template {where}: cannot be read ({what})")
            continue
        problem = _check_one(renderer, name, text)
        if problem:
            problems.append(f"template {filename}: {problem}")
    return problems, warnings


def _check_one(renderer: Renderer, name: str, text: str) -> str:
    try:
        # Compiling for the variable list also finds unknown filters and tests.
        used = jinja2.meta.find_undeclared_variables(renderer.parse(text))
    except jinja2.TemplateSyntaxError as exc:
        return f"line {exc.lineno}: syntax error: {exc.message}"
    variants = SAMPLES.get(name, [{}])
    known = set(variants[0]) | set(renderer.globals)
    unknown = sorted(used - known)
    if unknown:
        return "undefined variable " + ", ".join(unknown) + f" (this template gets: {', '.join(sorted(variants[0]))})"
    try:
        template = renderer.compile(name)
        for variant in variants:
            template.render(**{**variants[0], **variant})
    except jinja2.TemplateSyntaxError as exc:  # in an included or extended template
        return f"line {exc.lineno}: syntax error: {exc.message}"
    except jinja2.TemplateError as exc:
        return f"cannot render: {exc.message or type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - a template's own expression failed (e.g. a filter on the wrong type)
        return f"cannot render ({type(exc).__name__})"
    return ""
