"""The parts built from Settings: the one place adapters are chosen and case services configured.

shell/app.py assembles them into an App, shell/wiring.py an App and its Daemon."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from conduct_inbox.cases.context import Context, Options
from conduct_inbox.cases.deadlines import sla_policy
from conduct_inbox.cases.inbound import Inbound, on_delivery_failure
from conduct_inbox.cases.render import Renderer
from conduct_inbox.config import Settings
from conduct_inbox.core.classify import Policy
from conduct_inbox.core.roster import Roster, roster_from_settings
from conduct_inbox.mail.compose import Sender
from conduct_inbox.ports import Mailbox
from conduct_inbox.ports import Sender as Transport
from conduct_inbox.store.models import OutboxMessage
from conduct_inbox.store.outbox import Backoff, Dispatcher

if TYPE_CHECKING:
    from conduct_inbox.adapters.oauth2 import OAuth2Config, TokenSource


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def make_policy(settings: Settings) -> Policy:
    return Policy(
        address=settings.committee.address.lower(),
        own_list_ids=tuple(settings.mailbox.own_list_ids),
        spam_header=settings.intake.spam_header,
        spam_value=settings.intake.spam_value,
        trusted_authserv_id=settings.security.trusted_authserv_id,
    )


def make_inbound(settings: Settings, roster: Roster | None = None) -> Inbound:
    """The case services for these settings (the intake's entry point, and the context the
    escalations and chores take: `.ctx`)."""
    return Inbound(make_context(settings, roster))


def make_context(settings: Settings, roster: Roster | None = None) -> Context:
    """What the case services need to know of these settings: roster, policy, options, templates, SLA."""
    options = Options(
        committee_name=settings.committee.name,
        case_tag=settings.committee.case_tag,
        max_forward_attachment_mb=settings.intake.max_forward_attachment_mb,
        ack_limit_per_address=settings.intake.ack_limit_per_address,
        ack_limit_window=timedelta(hours=settings.intake.ack_limit_window_hours),
        ack_hours=settings.sla.ack_hours,
        urgent_ack_hours=settings.sla.urgent_ack_hours,
        response_days=settings.sla.response_days,
        token_secret=settings.security.token_secret.get_secret_value().encode(),
        previous_token_secret=settings.security.previous_token_secret.get_secret_value().encode(),
        trusted_authserv_id=settings.security.trusted_authserv_id,
        severe_decisions=tuple(settings.committee.severe_decisions),
        urgent_phrases=tuple(settings.sla.urgent_phrases),
        steering_address=settings.committee.steering_address,
        timezone=settings.committee.timezone,
        announce=settings.committee.announce,
    )
    return Context(
        roster or roster_from_settings(settings),
        make_policy(settings),
        Sender(settings.committee.address.lower(), settings.committee.name),
        Renderer(settings.templates.dir or None),
        options,
        sla_policy(settings),
    )


def make_dispatcher(settings: Settings, engine: Engine, ctx: Context, transport: Transport | None = None) -> Dispatcher:
    """The outbox dispatcher; `engine` ideally made with db.make_engine(crash_safe_only=True)."""
    sender, on_failure = delivery_hooks(ctx)
    return Dispatcher(
        engine,
        transport or make_transport(settings),
        sender,
        on_failure,
        Backoff(settings.smtp.retry_initial_seconds, settings.smtp.retry_max_seconds),
        settings.smtp.batch_size,
        verp_secret=ctx.options.token_secret,
    )


def delivery_hooks(ctx: Context) -> tuple[Sender, Callable[[Session, OutboxMessage, datetime], None]]:
    """What the dispatcher takes from the case services: the From of our mail, and what a failed
    delivery does to its case (tell the committee, mark the member's address)."""
    return ctx.sender, partial(on_delivery_failure, ctx)


def oauth2_config(settings: Settings) -> OAuth2Config:
    """The OAuth2 identity of `[oauth2]`; the user is the mailbox's (the SASL user, and the user a
    Google service account impersonates), or SMTP's when only SMTP uses OAuth2."""
    from conduct_inbox.adapters.oauth2 import OAuth2Config

    o = settings.oauth2
    box = settings.mailbox
    username = box.username if box.host and box.auth == "oauth2" else (settings.smtp.username or box.username)
    return OAuth2Config(
        provider=o.provider,
        client_id=o.client_id.strip(),
        tenant=o.tenant.strip(),
        authority=o.authority,
        token_url=o.token_url,
        scopes=tuple(o.scopes),
        client_secret=o.client_secret.get_secret_value(),
        refresh_token=o.refresh_token.get_secret_value(),
        refresh_token_file=o.refresh_token_file,  # resolved by config_sources.read_secrets
        service_account=o.service_account.get_secret_value(),
        username=username,
        authorization_url=o.authorization_url,
        device_authorization_url=o.device_authorization_url,
        timeout=float(box.timeout_seconds),
    )


def make_token_source(settings: Settings) -> TokenSource | None:
    """This process's token source for `[oauth2]` (shared by every mailbox and SMTP connection;
    reloaded secrets update it), or None when nothing logs in with OAuth2."""
    if not settings.uses_oauth2():
        return None
    from conduct_inbox.adapters.oauth2 import shared_source

    return shared_source(oauth2_config(settings))


def make_mailbox(settings: Settings) -> Mailbox:
    box = settings.mailbox
    if box.host:
        from conduct_inbox.adapters.imap import ImapMailbox

        return ImapMailbox(
            box.host,
            box.port,
            box.security,
            box.username,
            box.password.get_secret_value(),
            folder=box.folder,
            processed_folder=box.processed_folder,
            quarantine_folder=box.quarantine_folder,
            timeout=float(box.timeout_seconds),
            token_source=make_token_source(settings) if box.auth == "oauth2" else None,
        )
    from conduct_inbox.adapters.maildir import MaildirMailbox

    return MaildirMailbox(box.maildir)


def make_transport(settings: Settings) -> Transport:
    smtp = settings.smtp
    if smtp.host:
        from conduct_inbox.adapters.smtp import SmtpSender

        return SmtpSender(
            smtp.host,
            smtp.port,
            smtp.security,
            smtp.username or None,
            smtp.password.get_secret_value() or None,
            timeout=float(smtp.timeout_seconds),
            connections=smtp.connections,
            token_source=make_token_source(settings) if smtp.auth == "oauth2" else None,
        )
    from conduct_inbox.adapters.maildir_sender import MaildirSender

    return MaildirSender(smtp.maildir)
