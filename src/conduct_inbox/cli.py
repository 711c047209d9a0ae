"""The `conduct-inbox` command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import select

from conduct_inbox import __version__
from conduct_inbox.config import ALL_SECRETS, Settings, load_settings
from conduct_inbox.core.recusal import common_word_aliases
from conduct_inbox.errors import ConductInboxError, ConfigError, DatabaseNotCurrent, InstanceLocked, MalformedMessage
from conduct_inbox.shell import logsetup
from conduct_inbox.shell import views as casefile
from conduct_inbox.shell.engines import engine_for
from conduct_inbox.store import db
from conduct_inbox.store.rekey import BATCH as REKEY_BATCH

if TYPE_CHECKING:
    from conduct_inbox.shell.metrics import MetricsServer

log = logging.getLogger("conduct_inbox")

OK, FAILURE, USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"conduct-inbox: {message}", file=sys.stderr)
        raise SystemExit(USAGE)


#: What read-only commands read of the secrets: the key to open sealed rows, when one is set.
#: No mail password or token secret: they run where those are not present.
READ_ONLY = frozenset({"security.encryption_key", "security.previous_encryption_key"})


def _settings(args: argparse.Namespace, secrets: frozenset[str] = ALL_SECRETS) -> Settings:
    settings = load_settings(args.config, secrets=secrets)
    logsetup.configure(args.verbose, settings.log.format)
    return settings


def _engine(settings: Settings, check: bool = True) -> Any:
    engine = engine_for(settings)
    if check:
        db.require_current(engine)
    return engine


# ----- commands ---------------------------------------------------------------------------------


def _start_metrics(settings: Settings) -> MetricsServer:
    """The `[metrics] listen` endpoint, started; a port it cannot have is a configuration problem."""
    from conduct_inbox.shell.metrics import MetricsServer

    server = MetricsServer(settings.metrics.listen, settings.database.url)
    try:
        server.start()
    except OSError as exc:
        server.close()
        raise ConfigError([f"metrics.listen: cannot listen there ({exc.strerror or type(exc).__name__})"]) from None
    return server


def cmd_run(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.app import build_app
    from conduct_inbox.shell.daemon import Daemon, run_once, watchdog_interval
    from conduct_inbox.shell.dispatch_worker import DispatchWorker
    from conduct_inbox.shell.wiring import build_daemon

    settings = _settings(args)
    from conduct_inbox.cases.render import check_templates

    broken = check_templates(settings.templates.dir or None)[0]
    if broken:  # a broken template would fail each mail it writes: refuse to start instead
        raise ConfigError(broken)
    # Forked now, before anything is opened, the dispatch worker shares this process's loaded code.
    worker = None if args.once else DispatchWorker(settings, fork_first=True)
    if worker is not None:
        worker.start()
    try:
        engine = _engine(settings)
        lock = db.InstanceLock(settings.database.url)
        lock.acquire()
        from conduct_inbox.shell.backup import require_no_pending_recovery

        require_no_pending_recovery(engine)
        from conduct_inbox.shell.components import utcnow
        from conduct_inbox.shell.recovery import recover_if_behind

        # A database restored by any means (pg_restore, a file copy) must not hand out again the
        # references the lost stretch issued: the processed folder shows the stretch.
        recover_if_behind(settings, engine, utcnow)
    except BaseException:
        if worker is not None:
            worker.stop()
        raise
    app = None
    metrics: MetricsServer | None = None
    try:
        if args.once:
            app = build_app(settings, engine=engine)
            return run_once(app)
        daemon: Daemon = build_daemon(settings, engine, watchdog_interval(), dispatch_worker=worker)
        app = daemon.app
        if settings.metrics.listen:
            metrics = _start_metrics(settings)
        asyncio.run(daemon.run())
        return OK
    finally:
        if metrics is not None:
            metrics.close()
        if worker is not None:
            worker.stop()
        if app is not None:
            app.close()
        lock.release()


def cmd_db(args: argparse.Namespace) -> int:
    settings = _settings(args, READ_ONLY)  # the schema needs no mail password or token secret
    path = db.sqlite_path(settings.database.url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = _engine(settings, check=False)
    db.upgrade(engine)
    print(f"database at revision {db.current_revision(engine)}")
    return OK


def cmd_reseal(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.retention import compact

    settings = _settings(args)
    engine = _engine(settings)
    try:
        count = db.reseal(engine)
        compact(engine)
    finally:
        engine.dispose()
    print(f"{count} row(s) written again with the encryption key")
    return OK


def cmd_backup(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.backup import backup
    from conduct_inbox.shell.components import utcnow

    settings = _settings(args, READ_ONLY)
    result = backup(settings, Path(args.dest), utcnow())
    print(f"backup written to {result.path} (taken {result.taken_at:%Y-%m-%d %H:%M:%S} UTC; "
          f"{result.folded} sent-mail record(s) folded in)")
    return OK


def _print_recovered(recovered: Any) -> None:
    found = recovered.outcomes
    print(f"recovery: {recovered.looked_at} message(s) in the processed folder since the backup point "
          f"{recovered.backup_point:%Y-%m-%d %H:%M} UTC")
    print(f"  taken in again as new cases (no second acknowledgement): {', '.join(recovered.new_cases) or 'none'}")
    print(f"  follow-ups joined again: {found['follow-up']}; known already: {found['known already']}; "
          f"commands and delivery reports not replayed: {found['not replayed']}; "
          f"unreadable: {found['quarantined'] + found['failed']}")
    for year, (low, high) in sorted(recovered.fenced.items()):
        print(f"  case references {year}-{low:04d} to {year}-{high:04d} will not be issued again")
    print("the committee has been sent a summary (it goes out when the daemon runs)")


def cmd_restore(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.backup import restore
    from conduct_inbox.shell.components import utcnow
    from conduct_inbox.shell.recovery import recover

    settings = _settings(args)
    when = restore(settings, Path(args.backup), force=args.force)
    print(f"database restored from {args.backup} (backup taken {when:%Y-%m-%d %H:%M:%S} UTC)")
    try:
        _print_recovered(recover(settings, utcnow))
    finally:
        from conduct_inbox.shell.backup import owned_like_their_folder

        owned_like_their_folder(Path(str(db.sqlite_path(settings.database.url))))
    return OK


def cmd_recover(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.components import utcnow
    from conduct_inbox.shell.recovery import recover

    settings = _settings(args)
    try:
        since = _at(args.since)
    except ValueError:
        raise ConfigError([f"--since: not a time: {args.since!r} (e.g. 2026-12-01T03:00)"]) from None
    engine = _engine(settings)
    lock = db.InstanceLock(settings.database.url)
    lock.acquire()
    try:
        _print_recovered(recover(settings, utcnow, since=since, engine=engine))
    finally:
        lock.release()
        engine.dispose()
    return OK


def cmd_rekey(args: argparse.Namespace) -> int:
    """Move every sealed value to the current encryption key (db rekey); --check only counts."""
    from conduct_inbox.errors import KeyNotConfigured
    from conduct_inbox.store.rekey import rekey, survey

    settings = _settings(args, READ_ONLY)
    try:
        engine = _engine(settings)
    except KeyNotConfigured as exc:
        print(f"conduct-inbox: {exc}", file=sys.stderr)
        return USAGE
    try:
        cipher = engine.dialect.conduct_cipher
        if cipher is None:
            print("conduct-inbox: no encryption key is configured: set security.encryption_key_file first", file=sys.stderr)
            return USAGE
        if args.check:
            left = survey(engine)
        else:
            result = rekey(engine, batch=args.batch)
            print(f"{result.moved} value(s) moved to the key with fingerprint {cipher.fingerprint_hex} "
                  f"in {result.batches} batch(es)")
            assert result.after is not None
            left = result.after
            if result.moved:
                from conduct_inbox.shell.retention import compact

                compact(engine)  # the replaced values (plain ones among them) leave the file
    except KeyNotConfigured as exc:
        print(f"conduct-inbox: {exc}", file=sys.stderr)
        return USAGE
    finally:
        engine.dispose()
    if left.done:
        print(f"every sealed value ({left.current}) is under the current key {cipher.fingerprint_hex}: "
              "the previous key may now be removed from the configuration (security.previous_encryption_key_file)")
        return OK
    where = ", ".join(f"{name} {count}" for name, count in sorted(left.left.items()))
    print(f"not done: {sum(left.left.values())} value(s) are not under the current key yet "
          f"({left.previous} under the previous key, {left.plain} plain, {sum(left.unknown.values())} under "
          f"another key; {where}): "
          "run `conduct-inbox db rekey`; keep the previous key until it reports done")
    return FAILURE


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    problems: list[str] = []
    for alias in common_word_aliases(settings):
        print(f"warning: alias {alias!r} is a common word; reports using that word will recuse its member")
    from conduct_inbox.cases.render import check_templates

    template_problems, template_warnings = check_templates(settings.templates.dir or None)
    for warning in template_warnings:
        print(f"warning: {warning}")
    if not template_problems:
        print("templates: ok" + (f" (overrides from {settings.templates.dir})" if settings.templates.dir else ""))
    try:
        engine = _engine(settings, check=False)
        db.require_current(engine)
        print("database: ok")
    except DatabaseNotCurrent as exc:
        problems.append(f"database: {exc}")
    except Exception as exc:
        from conduct_inbox.adapters.neterrors import database_in_words

        problems.append(f"database: {database_in_words(exc, settings.database.url)}")
    from conduct_inbox.shell.components import make_mailbox, make_transport

    token_ok = _check_oauth2(settings, problems)
    mailbox = make_mailbox(settings)
    transport = make_transport(settings)
    mailbox_ok = False
    if not token_ok and settings.mailbox.auth == "oauth2" and settings.mailbox.host:
        problems.append("mailbox: not tried (no OAuth2 token, see above)")
    else:
        try:
            mailbox.connect()
            print(f"mailbox: ok ({mailbox.identity})")
            mailbox_ok = True
        except ConductInboxError as exc:
            problems.append(f"mailbox: {exc}")
    try:
        login = getattr(transport, "probe", None)
        smtp_ok = True
        if login is not None and not token_ok and settings.smtp.auth == "oauth2":
            problems.append("smtp: not tried (no OAuth2 token, see above)")
            smtp_ok = False
        elif login is not None:
            outage = asyncio.run(login())
            if outage:
                problems.append(f"smtp: {outage}")
                smtp_ok = False
            else:
                print("smtp: ok")
        else:
            print("smtp: writing to a local Maildir (demo mode)")
        if args.probe and login is None:
            print("probe: skipped (demo mode: outgoing mail goes to a local Maildir, not back to the mailbox)")
        elif args.probe and mailbox_ok and smtp_ok:
            from conduct_inbox.shell.probe import probe

            failure = probe(settings.committee.address, settings.committee.name, mailbox, transport, args.probe_timeout)
            if failure:
                problems.append(failure)
            else:
                print("probe: a plus-addressed message came back: reply tokens will arrive")
    finally:
        mailbox.close()
    for problem in [*template_problems, *problems]:
        print(problem, file=sys.stderr)
    if template_problems:
        return USAGE  # a broken template is bad configuration
    return FAILURE if problems else OK


def _check_oauth2(settings: Settings, problems: list[str]) -> bool:
    """check-config's OAuth2 step: can a token be had? Prints the grant, never a token."""
    from conduct_inbox.errors import TokenUnavailable
    from conduct_inbox.shell.components import make_token_source

    source = make_token_source(settings)
    if source is None:
        return True
    try:
        source.token()
    except TokenUnavailable as exc:
        problems.append(str(exc))
        return False
    current = source.current()
    lifetime = f", valid {int(current.lifetime)} s" if current is not None else ""
    print(f"oauth2: ok ({settings.oauth2.provider}, {source.grant} grant{lifetime})")
    return True


