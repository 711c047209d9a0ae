"""The [sla] times in the words a reporter reads."""

import pytest

from conduct_inbox.core.promises import Promises, days_text, hours_text


@pytest.mark.parametrize("hours, text", [(24, "24 hours"), (1, "one hour"), (2, "2 hours"), (0.5, "30 minutes"), (36, "36 hours")])
def test_hours_text(hours, text):
    assert hours_text(hours) == text


@pytest.mark.parametrize("days, text", [(7, "one week"), (14, "two weeks"), (10, "10 days"), (1, "one day"), (35, "5 weeks")])
def test_days_text(days, text):
    assert days_text(days) == text


def test_urgent_case_is_promised_the_urgent_time():
    promises = Promises(ack_hours=36, urgent_ack_hours=3, response_days=10)
    assert promises.context(False)["ack_time"] == "36 hours"
    assert promises.context(True) == {"urgent": True, "ack_time": "3 hours", "ack_hours": 3,
                                      "response_time": "10 days", "response_days": 10}
