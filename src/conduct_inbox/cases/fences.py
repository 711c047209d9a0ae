"""Case references fenced off after a restore from a backup (shell/recovery.py).

The references the lost stretch may have issued are skipped by the year's counter and recorded
here, so none is issued again; mail about one is refused as an unknown case and the committee is
told once per reference.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from conduct_inbox.store.models import CaseCounter, DatabaseMeta

LOST_REFS = "lost-refs:"  # + year: "2-55,80-140"
LOST_REF_TOLD = "lost-ref-told:"  # + reference: the committee was told about mail for it


def fence_refs(session: Session, years: range, skip: int) -> dict[int, tuple[int, int]]:
    """Move each year's case counter `skip` numbers on; returns the skipped range per year."""
    fenced: dict[int, tuple[int, int]] = {}
    for year in years:
        counter = session.get(CaseCounter, year)
        last = counter.last if counter is not None else 0
        if counter is None:
            session.add(CaseCounter(year=year, last=last + skip))
        else:
            session.execute(update(CaseCounter).where(CaseCounter.year == year).values(last=last + skip))
        fenced[year] = (last + 1, last + skip)
        text = f"{last + 1}-{last + skip}"
        meta = session.get(DatabaseMeta, LOST_REFS + str(year))
        if meta is None:
            session.add(DatabaseMeta(name=LOST_REFS + str(year), value=text))
        else:
            meta.value = meta.value + "," + text
    return fenced


def is_lost_ref(session: Session, ref: str) -> bool:
    """Whether `ref` lies in a range fenced off after a restore (issued, perhaps, then lost)."""
    year, _, number = ref.partition("-")
    if not (year.isdigit() and number.isdigit()):
        return False
    meta = session.get(DatabaseMeta, LOST_REFS + year)
    if meta is None:
        return False
    n = int(number)
    for part in meta.value.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and high.isdigit() and int(low) <= n <= int(high):
            return True
    return False


def first_mail_about(session: Session, ref: str) -> bool:
    """True the first time it is asked about `ref` (recorded in the caller's transaction)."""
    name = LOST_REF_TOLD + ref
    if session.get(DatabaseMeta, name) is not None:
        return False
    session.add(DatabaseMeta(name=name, value="told"))
    return True