#: What `oauth login` and `oauth status` read of the secrets.
OAUTH2_SECRETS = frozenset({"oauth2.client_secret", "oauth2.refresh_token", "oauth2.service_account"})


def _oauth2_settings(args: argparse.Namespace, secrets: frozenset[str]) -> Settings:
    settings = _settings(args, secrets)
    if not settings.uses_oauth2():
        raise ConfigError(['oauth2: neither mailbox.auth nor smtp.auth is "oauth2" (with a host set)'])
    return settings


def cmd_oauth_login(args: argparse.Namespace) -> int:
    """Get a refresh token interactively; write it to the refresh-token file with mode 0600."""
    from conduct_inbox.adapters.oauth2_login import login, write_secret_file
    from conduct_inbox.config_sources import secret_path
    from conduct_inbox.shell.components import oauth2_config

    # The refresh token is what we are about to get: its file need not exist yet.
    settings = _oauth2_settings(args, frozenset({"oauth2.client_secret"}))
    o = settings.oauth2
    if o.refresh_token.get_secret_value():
        raise ConfigError(["oauth2.refresh_token: set inline; use refresh_token_file for `oauth login` to write to"])
    config_path = settings.config_path or Path("config.toml")
    # Always the file systemd copies from (the credentials/ folder next to the config file, or an
    # absolute path), never $CREDENTIALS_DIRECTORY: that is systemd's read-only copy.
    target = secret_path(config_path.parent, "", o.refresh_token_file, "oauth2-refresh-token")
    if os.environ.get("CREDENTIALS_DIRECTORY") and not o.refresh_token_file.startswith("/"):
        print("note: $CREDENTIALS_DIRECTORY is set (systemd's read-only copy): the token goes to the credentials/ "
              "folder next to the config file, which systemd copies at the next start", file=sys.stderr)
    config = oauth2_config(settings)
    if o.provider == "microsoft" and config.client_secret:
        print("note: the device code sign-in makes a public-client refresh token: enable \"Allow public client "
              "flows\" in the app registration, and leave client_secret unset for this login", file=sys.stderr)
    token = login(config, lambda line: print(line, flush=True), timeout=args.timeout, port=args.port)
    write_secret_file(target, token)
    print(f"refresh token written to {target} (mode 0600)")
    print("the running daemon reads it at its next token request; under systemd (LoadCredential= copies credentials "
          "only at start) run `systemctl restart conduct-inbox`")
    return OK


