"""SIGHUP: read the configuration file again and work out what of it applies while running.

What applies from the next message on: the roster (committee members, aliases, chair, quorum,
steering), the rest of `[committee]` but its address and case tag, `[sla]`, `[retention]` and
`[templates]`; a new OAuth2 refresh token or client secret (`conduct-inbox oauth login`) from the
next token request on. Everything else (database, mailbox, SMTP, security keys and secrets, `[intake]`,
`[log]`, `[metrics]`, the committee's address and case tag) is read only at start: a change to it is named
in one log line and waits for a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from conduct_inbox.config import Settings, load_settings
from conduct_inbox.errors import ConfigError

log = logging.getLogger(__name__)

#: Sections that apply whole at run time.
LIVE_SECTIONS = frozenset({"steering", "sla", "retention", "templates"})
#: `[committee]` keys that need a restart (our From address and the case references we issued).
FIXED_COMMITTEE_KEYS = ("address", "case_tag")
#: `[oauth2]` secrets that apply at once (after `conduct-inbox oauth login`, a new client secret):
#: the next token request uses them. The identity itself (provider, client, tenant, ...) needs a restart.
LIVE_OAUTH2_KEYS = ("client_secret", "refresh_token")


@dataclass(frozen=True)
class Reloaded:
    #: The settings to use from now on: the new file's live parts, the old ones' fixed parts.
    settings: Settings
    #: "section.key" of every change that waits for a restart (names only, never values).
    needs_restart: list[str]


def merge(old: Settings, new: Settings) -> Reloaded:
    """The running settings `old` with the live parts of `new`."""
    updates: dict[str, object] = {}
    restart: list[str] = []
    for section in Settings.model_fields:
        before, after = getattr(old, section), getattr(new, section)
        if section in LIVE_SECTIONS:
            updates[section] = after
            continue
        keys = type(before).model_fields
        if section == "oauth2":
            updates[section] = before.model_copy(update={k: getattr(after, k) for k in LIVE_OAUTH2_KEYS})
            keys = {k: None for k in keys if k not in LIVE_OAUTH2_KEYS}
        if section == "committee":
            updates[section] = after.model_copy(update={k: getattr(before, k) for k in FIXED_COMMITTEE_KEYS})
            keys = {k: None for k in FIXED_COMMITTEE_KEYS}
        restart += [f"{section}.{key}" for key in keys if getattr(before, key) != getattr(after, key)]
    merged = old.model_copy(update=updates)
    merged._config_path = old.config_path
    return Reloaded(merged, restart)


def reload_settings(old: Settings) -> Reloaded:
    """Read `old`'s file again (with the same environment and credentials); raise ConfigError
    (one line per problem, never a value) if the file or a template in it is not valid."""
    from conduct_inbox.cases.render import check_templates

    new = load_settings(old.config_path)
    broken = check_templates(new.templates.dir or None)[0]
    if broken:
        raise ConfigError(broken)
    return merge(old, new)
