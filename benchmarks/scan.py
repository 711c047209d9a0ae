"""Name scan: the time `core.recusal.Detector` takes to scan 5 MB of hostile text for the roster's
names (fillers chosen to provoke backtracking: repeated first names, near-miss surnames, combining
marks, quote prefixes, plus-address fragments), with a real name at the very end.
Target: each 5 MB text in <= 3 s (the parser worker's default time limit for a whole message is 30 s).

    .venv/bin/python benchmarks/scan.py [--mb 5]
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts src/ on sys.path)

from conduct_inbox.core.recusal import Detector
from conduct_inbox.core.roster import Person

TARGET_SECONDS = 3.0
PEOPLE = (
    Person("Bob Smith", "bob@example.org"),
    Person("José Núñez", "jose@example.org", ("Pepe Núñez",)),
    Person("Ali Hassan", "ali.hassan@example.org", ("Ali",)),
    Person("Mary-Jane O'Brien", "mj@example.org", ("MJ",)),
    Person("Carol Jones", "carol@example.net", steering=True),
)
FILLERS = {
    "prose": "the committee met to discuss the report from the meetup ",
    "near misses": "Bob Bob Bob Smithson bob@ ",
    "one name over and over": "Ali Ali Ali ",
    "combining marks": "é\u0301 ",
    "quote prefixes": ">" * 50 + "\n",
    "plus fragments": "bob+" * 10,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5)
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    detector = Detector(PEOPLE)
    failed = 0
    for label, filler in FILLERS.items():
        text = (filler * (size // len(filler) + 1))[:size] + " Carol Jones"
        started = time.perf_counter()
        found = [m.email for m in detector.find(text)]
        took = time.perf_counter() - started
        ok = took <= TARGET_SECONDS and "carol@example.net" in found
        failed += not ok
        print(f"{label:>24}: {took:6.2f} s  {'PASS' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
