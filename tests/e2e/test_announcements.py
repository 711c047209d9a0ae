"""A member's commands are announced to the other members who may see the case, in one mail per
command message; never to a recused member (real Dovecot + aiosmtpd + database)."""

from __future__ import annotations

from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, SAM, opened, reply, step


def _new(receiver, address: str, before: int) -> list:
    return receiver.to(address)[before:]


def _counts(receiver) -> dict[str, int]:
    return {a: len(receiver.to(a)) for a in (ALICE, BOB, CAROL, SAM)}


def test_an_ack_reaches_the_others_in_one_mail_with_the_note(harness, smtp_receiver):
    app, case, alice_copy = opened(harness)
    before = _counts(smtp_receiver)
    step(harness, app, reply(alice_copy, ALICE, "!ack !assign Bob", "I will call the reporter tomorrow."))

    for other in (BOB, CAROL):
        [mail] = _new(smtp_receiver, other, before[other])
        body = text_of(mail)
        assert "Alice Example changed this case" in body
        assert "!ack: acknowledged" in body and "!assign: assigned to Bob Builder" in body
        assert "I will call the reporter tomorrow." in body, "the note is folded into the announcement"
        assert f"#{case.ref}" in str(parsed(mail)["Subject"])
    [confirmation] = _new(smtp_receiver, ALICE, before[ALICE])
    assert "changed this case" not in text_of(confirmation), "the sender gets their confirmation, not the announcement"
    assert "recorded as an internal note and sent to Bob Builder, Carol Chen" in text_of(confirmation)
    assert _new(smtp_receiver, SAM, before[SAM]) == []


def test_a_recused_member_never_gets_an_announcement(harness, smtp_receiver):
    app, case, alice_copy = opened(harness, report(body="At the meetup CC made fun of my accent in front of everyone."))
    assert smtp_receiver.to(CAROL) == []
    bob_copy = smtp_receiver.to(BOB)[0]
    before = _counts(smtp_receiver)
    step(harness, app, reply(alice_copy, ALICE, "!ack"))
    assert len(_new(smtp_receiver, BOB, before[BOB])) == 1
    assert "Alice Example changed this case" in text_of(smtp_receiver.to(BOB)[-1])

    # Bob excludes Alice: his one mail tells nobody but the members left; Alice hears nothing of it,
    # nor of anything after.
    before = _counts(smtp_receiver)
    step(harness, app, reply(bob_copy, BOB, "!concerns Alice !status waiting", "Alice organised that meetup."))
    assert _new(smtp_receiver, ALICE, before[ALICE]) == [], "the member recused by the command gets nothing"
    assert smtp_receiver.to(CAROL) == []
    mine = _new(smtp_receiver, BOB, before[BOB])
    assert len(mine) == 1 and "done" in text_of(mine[0]).lower(), "Bob gets only his confirmation"
    steering = _new(smtp_receiver, SAM, before[SAM])  # too few members left: steering joins
    assert len(steering) == 1
    body = text_of(steering[0])
    assert "Alice Example is excluded from this case" in body and "!status: status waiting" in body
    assert "Alice organised that meetup." in body
    before = _counts(smtp_receiver)
    step(harness, app, reply(bob_copy, BOB, "!status investigating"))
    assert _new(smtp_receiver, ALICE, before[ALICE]) == [] and smtp_receiver.to(CAROL) == []
    assert len(_new(smtp_receiver, SAM, before[SAM])) == 1


def test_a_refused_command_message_announces_nothing(harness, smtp_receiver):
    app, case, alice_copy = opened(harness)
    before = _counts(smtp_receiver)
    step(harness, app, reply(alice_copy, ALICE, "!ack !close", "Closing this."))  # !close needs a decision
    assert _new(smtp_receiver, BOB, before[BOB]) == [] and _new(smtp_receiver, CAROL, before[CAROL]) == []
    [refusal] = _new(smtp_receiver, ALICE, before[ALICE])
    assert "!close" in text_of(refusal)


def test_a_severe_decision_is_proposed_in_the_one_announcement_and_confirmed_by_answering_it(harness, smtp_receiver):
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!ack !party reported pat@example.net Pat"))
    before = _counts(smtp_receiver)
    step(harness, app, reply(alice_copy, ALICE, "!decide public-reprimand"))
    [proposal] = _new(smtp_receiver, CAROL, before[CAROL])
    assert "proposes the decision public-reprimand" in text_of(proposal) and "!decide:" in text_of(proposal)
    step(harness, app, reply(proposal, CAROL, "!confirm"))
    assert "confirmed and in effect" in text_of(smtp_receiver.to(CAROL)[-1])


def test_announce_none_sends_no_announcement(harness, smtp_receiver):
    config = harness.config_path
    config.write_text(config.read_text().replace(
        'steering_address = "steering@example.org"\n', 'steering_address = "steering@example.org"\nannounce = "none"\n', 1))
    app, case, alice_copy = opened(harness)
    before = _counts(smtp_receiver)
    step(harness, app, reply(alice_copy, ALICE, "!ack"))
    assert _new(smtp_receiver, BOB, before[BOB]) == [] and _new(smtp_receiver, CAROL, before[CAROL]) == []
    assert "acknowledged" in text_of(smtp_receiver.to(ALICE)[-1]), "the sender still gets their confirmation"
    # A note written with commands still reaches the others, as a note.
    step(harness, app, reply(alice_copy, ALICE, "!status waiting", "Waiting for the reporter."))
    [note] = _new(smtp_receiver, BOB, before[BOB])
    assert "Internal note from Alice Example" in text_of(note) and "changed this case" not in text_of(note)