def cmd_oauth_status(args: argparse.Namespace) -> int:
    """Which grant, whether a token can be had now and when it would expire; never a secret."""
    from conduct_inbox.errors import TokenUnavailable
    from conduct_inbox.shell.components import make_token_source

    settings = _oauth2_settings(args, OAUTH2_SECRETS)
    source = make_token_source(settings)
    assert source is not None
    o = settings.oauth2
    where = {"refresh_token": f"refresh token from {o.refresh_token_file or 'the configuration'}",
             "jwt_bearer": "Google service account, impersonating the mailbox user",
             "client_credentials": "app-only access with the client secret"}[source.grant]
    used = ", ".join(name for name, on in (("IMAP", settings.mailbox.auth == "oauth2"), ("SMTP", settings.smtp.auth == "oauth2")) if on)
    print(f"provider: {o.provider}; used for: {used}")
    print(f"grant: {source.grant} ({where})")
    print(f"scopes: {' '.join(source.config.effective_scopes) or '(none)'}")
    try:
        source.token()
    except TokenUnavailable as exc:
        print(f"refresh: fails: {exc}")
        return FAILURE
    current = source.current()
    if current is not None:
        expires = datetime.fromtimestamp(current.expires_at, timezone.utc)
        print(f"refresh: works; a token obtained now expires at {expires:%Y-%m-%d %H:%M:%S} UTC "
              f"(after {int(current.lifetime)} s; the daemon renews its own before then)")
    return OK


