"""Attack tests for issue 13 (OAuth2): a hostile or misbehaving token endpoint, rotated refresh
tokens, the loopback listener of `oauth login`, the credential file.

Each test passes when the product holds; the ones that show a break are marked
xfail(strict=True) with the symptom."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conduct_inbox.adapters.oauth2 import OAuth2Config, TokenSource
from conduct_inbox.errors import TokenUnavailable

HOST = "127.0.0.1"
REFRESH = "SENTINEL-RT-attack13-0b5e1d"
SECRET = "SENTINEL-CS-attack13-77f2aa"


# -- a hostile HTTP endpoint ------------------------------------------------------------------


class _Hostile(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def hostile(answer: Callable[[BaseHTTPRequestHandler, bytes], None], host: str = HOST,
            tls: object = None) -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP server answering every POST with `answer(handler, body)`; yields (base URL, bodies)."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            bodies.append(body + b"\n" + str(self.headers).encode())
            answer(self, body)

        do_GET = do_POST  # noqa: N815

    server = _Hostile((host, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls is not None else 'http'}://{host}:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def generic(token_url: str, refresh: str = REFRESH, timeout: float = 30.0, **kw: object) -> OAuth2Config:
    return OAuth2Config(provider="generic", client_id="ci-app", token_url=token_url, client_secret=SECRET,
                        refresh_token=refresh, username="conduct@example.org", timeout=timeout, **kw)  # type: ignore[arg-type]


def _no_env_session():
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


# -- 1. a token endpoint that redirects elsewhere -----------------------------------------------


def _redirect_attack(make_config: Callable[[str], OAuth2Config]) -> list[bytes]:
    """The token endpoint (127.0.0.1) answers 307 to another host ("localhost", another port):
    what did that other host receive?"""
    with hostile(lambda h, b: send(h, 200, b'{"error":"invalid_grant"}'), host="localhost") as (thief, stolen):
        target = thief.replace("localhost", "localhost", 1) + "/steal"

        def redirect(handler: BaseHTTPRequestHandler, body: bytes) -> None:
            send(handler, 307, b"", {"Location": target})

        with hostile(redirect) as (url, _):
            source = TokenSource(make_config(url + "/token"), session=_no_env_session())
            with pytest.raises(TokenUnavailable):
                source.token()
    return stolen


def test_generic_token_request_does_not_follow_a_redirect_to_another_host():
    stolen = _redirect_attack(lambda url: generic(url))
    leaked = b"".join(stolen)
    assert REFRESH.encode() not in leaked and SECRET.encode() not in leaked, stolen


def test_google_token_request_does_not_follow_a_redirect_to_another_host():
    stolen = _redirect_attack(lambda url: OAuth2Config(
        provider="google", client_id="g-app", token_url=url, client_secret=SECRET, refresh_token=REFRESH,
        username="conduct@example.org"))
    leaked = b"".join(stolen)
    assert REFRESH.encode() not in leaked and SECRET.encode() not in leaked, stolen[:1]


def test_microsoft_token_request_does_not_follow_a_redirect_to_another_host(tmp_path):
    import ssl

    import requests
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with hostile(lambda h, b: send(h, 200, b'{"error":"invalid_grant"}'), host="localhost") as (thief, stolen):
        holder: dict[str, str] = {}

        def answer(handler: BaseHTTPRequestHandler, body: bytes) -> None:
            base = holder["base"]
            if handler.command == "GET":  # tenant discovery
                send(handler, 200, json.dumps({
                    "issuer": f"{base}/t1/v2.0", "authorization_endpoint": f"{base}/t1/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/t1/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/t1/oauth2/v2.0/devicecode",
                }).encode())
            else:
                send(handler, 307, b"", {"Location": thief + "/steal"})

        with hostile(answer, tls=context) as (base, _):
            holder["base"] = base
            session = requests.Session()
            session.trust_env = False
            session.verify = str(ca_file)
            config = OAuth2Config(provider="microsoft", client_id="ms-app", tenant="t1", authority=base,
                                  client_secret=SECRET, refresh_token=REFRESH, username="conduct@example.org",
                                  timeout=5)
            with pytest.raises(TokenUnavailable):
                TokenSource(config, session=session).token()
    leaked = b"".join(stolen)
    assert REFRESH.encode() not in leaked and SECRET.encode() not in leaked, stolen[:1]


def test_google_service_account_assertion_does_not_follow_a_redirect(oauth_server):
    key = oauth_server.add_service_account()
    stolen = _redirect_attack(lambda url: OAuth2Config(
        provider="google", token_url=url, service_account=json.dumps(key), username="conduct@example.org"))
    assert b"assertion=" not in b"".join(stolen), stolen[:1]


# -- 2. error codes that are really secrets -----------------------------------------------------


def test_error_code_echoing_the_refresh_token_is_not_shown(caplog):
    refresh = "d3adbeef5ca1ab1e0c0ffee0ddba11f00d4ca7e5"  # a lowercase hex refresh token, as many providers issue
    body = json.dumps({"error": refresh, "error_description": refresh}).encode()
    with hostile(lambda h, b: send(h, 400, body)) as (url, _):
        source = TokenSource(generic(url + "/token", refresh=refresh), session=_no_env_session())
        with caplog.at_level(logging.DEBUG), pytest.raises(TokenUnavailable) as info:
            source.token()
    assert refresh not in str(info.value)
    assert refresh not in caplog.text


@pytest.mark.parametrize("body", [
    b'<html>502 Bad Gateway ' + REFRESH.encode() + b'</html>',
    b'{"error_description": "' + REFRESH.encode() + b' ' + SECRET.encode() + b'"}',
    b'{"access_token": 12, "error_description": "' + REFRESH.encode() + b'"}',
    b'[1, 2, "' + REFRESH.encode() + b'"]',
    b'{"error": {"nested": "' + REFRESH.encode() + b'"}}',
    b'{"error": "Invalid_Grant ' + REFRESH.encode() + b'"}',
])
@pytest.mark.parametrize("status", [200, 400, 401, 500, 302])
def test_hostile_answers_name_no_secret(body, status, caplog):
    with hostile(lambda h, b: send(h, status, body, {"Location": "http://example.invalid/"} if status == 302 else None)) as (url, _):
        source = TokenSource(generic(url + "/token"), session=_no_env_session())
        with caplog.at_level(logging.DEBUG), pytest.raises(TokenUnavailable) as info:
            source.token()
    text = str(info.value) + caplog.text + repr(info.value.args)
    assert REFRESH not in text and SECRET not in text
    assert str(info.value).startswith("oauth2: ") and "\n" not in str(info.value)


# -- 3. expires_in as the provider likes it ---------------------------------------------------


@pytest.mark.parametrize("expires", [b'"3600"', b"-5", b"0", b'"soon"', b"null", b"1e-9", b'"NaN"', b"true", b"[]"])
def test_odd_expires_in_still_gives_a_token(expires):
    body = b'{"access_token":"at-odd-token","token_type":"Bearer","expires_in":' + expires + b"}"
    with hostile(lambda h, b: send(h, 200, body)) as (url, requests_seen):
        source = TokenSource(generic(url + "/token"), session=_no_env_session())
        assert source.token() == "at-odd-token"
        assert source.token() == "at-odd-token"  # not fetched again at once
        # A few uses within a second do not each make a token request (issue: clamp the margin).
        assert len(requests_seen) <= 2


@pytest.mark.parametrize("expires", [b"1e999", b'"1e999"', b'"Infinity"'])
def test_infinite_expires_in_is_no_crash(expires):
    body = b'{"access_token":"at-odd-token","token_type":"Bearer","expires_in":' + expires + b"}"
    with hostile(lambda h, b: send(h, 200, body)) as (url, _):
        source = TokenSource(generic(url + "/token"), session=_no_env_session())
        try:
            source.token()
        except TokenUnavailable:
            pass


# -- 4. a token endpoint that never finishes its answer -----------------------------------------


def test_trickling_token_endpoint_is_bounded_by_the_timeout():
    stop = threading.Event()

    def trickle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        handler.wfile.flush()
        while not stop.is_set():
            try:
                handler.wfile.write(b"X-Slow: a\r\n")
                handler.wfile.flush()
            except OSError:
                return
            stop.wait(0.5)

    with hostile(trickle) as (url, _):
        source = TokenSource(generic(url + "/token", timeout=2.0), session=_no_env_session())
        outcome: list[object] = []
        worker = threading.Thread(target=lambda: outcome.append(_call(source.token)), daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(15)
        elapsed = time.monotonic() - started
        stop.set()
        worker.join(5)
    assert elapsed < 12, f"token() still busy after {elapsed:.0f} s with a 2 s timeout"
    assert outcome and isinstance(outcome[0], TokenUnavailable)


def _call(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        return exc


def test_endpoint_that_accepts_and_says_nothing_times_out():
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(5)
    try:
        url = f"http://{HOST}:{listener.getsockname()[1]}/token"
        source = TokenSource(generic(url, timeout=1.0), session=_no_env_session())
        started = time.monotonic()
        with pytest.raises(TokenUnavailable) as info:
            source.token()
        assert time.monotonic() - started < 10
        assert REFRESH not in str(info.value)
    finally:
        listener.close()


def test_plain_http_token_url_to_another_host_is_refused_before_any_request():
    source = TokenSource(generic("http://192.0.2.10/token", timeout=1.0), session=_no_env_session())
    with pytest.raises(TokenUnavailable) as info:
        source.token()
    assert "https" in str(info.value)


# -- 5. rotated refresh tokens ------------------------------------------------------------------


def test_rotated_refresh_token_survives_a_restart(oauth_server, tmp_path):
    oauth_server.add_client("ci-app", SECRET)
    oauth_server.rotate_refresh_tokens = True
    oauth_server.refresh_expires_in = 4  # each refresh token lives 4 s from its issue (Microsoft: 90 days)
    oauth_server.expires_in = 3600
    file = tmp_path / "oauth2-refresh-token"
    file.write_text(oauth_server.issue_refresh_token("ci-app", "conduct@example.org") + "\n")
    file.chmod(0o600)
    config = OAuth2Config(provider="generic", client_id="ci-app", token_url=oauth_server.token_url,
                          client_secret=SECRET, refresh_token=file.read_text().strip(),
                          refresh_token_file=str(file), username="conduct@example.org", timeout=5)
    running = TokenSource(config, session=_no_env_session())
    for _ in range(4):  # the daemon keeps renewing: every new refresh token is in use
        running.token()
        running.invalidate()
        time.sleep(1.5)
    assert running.token()  # the running daemon is fine
    assert oauth_server.tokens_issued["refresh_token"] == 5
    # The daemon restarts (upgrade, reboot): a new process reads the credential file.
    restarted = TokenSource(config, session=_no_env_session())
    restarted.token()


# -- 6. oauth login's loopback listener ---------------------------------------------------------


def _start_loopback_login(oauth_server) -> tuple[threading.Thread, list[str], list[object]]:
    from conduct_inbox.adapters.oauth2_login import login

    oauth_server.add_client("g-app", SECRET)
    config = OAuth2Config(provider="generic", client_id="g-app", token_url=oauth_server.token_url,
                          client_secret=SECRET, authorization_url=oauth_server.authorization_url,
                          username="conduct@example.org", timeout=5)
    said: list[str] = []
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(_call(lambda: login(config, said.append, timeout=8))),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(line.startswith("waiting for the redirect") for line in said):
        time.sleep(0.05)
    return thread, said, result


def test_forged_redirect_code_is_not_exchanged(oauth_server):
    """Another local process sends the listener a code of its own (no valid state): it must not
    become our refresh token (login CSRF / code injection)."""
    thread, said, result = _start_loopback_login(oauth_server)
    redirect = next(line for line in said if line.startswith("waiting for the redirect")).split()[-2]
    try:
        urllib.request.urlopen(f"{redirect}?code=code-forged-by-another-process&state=guess", timeout=5).read()
    except Exception:  # noqa: BLE001
        pass
    thread.join(2)
    # Ignored: the login goes on waiting for the admin's own redirect (see the next test), and the
    # forged code never reaches the token endpoint.
    assert not result or not isinstance(result[0], str), "a forged code became our refresh token"
    assert oauth_server.token_requests["authorization_code"] == 0
    thread.join(20)  # the login ends at its own timeout
    assert result and isinstance(result[0], TokenUnavailable)
    assert oauth_server.token_requests["authorization_code"] == 0


def test_forged_redirect_does_not_abort_the_admins_login(oauth_server):
    thread, said, result = _start_loopback_login(oauth_server)
    url = next(line for line in said if line.startswith(oauth_server.authorization_url))
    redirect = next(line for line in said if line.startswith("waiting for the redirect")).split()[-2]
    try:
        urllib.request.urlopen(f"{redirect}?error=access_denied&state=guess", timeout=5).read()
    except Exception:  # noqa: BLE001
        pass
    try:
        oauth_server.visit(url, "conduct@example.org")  # the admin signs in a moment later
    except OSError:
        pass  # the listener is gone already
    thread.join(20)
    assert result and isinstance(result[0], str), result


# -- 7. the credential file ---------------------------------------------------------------------


def test_login_never_writes_through_a_symlink(tmp_path):
    from conduct_inbox.adapters.oauth2_login import write_secret_file

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    target = tmp_path / "credentials" / "oauth2-refresh-token"
    target.parent.mkdir()
    target.symlink_to(victim)
    write_secret_file(target, "rt-new")
    assert victim.read_text() == "precious\n"
    assert not target.is_symlink() and target.read_text() == "rt-new\n"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_refresh_token_file_becoming_unreadable_keeps_the_token_in_use(oauth_server, tmp_path):
    oauth_server.add_client("ci-app", SECRET)
    file = tmp_path / "rt"
    file.write_text(oauth_server.issue_refresh_token("ci-app", "conduct@example.org") + "\n")
    config = OAuth2Config(provider="generic", client_id="ci-app", token_url=oauth_server.token_url,
                          client_secret=SECRET, refresh_token=file.read_text().strip(), refresh_token_file=str(file),
                          username="conduct@example.org", timeout=5)
    source = TokenSource(config, session=_no_env_session())
    source.token()
    file.unlink()
    os.symlink("/nonexistent", file)
    source.invalidate()
    assert source.token()


_ = Path  # (kept for helpers above)


# -- 8. end to end: the daemon and the commands against a hostile token endpoint ---------------


def _point_token_url(setup, url: str) -> None:
    path = setup.harness.config_path
    text = path.read_text()
    start = text.index("[oauth2]")
    head, table = text[:start], text[start:]
    lines = [ln for ln in table.split("\n") if not ln.startswith("token_url = ")]
    path.write_text(head + "\n".join(lines).replace("[oauth2]\n", f'[oauth2]\ntoken_url = "{url}"\n', 1))


@pytest.mark.one_database
def test_sigterm_while_the_token_endpoint_trickles(dovecot_oauth, smtp_receiver_oauth, oauth_server, database,
                                                   notify, started):
    from tests.daemons import conduct_inbox, finish, set_mailbox
    from tests.harness import report

    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-refresh")
    h = setup.harness
    stop = threading.Event()

    def trickle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        handler.wfile.flush()
        while not stop.is_set():
            try:
                handler.wfile.write(b"X-Slow: a\r\n")
                handler.wfile.flush()
            except OSError:
                return
            stop.wait(0.5)

    try:
        with hostile(trickle) as (url, seen):
            _point_token_url(setup, url + "/token")
            set_mailbox(h, poll_seconds=1, timeout_seconds=3)
            h.deliver(report(sender="r1@example.net", body="waiting"))
            proc = conduct_inbox(h.config_path, "run", notify_socket=notify.path)
            started.append(proc)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not seen:
                time.sleep(0.2)
            assert seen, "the daemon never asked for a token"
            time.sleep(2)
            proc.terminate()
            code, err = finish(proc, 45)
            assert code == 0, err
            assert h.folder_count("INBOX") == 1  # nothing lost either way
    finally:
        stop.set()


@pytest.mark.one_database
def test_oauth_status_with_an_absurd_expires_in(dovecot_oauth, smtp_receiver_oauth, oauth_server, database):
    import subprocess
    import sys


    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-refresh")
    body = b'{"access_token":"at-absurd-lifetime-token","token_type":"Bearer","expires_in":1e300}'
    with hostile(lambda h, b: send(h, 200, body)) as (url, _):
        _point_token_url(setup, url + "/token")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "CREDENTIALS_DIRECTORY"))}
        done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "oauth", "status",
                               "--config", str(setup.harness.config_path)],
                              capture_output=True, text=True, timeout=60, env=env)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    assert done.returncode in (0, 1), out
    assert "at-absurd-lifetime-token" not in out


@pytest.mark.one_database
def test_token_for_another_user_is_an_outage_not_a_loss(dovecot_oauth, smtp_receiver_oauth, oauth_server, database):
    """The app's token acts as someone else (a wrong client, a wrong app permission): the mailbox
    refuses it; the report stays in INBOX, the command fails naming the mailbox's refusal."""
    import subprocess
    import sys

    from tests.harness import report
    from tests.oauth_harness import CLIENT_SECRET

    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-cc")
    h = setup.harness
    oauth_server.add_client("ci-app", CLIENT_SECRET, username="someone-else@example.org")
    h.deliver(report(sender="r1@example.net", body="for the committee"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "CREDENTIALS_DIRECTORY"))}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conduct_inbox.cli", *args, "--config", str(h.config_path)],
                              capture_output=True, text=True, timeout=120, env=env)

    assert cli("db", "upgrade").returncode == 0
    run = cli("run", "--once", "-v")
    assert run.returncode != 0, run.stderr
    assert h.folder_count("INBOX") == 1
    assert not smtp_receiver_oauth.messages
    check = cli("check-config")
    assert check.returncode == 1
    assert "mailbox refused the OAuth2 token" in check.stderr, check.stderr
    assert "Traceback" not in run.stderr + check.stderr


