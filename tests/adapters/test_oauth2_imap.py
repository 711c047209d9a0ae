"""The IMAP side of OAuth2 against Dovecot's oauth2 passdb: both SASL mechanisms, a refused token
answered correctly (no hang), retried once with a new token."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient

from conduct_inbox.adapters.imap import ImapMailbox
from conduct_inbox.adapters.oauth2 import OAuth2Config, TokenSource
from conduct_inbox.errors import MailboxUnavailable

SECRET = "imap-test-secret"


def mailbox(dovecot, source: TokenSource, user: str) -> ImapMailbox:
    return ImapMailbox(dovecot.host, dovecot.port, "none", user, "", timeout=10, token_source=source)


@pytest.fixture
def source(oauth_server, dovecot_oauth):
    user = dovecot_oauth.new_user()
    oauth_server.add_client("ci-app", SECRET, username=user)
    return TokenSource(OAuth2Config("generic", client_id="ci-app", client_secret=SECRET,
                                    token_url=oauth_server.token_url, username=user)), user


@pytest.mark.parametrize("offered", ["OAUTHBEARER", "XOAUTH2"])
def test_login_with_the_mechanism_the_server_offers(offered, source, dovecot_oauth, oauth_server, monkeypatch):
    token_source, user = source
    real = IMAPClient.capabilities
    other = b"AUTH=XOAUTH2" if offered == "OAUTHBEARER" else b"AUTH=OAUTHBEARER"
    # Dovecot offers both; hide one to take the other path.
    monkeypatch.setattr(IMAPClient, "capabilities", lambda self: tuple(c for c in real(self) if c.upper() != other))
    box = mailbox(dovecot_oauth, token_source, user)
    try:
        box.connect()
        assert box.uids() == []
    finally:
        box.close()
    oauth_server.expire_access_tokens()  # refused once, then a fresh token
    box = mailbox(dovecot_oauth, token_source, user)
    try:
        box.connect()
    finally:
        box.close()
    assert oauth_server.token_requests["client_credentials"] == 2


def test_a_mailbox_that_refuses_every_token(source, dovecot_oauth, oauth_server):
    token_source, user = source
    box = mailbox(dovecot_oauth, token_source, "not-" + user)  # the token is for another user
    with pytest.raises(MailboxUnavailable) as info:
        box.connect()
    assert str(info.value).startswith("IMAP login refused: the mailbox refused the OAuth2 token")
    assert oauth_server.token_requests["client_credentials"] == 2  # retried once with a new token


def test_a_server_without_oauth_mechanisms(source, dovecot):
    token_source, user = source
    box = mailbox(dovecot, token_source, user)  # the password-only Dovecot
    with pytest.raises(MailboxUnavailable, match="offers neither XOAUTH2 nor OAUTHBEARER"):
        box.connect()