#: What `inspect` reads of the secrets: the token secrets to recognise reply tokens and the key
#: to open sealed rows. No mail password: inspect never connects to the mailbox or SMTP.
INSPECT_SECRETS = frozenset(
    {"security.token_secret", "security.previous_token_secret", "security.encryption_key", "security.previous_encryption_key"}
)


def _inspect_config(args: argparse.Namespace) -> tuple[Settings | None, str]:
    """The configuration inspect classifies with, or None and why not (one line, no secret)."""
    if not (args.config or os.environ.get("CONDUCT_INBOX_CONFIG") or Path("config.toml").exists()):
        return None, "no configuration file"
    try:
        return load_settings(args.config, secrets=INSPECT_SECRETS), ""
    except ConfigError as exc:
        return None, "configuration not usable: " + "; ".join(exc.problems)


def _daemon_facts(settings: Settings, msg: Any) -> tuple[Any, Any]:
    """Facts and policy as the daemon's intake would look them up (app.make_inbound, Inbound.facts),
    read in a session that is rolled back: nothing is written, nothing is sent."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy import text

    from conduct_inbox.shell.components import make_inbound

    path = db.sqlite_path(settings.database.url)
    if path is not None and not path.exists():
        raise DatabaseNotCurrent(f"no database at {path}: run `conduct-inbox db upgrade`")
    engine = engine_for(settings)
    try:
        inbound = make_inbound(settings)
        with db.session_factory(engine)() as session:
            try:
                connection = session.connection()
                current = None
                if sa_inspect(connection).has_table("alembic_version"):
                    current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if current != db.SCHEMA_HEAD:
                    raise DatabaseNotCurrent(f"database schema is at {current or 'nothing'}, code expects {db.SCHEMA_HEAD}")
                db.verify_key(session, getattr(engine.dialect, "conduct_cipher", None))
                facts = inbound.facts(session, msg)
            finally:
                session.rollback()
        return facts, inbound.policy
    finally:
        engine.dispose()


def cmd_inspect(args: argparse.Namespace) -> int:
    from conduct_inbox.core.classify import Facts, Policy, classify
    from conduct_inbox.mail.parse import parse

    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"conduct-inbox: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return FAILURE
    settings, why_not = _inspect_config(args)
    case_tag = settings.committee.case_tag if settings else "conduct"
    try:
        msg = parse(raw, case_tag=case_tag)
    except MalformedMessage as exc:
        print(f"conduct-inbox: {args.file} is not a mail message: {exc}", file=sys.stderr)
        return FAILURE
    except Exception as exc:  # never a traceback for a bad file
        print(f"conduct-inbox: {args.file} could not be parsed ({type(exc).__name__})", file=sys.stderr)
        return FAILURE
    facts, policy = Facts(), Policy(address="conduct@example.org")
    basis = ""
    if settings is not None:
        from conduct_inbox.shell.components import make_policy

        policy = make_policy(settings)
        try:
            facts, policy = _daemon_facts(settings, msg)
            basis = "database and reply tokens (as the daemon would classify it)"
        except ConductInboxError as exc:
            why_not = str(exc)
        except Exception as exc:
            from conduct_inbox.adapters.neterrors import database_in_words

            why_not = f"database: {database_in_words(exc, settings.database.url)}"
    if not basis:
        basis = f"message content alone ({why_not}): cases, reply tokens and our own mail are not recognised"
    result = classify(msg, facts, policy)
    info = {**casefile.inspect_dict(msg, result), "basis": basis}
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return OK


def cmd_cases(args: argparse.Namespace) -> int:
    settings = _settings(args, READ_ONLY)
    engine = _engine(settings)
    sessions = db.session_factory(engine)
    from conduct_inbox.core.roster import roster_from_settings

    roster = roster_from_settings(settings)
    with sessions() as session:
        if args.cases_command == "list":
            rows = casefile.list_cases(session, include_closed=args.all)
            if args.json:
                print(json.dumps(rows, indent=2, ensure_ascii=False))
            else:
                for row in rows:
                    flags = ",".join(row["flags"]) or "-"
                    print(f"{row['ref']}  {row['status']:<15} {flags:<20} {row['created_at']}  {row['title']}")
            return OK
        detail = casefile.show_case(session, args.ref, roster)
        if detail is None:
            print(f"conduct-inbox: no case {args.ref}", file=sys.stderr)
            return FAILURE
        if args.json:
            print(json.dumps(detail, indent=2, ensure_ascii=False))
        else:
            print(casefile.show_text(detail))
        return OK


def cmd_members(args: argparse.Namespace) -> int:
    from conduct_inbox.core import tokens

    settings = _settings(args)
    secret = settings.security.token_secret.get_secret_value().encode()
    local, domain = settings.committee.local_part, settings.committee.domain
    for member in settings.all_members():
        role = "steering" if settings.is_steering(member) else ("chair" if member.chair else "member")
        address = tokens.reply_address(local, domain, tokens.mint(secret, "personal", None, member.email))
        print(f"{member.name} <{member.email}>  {role}  personal address: {address}")
    return OK


def cmd_health(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.health import check

    settings = _settings(args, READ_ONLY)
    engine = _engine(settings)
    problems = check(db.session_factory(engine), settings, datetime.now(timezone.utc))
    if problems:
        for problem in problems:
            print(problem)
        return FAILURE
    print("healthy")
    return OK


def cmd_sanctions(args: argparse.Namespace) -> int:
    """The ledger of active sanctions: target, kind, scope, dates (no case contents)."""
    from conduct_inbox.store.models import Sanction

    settings = _settings(args, READ_ONLY)
    engine = _engine(settings)
    today = datetime.now(timezone.utc).date()
    with db.session_factory(engine)() as session:
        query = select(Sanction).order_by(Sanction.id)
        rows = [s for s in session.scalars(query) if args.all or s.ends_on is None or s.ends_on >= today]
    records = [
        {"case": s.case_ref, "target": s.target_address, "kind": s.kind, "scope": s.scope,
         "starts_on": s.starts_on.isoformat(), "ends_on": s.ends_on.isoformat() if s.ends_on else None}
        for s in rows
    ]
    if args.json:
        print(json.dumps(records, indent=2))
    elif not records:
        print("no active sanctions")
    for r in records if not args.json else []:
        print(f"{r['case']}  {r['kind']:<15} {r['target']}  {r['scope']}  from {r['starts_on']} until {r['ends_on'] or 'permanent'}")
    return OK


def _at(value: str | None) -> datetime | None:
    """--at as an aware time (naive means UTC); None when not given. Raises ValueError."""
    if not value:
        return None
    at = datetime.fromisoformat(value)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete the contents of cases closed longer than retention.closed_case_days (see retention.py)."""
    from conduct_inbox.shell import retention
    from conduct_inbox.shell.components import make_mailbox

    try:
        now = _at(args.at) or datetime.now(timezone.utc)
    except ValueError:
        print(f"conduct-inbox: --at {args.at!r} is not an ISO time (e.g. 2026-11-25T09:00)", file=sys.stderr)
        return USAGE
    settings = _settings(args, READ_ONLY if args.dry_run else ALL_SECRETS)
    days = settings.retention.closed_case_days
    if days <= 0:
        print("retention is off (retention.closed_case_days = 0): nothing is purged")
        return OK
    engine = _engine(settings)
    sessions = db.session_factory(engine)
    try:
        with sessions() as session:
            todo = retention.plan(session, now, days)
        verb = "would purge" if args.dry_run else "purging"
        print(f"{verb} {len(todo.cases)} case(s) closed before {todo.cutoff.date().isoformat()}, "
              f"{todo.messages} of their message(s), {todo.orphan_messages} other old message(s), "
              f"{todo.outgoing} outgoing mail(s)")
        for ref, closed in todo.cases:
            print(f"  {ref}  closed {closed.date().isoformat() if closed else '?'}")
        if args.dry_run or todo.empty:
            return OK
        mailbox = make_mailbox(settings)
        mailbox.connect()
        try:
            result = retention.purge_all(sessions, mailbox, now, days)
        finally:
            mailbox.close()
        retention.compact(engine)
        print(f"purged; {result.mailbox_copies} copies deleted from the mailbox")
        return OK
    finally:
        engine.dispose()


