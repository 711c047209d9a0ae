"""What every case service needs, passed explicitly: the roster, the mail policy, the sender,
the template renderer, the settings as plain values (`Options`) and the SLA policy.

Plain look-ups on a case that need nothing else live here too: who is recused, the subject of
case mail, the members' reply addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from conduct_inbox.cases.render import Renderer
from conduct_inbox.core import routing, sla, states, tokens
from conduct_inbox.core.classify import Policy
from conduct_inbox.core.commands import title_of
from conduct_inbox.core.promises import Promises
from conduct_inbox.core.roster import Person, Roster
from conduct_inbox.mail.compose import Sender
from conduct_inbox.store.models import Case


@dataclass(frozen=True)
class Options:
    """The settings the case services need, as plain values."""

    committee_name: str
    case_tag: str = "conduct"
    max_forward_attachment_mb: float = 10
    ack_limit_per_address: int = 5
    ack_limit_window: timedelta = timedelta(hours=24)
    ack_hours: float = 24
    urgent_ack_hours: float = 1
    response_days: float = 7
    token_secret: bytes = b""
    previous_token_secret: bytes = b""
    trusted_authserv_id: str = ""
    severe_decisions: tuple[str, ...] = ("public-reprimand", "temporary-ban", "permanent-ban")
    urgent_phrases: tuple[str, ...] = ()
    steering_address: str = ""
    #: IANA zone in which committee mail states due times (committee.timezone).
    timezone: str = "UTC"
    #: "changes": commands that change a case are announced to the other members; "none".
    announce: str = "changes"
    #: Taking in again, after a restore from a backup, reports that were processed before it:
    #: their reporters were acknowledged then, and commands and delivery reports are not replayed.
    recovering: bool = False

    @property
    def promises(self) -> Promises:
        """The `[sla]` times as promised to reporters (the acknowledgement states them)."""
        return Promises(self.ack_hours, self.urgent_ack_hours, self.response_days)

    @property
    def secrets(self) -> list[bytes]:
        """The secrets a token or VERP address may be signed with (current, then previous; empty ones skipped)."""
        return [k for k in (self.token_secret, self.previous_token_secret) if k]


@dataclass
class Context:
    """The bundle handed to every case service. `options` may be replaced (a restore's recovery
    run sets `recovering`); everything else is fixed for the life of one configuration."""

    roster: Roster
    policy: Policy
    sender: Sender
    renderer: Renderer
    options: Options
    #: None: only the plain acknowledgement deadline of a new case, no SLA clocks.
    sla_policy: sla.SlaPolicy | None = field(default=None)


def recused(case: Case | None) -> routing.Exclusions:
    """The members recused from the case, with their reasons; and whether the steering members
    work on it (escalated to them, `cases.steering_since`, or under reconsideration)."""
    if case is None:
        return routing.Exclusions()
    return routing.Exclusions({r.member_email: r.reason for r in case.recusals if r.active},
                              steering_works=case.steering_since is not None or case.status == states.RECONSIDERATION)


def works_on(ctx: Context, case: Case, email: str) -> bool:
    """`routing.works_on` for the stored case."""
    return routing.works_on(ctx.roster, recused(case), email)


def subject(ctx: Context, case: Case, extra: str = "") -> str:
    """Every case subject we send: `[tag #REF] title`, the title as safe to show as `title_of` makes it."""
    title = title_of(case.title)
    return f"[{ctx.options.case_tag} #{case.ref}] {extra + ' ' if extra else ''}{title}".strip()


def member_reply_to(ctx: Context, case: Case | None, person: Person) -> str | None:
    """The member's reply address for the case (their case token)."""
    if case is None or not ctx.options.token_secret:
        return None
    token = tokens.mint(ctx.options.token_secret, "case", case.ref, person.email)
    return tokens.reply_address(ctx.policy.local_part, ctx.policy.domain, token)


def personal_reply_to(ctx: Context, person: Person) -> str | None:
    """The member's personal reply address (case-less commands)."""
    if not ctx.options.token_secret:
        return None
    token = tokens.mint(ctx.options.token_secret, "personal", None, person.email)
    return tokens.reply_address(ctx.policy.local_part, ctx.policy.domain, token)