@pytest.mark.one_database
def test_oauth_login_under_credentials_directory_writes_where_it_says(dovecot_oauth, smtp_receiver_oauth,
                                                                      oauth_server, database, tmp_path):
    import subprocess
    import sys

    from tests.oauth_harness import CLIENT_SECRET

    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-cc")
    h = setup.harness
    h.config_path.write_text(h.config_path.read_text() + f'device_authorization_url = "{oauth_server.device_authorization_url}"\n'
                                                         'refresh_token_file = "oauth2-refresh-token"\n')
    systemd_copy = tmp_path / "run-credentials"
    systemd_copy.mkdir()
    (systemd_copy / "oauth2-client-secret").write_text(CLIENT_SECRET)

    def approve() -> None:
        flow = oauth_server.wait_for_device_flow(timeout=30)
        oauth_server.approve_device(flow.user_code, h.user)

    approver = threading.Thread(target=approve)
    approver.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "CREDENTIALS_DIRECTORY"))}
    env["CREDENTIALS_DIRECTORY"] = str(systemd_copy)
    done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "oauth", "login", "--config", str(h.config_path)],
                          capture_output=True, text=True, timeout=90, env=env)
    approver.join()
    assert done.returncode == 0, done.stderr
    assert "the token goes to the credentials/ folder next to the config file" in done.stderr
    assert (setup.credentials / "oauth2-refresh-token").is_file(), (done.stdout, sorted(p.name for p in systemd_copy.iterdir()))