def cmd_report(args: argparse.Namespace) -> int:
    """Anonymous statistics: counts only, small counts hidden (see stats.py)."""
    from datetime import date

    from conduct_inbox.cases.stats import collect, render_text, to_json

    try:
        since = date.fromisoformat(args.since)
        until = date.fromisoformat(args.until) if args.until else None
    except ValueError:
        print("conduct-inbox: --since/--until take a date like 2026-01-01", file=sys.stderr)
        return USAGE
    if until is not None and until < since:
        print("conduct-inbox: --until is before --since", file=sys.stderr)
        return USAGE
    settings = _settings(args, READ_ONLY)
    engine = _engine(settings)
    try:
        with db.session_factory(engine)() as session:
            stats = collect(session, since, until)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(to_json(stats), indent=2))
    else:
        print(render_text(stats), end="")
    return OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from conduct_inbox.store.crypto import generate_key

    print(generate_key())
    return OK


def cmd_demo(args: argparse.Namespace) -> int:
    from conduct_inbox.shell.demo import run_demo

    return run_demo(Path(args.dir), keep_running=args.keep_running)


def cmd_escalations(args: argparse.Namespace) -> int:
    """What reminders and escalations are due at --at (default now), and to whom; sends nothing."""
    from conduct_inbox.cases.deadlines import sla_policy
    from conduct_inbox.cases.escalate import preview
    from conduct_inbox.shell.components import make_inbound

    at = datetime.now(timezone.utc)
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(f"conduct-inbox: --at {args.at!r} is not an ISO time (e.g. 2026-11-25T09:00)", file=sys.stderr)
            return USAGE
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at  # naive means UTC
    settings = _settings(args, READ_ONLY)
    engine = _engine(settings)
    try:
        rows = preview(db.session_factory(engine), make_inbound(settings).ctx, sla_policy(settings), at)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        print(f"nothing due at {at.isoformat()}")
    else:
        for row in rows:
            print(f"{row['ref']}  {row['rule']:<15} level {row['level']}  due {row['due_at']}  {row['key']}  "
                  f"-> {', '.join(row['recipients']) or '(nobody)'}")
    return OK


