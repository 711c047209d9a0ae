"""What an incoming message is: an ordered first-match table of small named predicates.

Pure: the shell looks up the facts a predicate needs (is this Message-ID ours, which case does
the tag name, who are its parties) and passes them in as `Facts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from conduct_inbox.core import tokens
from conduct_inbox.mail.addresses import canonical_address
from conduct_inbox.mail.parse import InboundMessage


@dataclass(frozen=True)
class Policy:
    """The configuration classification depends on."""

    address: str  # conduct@domain
    own_list_ids: tuple[str, ...] = ()
    spam_header: str = "X-Spam-Flag"
    spam_value: str = "YES"
    #: The authserv-id of our own receiving server: only its Authentication-Results are believed.
    trusted_authserv_id: str = ""

    @property
    def local_part(self) -> str:
        return self.address.split("@", 1)[0].lower()

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower()


@dataclass(frozen=True)
class CaseFacts:
    id: int
    ref: str
    party_addresses: frozenset[str]  # canonical (mail.addresses): `pat+conduct@` is still pat
    status: str


@dataclass(frozen=True)
class Facts:
    """What the store knows about a message, looked up before classification."""

    own_message: bool = False  # the message's own Message-ID is one we sent
    bounce_row: int | None = None  # the outbox row a DSN's correctly signed VERP address names
    bounce_row_sent: bool = False  # that row was already handed to the SMTP server
    bounce_names_recipient: bool = False  # the DSN names that row's own recipient among its failures
    case: CaseFacts | None = None  # the case named by the subject tag or threaded by References
    #: Roster addresses for which a plus-address it was sent to is a valid reply token (personal,
    #: or for `case`). Any other `conduct+anything@` is ordinary mail: a report or a follow-up.
    token_owners: frozenset[str] = frozenset()
    #: The sender is a roster member who may see `case`, and our trusted server saw a DMARC pass for them.
    member_dmarc_pass: bool = False
    #: `From:` is a roster member's address (authenticated or not).
    member_sender: bool = False
    #: The subject names a case reference the database does not hold (mistyped, purged, or issued
    #: in a stretch lost to a restore from a backup).
    unknown_case_ref: bool = False


@dataclass(frozen=True)
class Classification:
    kind: str  # own_loop | bounce | machine | committee | followup | auto_followup | stray_followup | new_report
    case: CaseFacts | None = None
    bounce_row: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)  # spam | auto


def verp_row(
    msg: InboundMessage, policy: Policy, secrets: Sequence[bytes], message_id_of: Callable[[int], str | None]
) -> int | None:
    """The outbox row id from a correctly signed VERP address (conduct+bounce-<row>-<mac>@domain)
    the DSN was sent to, signed for the mail that row holds (`message_id_of`); None for unsigned,
    wrongly signed or other addresses, or without a secret."""
    return tokens.bounce_row_in((*msg.delivered_to, *msg.to, *msg.cc), policy.local_part, policy.domain, secrets,
                                message_id_of)


def is_automatic(msg: InboundMessage, policy: Policy) -> bool:
    """Auto-Submitted other than no, our loop header, Precedence bulk/junk/list, or List-* headers
    not of our own group."""
    own_list = msg.list_id is not None and any(own.lower() in msg.list_id.lower() for own in policy.own_list_ids)
    if msg.auto_submitted and msg.auto_submitted.strip().lower().split(";")[0] != "no":
        return True
    if msg.loop_header:
        return True  # our mail, changed on its way back (or a forgery): never answer it
    if any(msg.header(name) is not None for name in ("X-Autoreply", "X-Autorespond")):
        return True  # vacation programs that predate Auto-Submitted
    if own_list:
        return False  # the group that fronts conduct@ adds List-* and Precedence: list to real reports
    if msg.precedence and msg.precedence.strip().lower() in ("bulk", "junk", "list"):
        return True
    return msg.has_list_headers


#: Quoted strings and comments of an Authentication-Results value (RFC 8601): their contents are
#: data an attacker chooses (an envelope sender may be `"dmarc=pass header.from=x"@evil`).
_AR_QUOTED = re.compile(r'"(?:[^"\\]|\\.){0,998}"|\((?:[^()\\]|\\.){0,998}\)')
_AR_PROPERTY = re.compile(r"(?:^|\s)([\w.-]{1,64})\s*=\s*([^\s;]{1,255})")


def _ar_resinfos(value: str) -> tuple[str, list[dict[str, str]]]:
    """(authserv-id, one {method/property: value} per result) of one header value."""
    for _ in range(4):  # comments may nest
        value = _AR_QUOTED.sub(" ", value)
    head, _, rest = value.partition(";")
    authserv = head.split()[0].lower() if head.split() else ""  # an optional version may follow it
    results = []
    for resinfo in rest.split(";"):
        props = {k.lower(): v.lower() for k, v in _AR_PROPERTY.findall(resinfo)}
        if props:
            results.append(props)
    return authserv, results


def dmarc_verdict(msg: InboundMessage, authserv_id: str) -> tuple[str, str] | None:
    """(result, header.from domain) from the topmost Authentication-Results of our trusted server."""
    if not authserv_id:
        return None
    for value in msg.authentication_results:
        authserv, results = _ar_resinfos(value)
        if authserv != authserv_id.lower():
            continue
        dmarc = next((r for r in results if "dmarc" in r), None)
        if dmarc is None or "header.from" not in dmarc:
            return None
        return dmarc["dmarc"], dmarc["header.from"].rstrip(".")
    return None


def is_spam(msg: InboundMessage, policy: Policy) -> bool:
    """The upstream spam verdict header, or a DMARC fail seen by our trusted server."""
    value = msg.header(policy.spam_header) if policy.spam_header else None
    if value is not None and value.strip().upper().startswith(policy.spam_value.upper()):
        return True
    verdict = dmarc_verdict(msg, policy.trusted_authserv_id)
    return verdict is not None and verdict[0] == "fail"


def _sender_is_party(msg: InboundMessage, case: CaseFacts) -> bool:
    return any(a and canonical_address(a) in case.party_addresses for a in (msg.reporter_address, msg.from_address))


Rule = Callable[[InboundMessage, Facts, Policy], Classification | None]


def own_loop(msg: InboundMessage, facts: Facts, policy: Policy) -> Classification | None:
    """Only a Message-ID we sent proves it is ours: anyone can add our loop header to a report,
    which then must not vanish (it is automatic mail instead: recorded, never answered)."""
    if facts.own_message:
        return Classification("own_loop")
    return None


def bounce(msg: InboundMessage, facts: Facts, policy: Policy) -> Classification | None:
    if not msg.is_dsn:
        return None
    # Only a DSN on a correctly signed VERP address, for a row already sent, naming that row's own
    # recipient, fails a row (DESIGN, data flow rule 3). Any other is machine mail: stored, no alert.
    if facts.bounce_row is not None and facts.bounce_row_sent and facts.bounce_names_recipient:
        return Classification("bounce", bounce_row=facts.bounce_row)
    return Classification("machine", bounce_row=facts.bounce_row)


def committee_mail(msg: InboundMessage, facts: Facts, policy: Policy) -> Classification | None:
    """On a valid reply token (the desk checks it is the sender's), or a member's DMARC-passed
    mail about a case they may see (DESIGN "Authenticating commands")."""
    if facts.token_owners or (facts.member_dmarc_pass and facts.case is not None):
        return Classification("committee", case=facts.case)
    if facts.member_sender and facts.case is not None and not _sender_is_party(msg, facts.case):
        # Claims to be a member about a case, without a token: the desk refuses it (audited, the
        # member told at their roster address); never a stranger's follow-up that could recuse.
        return Classification("committee", case=facts.case)
    if facts.member_sender and facts.case is None and facts.unknown_case_ref:
        # A member's mail about a case we do not hold: the desk refuses it as an unknown case and
        # tells them; never a new report opened in a member's name.
        return Classification("committee")
    return None


def followup(msg: InboundMessage, facts: Facts, policy: Policy) -> Classification | None:
    if facts.case is None:
        return None
    if is_automatic(msg, policy):
        return Classification("auto_followup", case=facts.case, flags=frozenset({"auto"}))
    if _sender_is_party(msg, facts.case):
        return Classification("followup", case=facts.case)
    return Classification("stray_followup", case=facts.case)


def new_report(msg: InboundMessage, facts: Facts, policy: Policy) -> Classification | None:
    flags = set()
    if is_spam(msg, policy):
        flags.add("spam")
    if is_automatic(msg, policy):
        flags.add("auto")
    return Classification("new_report", flags=frozenset(flags))


#: First match wins. New kinds of mail get a predicate here, in order.
RULES: tuple[Rule, ...] = (own_loop, bounce, committee_mail, followup, new_report)


def classify(msg: InboundMessage, facts: Facts, policy: Policy) -> Classification:
    for rule in RULES:
        result = rule(msg, facts, policy)
        if result is not None:
            return result
    raise AssertionError("new_report always matches")