@pytest.mark.one_database
@pytest.mark.xfail(strict=True, reason="a departure, documented (README 'Mail providers', oauth login's own words): "
                   "systemd copies LoadCredential= files into the service only at start, so after `oauth login` "
                   "under the shipped unit a restart is needed; a reload reads the same old copy")
def test_login_then_reload_under_load_credential(dovecot_oauth, smtp_receiver_oauth, oauth_server, database,
                                                 notify, started, tmp_path):
    import shutil
    import subprocess
    import sys

    from tests.daemons import finish, hangup, set_mailbox
    from tests.harness import MEMBERS, report

    mails = 1 + len(MEMBERS)
    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-refresh")
    h = setup.harness
    set_mailbox(h, poll_seconds=1)
    systemd_copy = tmp_path / "run-credentials"  # what LoadCredential= copied at start
    shutil.copytree(setup.credentials, systemd_copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=str(notify.path), CREDENTIALS_DIRECTORY=str(systemd_copy))
    subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "db", "upgrade", "--config", str(h.config_path)],
                   env=env, check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen([sys.executable, "-m", "conduct_inbox.cli", "run", "--config", str(h.config_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started.append(proc)
    assert notify.wait_for("READY=1", 20), finish(proc, 5)[1]
    h.deliver(report(sender="r1@example.net", body="first"))
    smtp_receiver_oauth.wait_for(mails, timeout=30)

    oauth_server.revoke(setup.refresh_token)
    dovecot_oauth.restart()
    h.deliver(report(sender="r2@example.net", body="second"))
    cause = "oauth2: refresh token rejected by the provider (invalid_grant); run `conduct-inbox oauth login`"
    assert notify.wait_for(f"STATUS=mailbox unavailable, retrying: {cause}", 30), notify.received
    # The admin runs `conduct-inbox oauth login` from a shell: the new token lands in credentials/.
    setup.write_refresh_token(oauth_server.issue_refresh_token("ci-app", h.user))
    hangup(proc, notify)  # ... and `systemctl reload conduct-inbox`, as oauth login advises
    try:
        smtp_receiver_oauth.wait_for(2 * mails, timeout=30)
    finally:
        proc.terminate()
        notify.wait_for("STOPPING=1", 20)  # (drains the notify socket: a full one blocks the daemon's sd_notify)
        finish(proc, 30)


@pytest.mark.one_database
@pytest.mark.parametrize("reload_first", [False, True])
def test_sigterm_during_a_refresh_token_outage(dovecot_oauth, smtp_receiver_oauth, oauth_server, database,
                                               notify, started, reload_first):
    """The refresh token is revoked (an outage the daemon rides out): SIGTERM must still stop the
    daemon promptly (systemd: TimeoutStopSec=60), with the report left in INBOX."""
    from tests.daemons import conduct_inbox, set_mailbox
    from tests.harness import MEMBERS, report

    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-refresh")
    h = setup.harness
    set_mailbox(h, poll_seconds=1)
    import subprocess
    import sys
    subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "db", "upgrade", "--config", str(h.config_path)],
                   check=True, capture_output=True, timeout=60)
    proc = conduct_inbox(h.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 20)
    h.deliver(report(sender="r1@example.net", body="first"))
    smtp_receiver_oauth.wait_for(1 + len(MEMBERS), timeout=30)
    oauth_server.revoke(setup.refresh_token)
    dovecot_oauth.restart()
    h.deliver(report(sender="r2@example.net", body="second"))
    cause = "oauth2: refresh token rejected by the provider (invalid_grant); run `conduct-inbox oauth login`"
    assert notify.wait_for(f"STATUS=mailbox unavailable, retrying: {cause}", 30), notify.received
    if reload_first:  # the admin tries `systemctl reload` (nothing new to read)
        from tests.daemons import hangup

        hangup(proc, notify)
    time.sleep(3)
    proc.terminate()
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"no exit 40 s after SIGTERM:\n{err.decode()[-2500:]}") from None
    assert proc.returncode == 0, err.decode()[-2000:]
    assert time.monotonic() - t0 < 40
    assert h.folder_count("INBOX") == 1