# ----- parser -----------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _common() -> argparse.ArgumentParser:
    """--config and --verbose, accepted before or after any subcommand's name.

    SUPPRESS as the default: a subcommand's parser copies only what was given on its own level
    into the result, so `--config X db upgrade` is not undone by the subcommand's default."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS,
        help="config file (default: $CONDUCT_INBOX_CONFIG, then ./config.toml)",
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="conduct-inbox", description=__doc__, parents=[common])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def command(subparsers: Any, name: str, help: str, func: Callable[[argparse.Namespace], int] | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subparsers.add_parser(name, parents=[common], help=help, description=help)
        if func is not None:
            p.set_defaults(func=func)
        return p

    p = command(sub, "run", "run the daemon", cmd_run)
    p.add_argument("--once", action="store_true", help="process what is waiting once, then exit")

    p = command(sub, "db", "database schema")
    dbsub = p.add_subparsers(dest="db_command", required=True, parser_class=_Parser, metavar="ACTION")
    command(dbsub, "upgrade", "migrate the database to the current schema", cmd_db)
    command(dbsub, "reseal", "encrypt rows written before security.encryption_key_file was set", cmd_reseal)
    p = command(dbsub, "rekey", "move every sealed value to the current encryption key (after a key rotation)", cmd_rekey)
    p.add_argument("--check", action="store_true",
                   help="only count values not yet under the current key; exit 0 when none are left")
    p.add_argument("--batch", type=_positive, default=REKEY_BATCH, metavar="ROWS",
                   help=f"rows per transaction (default {REKEY_BATCH}); a crash loses at most one batch of work")

    p = command(sub, "backup", "copy the SQLite database consistently while the daemon runs", cmd_backup)
    p.add_argument("dest", metavar="DEST", help="the backup file to write, or a folder to write a dated file in")
    p = command(sub, "restore", "put an SQLite backup in place (daemon stopped), then recover what came after", cmd_restore)
    p.add_argument("backup", metavar="BACKUP", help="a file written by `conduct-inbox backup`")
    p.add_argument("--force", action="store_true",
                   help="restore a backup whose committee address or mailbox account differs from the configuration's")
    p = command(sub, "recover", "after a restore (e.g. pg_restore): take in again the reports processed since the backup",
                cmd_recover)
    p.add_argument("--since", metavar="TIME", help="the backup point, e.g. 2026-12-01T03:00 (UTC; default: what the "
                   "database says)")

    p = command(sub, "check-config", "check configuration, database, mailbox and SMTP", cmd_check_config)
    p.add_argument("--probe", action="store_true", help="also send a test message to our own plus-address")
    p.add_argument("--probe-timeout", type=float, default=120.0, help="seconds to wait for the probe (default 120)")

    p = command(sub, "inspect", "parse and classify a message file without side effects", cmd_inspect)
    p.add_argument("file", metavar="FILE.eml", help="a message as saved by a mail client (.eml)")
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = command(sub, "cases", "list or show cases")
    csub = p.add_subparsers(dest="cases_command", required=True, parser_class=_Parser, metavar="ACTION")
    lp = command(csub, "list", "open cases (with --all: closed ones too)", cmd_cases)
    lp.add_argument("--json", action="store_true", help="print a JSON array")
    lp.add_argument("--all", action="store_true", help="include closed cases")
    sp = command(csub, "show", "one case: parties, decisions, messages, events", cmd_cases)
    sp.add_argument("ref", metavar="REF", help="a case reference, e.g. 2026-0007")
    sp.add_argument("--json", action="store_true", help="print a JSON object")

    command(sub, "members", "the roster and personal command addresses", cmd_members)
    command(sub, "health", "exit 0 when mailbox and outbox are healthy", cmd_health)
    command(sub, "keygen", "print a new random 32-byte key (encryption key or token secret)", cmd_keygen)
    p = command(sub, "report", "anonymous statistics: counts only, small counts hidden", cmd_report)
    p.add_argument("--since", required=True, help="first day, e.g. 2026-01-01 (UTC)")
    p.add_argument("--until", help="last day, inclusive (default: today)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p = command(sub, "purge", "delete contents of cases closed past retention.closed_case_days", cmd_purge)
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.add_argument("--at", help="ISO time to purge as of (default: now; without a zone: UTC)")
    p = command(sub, "sanctions", "the ledger of active sanctions", cmd_sanctions)
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--all", action="store_true", help="include sanctions that have ended")

    p = command(sub, "escalations", "reminders and escalations due at a time (sends nothing)", cmd_escalations)
    p.add_argument("--at", help="ISO time to look at (default: now; without a zone: UTC)")
    p.add_argument("--json", action="store_true", help="print a JSON array")

    p = command(sub, "oauth", "OAuth2 mail login ([oauth2]): get a refresh token, check the token")
    osub = p.add_subparsers(dest="oauth_command", required=True, parser_class=_Parser, metavar="ACTION")
    lp = command(osub, "login", "sign in interactively and write the refresh token to its credential file (mode 0600)",
                 cmd_oauth_login)
    lp.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the sign-in (default 600)")
    lp.add_argument("--port", type=int, default=0,
                    help="local port for the browser's redirect (google, generic; default: any free port)")
    command(osub, "status", "the grant in use, whether a token can be had and when it expires (no secrets)",
            cmd_oauth_status)

    p = command(sub, "demo", "run against a local demo mailbox (no mail account needed)", cmd_demo)
    p.add_argument("--dir", default="conduct-inbox-demo", help="where the demo keeps its files")
    p.add_argument("--keep-running", action="store_true", help="keep the daemon running after the sample report")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    args.verbose = getattr(args, "verbose", False)
    # imapclient logs the login name at DEBUG; aiosmtpd/aiosmtplib may log addresses (logsetup.QUIET).
    logsetup.configure(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return USAGE
    except (DatabaseNotCurrent, InstanceLocked) as exc:
        print(f"conduct-inbox: {exc}", file=sys.stderr)
        return FAILURE
    except ConductInboxError as exc:
        print(f"conduct-inbox: {exc}", file=sys.stderr)
        return FAILURE
    except KeyboardInterrupt:
        return FAILURE
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return OK


if __name__ == "__main__":
    raise SystemExit(main())
