"""The one gate for mail to reporters and other parties (reported persons, witnesses).

Parties hear from conduct@, in the committee's chosen words and nothing else: the subject is
fixed (`[conduct #REF] Message from the Committee`), never a reporter's or party's own subject,
since that would carry the reporter's name and allegation to the reported person. The outbox
refuses mail to a reporter or party that was not built here (`outbox.enqueue_all`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conduct_inbox.mail.compose import Draft

#: Audiences outside the committee.
OUTWARD = frozenset({"reporter", "party"})

ACK = "ack"
MESSAGE = "message"


def neutral_subject(case_tag: str, ref: str, purpose: str, committee_name: str) -> str:
    """The only subjects mail to a reporter or party can have."""
    if purpose == ACK:
        return f"[{case_tag} #{ref}] Your report has been received"
    if purpose == MESSAGE:
        return f"[{case_tag} #{ref}] Message from the {committee_name}"
    raise ValueError("unknown purpose of mail to a party")


@dataclass(frozen=True)
class OutwardDraft(Draft):
    """Mail to a reporter or party. Its subject is not an argument: it is always neutral."""

    subject: str = field(init=False, default="")
    case_tag: str = ""
    ref: str = ""
    purpose: str = MESSAGE
    committee_name: str = ""

    def __post_init__(self) -> None:
        if self.audience not in OUTWARD:
            raise ValueError("an outward draft goes to a reporter or a party")
        if self.thread_topic or self.thread_index:
            raise ValueError("the committee's conversation headers never go to a reporter or party")
        object.__setattr__(self, "subject", neutral_subject(self.case_tag, self.ref, self.purpose, self.committee_name))


def check_outward(draft: Draft) -> None:
    """Refuse mail to a reporter or party that did not come through this gate."""
    if draft.audience in OUTWARD and not isinstance(draft, OutwardDraft):
        raise ValueError("mail to a reporter or party must be built by party_mail")