@pytest.mark.one_database
def test_smtp_only_oauth2_with_the_provider_down_is_an_outage_health_names(dovecot_oauth, smtp_receiver_oauth,
                                                                          oauth_server, database):
    """Mailbox by password, SMTP by OAuth2; the token endpoint refuses connections: the report
    becomes a case, its mail waits in the outbox (not failed), and `health` fails naming oauth2."""
    import subprocess
    import sys

    from sqlalchemy import create_engine, select

    from conduct_inbox.store.models import OutboxMessage
    from tests.harness import report

    setup = _old_oauth_harness(dovecot_oauth, smtp_receiver_oauth, database.url, oauth_server, "generic-refresh")
    h = setup.harness
    text = h.config_path.read_text()
    h.config_path.write_text(text.replace('auth = "oauth2"', f'password = "{dovecot_oauth.password}"', 1))
    oauth_server.set_mode("down")
    h.deliver(report(sender="r1@example.net", body="while the provider is down"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "CREDENTIALS_DIRECTORY"))}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conduct_inbox.cli", *args, "--config", str(h.config_path)],
                              capture_output=True, text=True, timeout=120, env=env)

    assert cli("db", "upgrade").returncode == 0
    run = cli("run", "--once")
    assert "Traceback" not in run.stderr, run.stderr
    assert h.folder_count("INBOX") == 0  # the mailbox works: the report became a case
    assert not smtp_receiver_oauth.messages
    engine = create_engine(database.url)
    try:
        with engine.connect() as conn:
            statuses = [row[0] for row in conn.execute(select(OutboxMessage.status))]
    finally:
        engine.dispose()
    assert statuses and set(statuses) == {"pending"}, statuses
    health = cli("health")
    assert health.returncode != 0, health.stdout + health.stderr
    assert "oauth2: token endpoint unreachable" in health.stdout + health.stderr, health.stdout + health.stderr
    oauth_server.set_mode("ok")
    assert cli("run", "--once").returncode == 0
    smtp_receiver_oauth.wait_for(len(statuses), timeout=20)


def test_service_account_token_uri_over_plain_http_elsewhere_is_refused(oauth_server):
    """A key file whose token_uri is plain http to another host: no assertion is sent there."""
    key = oauth_server.add_service_account()
    key["token_uri"] = "http://192.0.2.10/token"
    config = OAuth2Config(provider="google", service_account=json.dumps(key), username="conduct@example.org",
                          timeout=2)
    with pytest.raises(TokenUnavailable) as info:
        TokenSource(config, session=_no_env_session()).token()
    assert "https" in str(info.value)
    assert "PRIVATE KEY" not in str(info.value)


def _old_oauth_harness(dovecot, receiver, url, server, grant):  # type: ignore[no-untyped-def]
    """A harness on the OAuth Dovecot and receiver logging in with `grant` (tests/oauth_harness.py)."""
    from tests.harness import Harness
    from tests.oauth_harness import with_oauth

    return with_oauth(Harness(dovecot, receiver, url, dovecot.new_user()), server, grant)

