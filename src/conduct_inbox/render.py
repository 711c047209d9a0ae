"""Mail texts from Jinja2 templates (StrictUndefined: a missing value is an error, not a blank)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2

from .mail.parse import REPLY_MARKER


class Renderer:
    """Renders `templates/NAME.txt.j2`; an admin's override folder is searched first."""

    def __init__(self, override_dir: str | Path | None = None):
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
