"""Pathological inputs: the time the pure text functions take on inputs built to provoke
backtracking or quadratic work (long runs of `!`, `Re: `, separators, signature markup). Each
must stay linear: the bound is generous (a loaded machine must not fail it) and still far below
what quadratic work on these sizes would take (hours). The unit tests check these inputs' results;
this script times them.

    .venv/bin/python benchmarks/linear.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import _common  # noqa: F401  (puts src/ on sys.path)

from conduct_inbox.core.commands import new_commands, parse_commands, strip_commands
from conduct_inbox.core.outward import outward_text
from conduct_inbox.core.recusal import Detector
from conduct_inbox.core.roster import Person
from conduct_inbox.core.sla import is_urgent_text
from conduct_inbox.mail.html import to_text
from conduct_inbox.mail.parse import parse

TAG = "[conduct #2026-0007]"
ANNA = Person("Anna Schmidt", "anna.schmidt@example.org", aliases=("Annie S",))
BODY = "Thank you for your report. We have spoken to the people involved and will write again by Friday."
SUBJECTS = [
    "!" * 200_000, "!a" * 100_000, "!a " * 30_000, "wow! " * 40_000, "[" * 100_000 + "#" + "]" * 100_000,
    "[conduct #" * 20_000, "!decide " + "a," * 100_000, "!decide " + " " * 200_000 + "=",
    "!party reported " + "a" * 100_000 + "@" + "b" * 100_000, "!ack " + "Re: " * 50_000 + TAG,
    "Re: " * 50_000 + "title", "!close silent " + "x " * 100_000, "!" + "a" * 200_000,
]
HEADERS = [
    "Subject: " + "=?utf-8?q?" * 20_000, "To: " + "(" * 5000 + "a@example.org", "To: " + '"' * 20_000,
    "Subject: " + "x" * 2_000_000, "References: " + "<" * 50_000, "From: " + "a" * 10_000 + "@" + "b" * 10_000,
]
NESTED = "--b0\n" + "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(1, 3000))
BODIES = [
    ("Content-Type: text/plain", "On " + " a" * 100_000 + "\n" + "\n" * 100_000 + "> " * 50_000),
    ("Content-Type: text/html", "<div>" * 50_000 + "deep" + "</div>" * 10),
    ("Content-Type: text/html", "<blockquote>" * 5000 + "x"),
    ('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b0"', NESTED + "Content-Type: text/plain\n\nx\n"),
]
LINES = ["1 " * 100_000, "1." * 100_000, "2026-" * 40_000, "$1 " * 60_000, "a." * 100_000]


def _subject(subject: str) -> None:
    parse_commands(subject)
    new_commands(subject, subject)
    strip_commands(subject)


def _cases() -> list[tuple[str, float, Callable[[], object]]]:
    detector = Detector((Person("Carol Jones", "carol@example.net", steering=True),
                         Person("Ali Hassan", "ali.hassan@example.org", ("Ali",))))
    cases: list[tuple[str, float, Callable[[], object]]] = []
    for s in SUBJECTS:
        cases.append((f"subject {s[:16]!r}... ({len(s)} chars)", 30.0, lambda s=s: _subject(s)))
    for header in HEADERS:
        raw = f"Message-ID: <id@x>\nFrom: a@example.org\n{header}\n\nbody\n".encode()
        cases.append((f"message header {header[:16]!r}...", 2.0, lambda raw=raw: parse(raw)))
    for headers, body in BODIES:
        raw = f"From: a@example.org\nSubject: s\n{headers}\n\n{body}".encode()
        cases.append((f"message body {body[:16]!r}...", 5.0, lambda raw=raw: parse(raw)))
    for line in LINES:
        cases.append((f"reply text line {line[:8]!r}... ({len(line)} chars)", 3.0,
                      lambda line=line: outward_text(f"{BODY}\n{line}", ANNA)))
    markup = f"<p>{BODY}</p>" + '<div id="Signature">x</div>' * 20_000
    cases.append(("20,000 signature blocks in HTML", 10.0, lambda: to_text(markup, without_quotes=True)))
    huge = "self " * 400_000 + "harmless"
    cases.append(("urgent phrases over 2 MB of repeats", 5.0,
                  lambda: is_urgent_text(huge, ["self harm", "self self self self harm"])))
    separated = ("Smith" + "_" * 200_000 + " ") * 10 + "Carol Jones"
    cases.append(("last name first across 2 MB of separators", 3.0, lambda: detector.find(separated)))
    return cases


def main() -> int:
    failed = 0
    for label, bound, run in _cases():
        started = time.perf_counter()
        run()
        took = time.perf_counter() - started
        failed += took > bound
        print(f"{label:>58}: {took:7.3f} s (bound {bound:g} s)  {'PASS' if took <= bound else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
