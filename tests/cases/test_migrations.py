"""The schema is owned by alembic: upgrade from empty reaches the models exactly, on both backends."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conduct_inbox.errors import DatabaseNotCurrent
from conduct_inbox.store import db
from conduct_inbox.store.models import Base


def test_upgrade_from_empty_has_no_drift(database):
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert db.current_revision(database.engine) == db.head_revision(database.engine) == db.SCHEMA_HEAD


def test_daemon_refuses_a_database_not_at_head(database_url):
    engine = db.make_engine(database_url)
    with pytest.raises(DatabaseNotCurrent, match="conduct-inbox db upgrade"):
        db.require_current(engine)
    db.upgrade(engine)
    db.require_current(engine)
    engine.dispose()


def test_upgrading_to_per_reporter_clocks_keeps_every_answered_reporter_answered(database_url):
    """0006: a case answered before the upgrade stays answered for `!close` and its clock."""
    from datetime import datetime

    from sqlalchemy import text

    engine = db.make_engine(database_url)
    db.upgrade(engine, "0005")
    at, answered = datetime(2026, 11, 20, 9, 0), datetime(2026, 11, 22, 9, 0)
    with engine.begin() as connection:
        for case_id, last_response in ((1, answered), (2, None)):
            connection.execute(text(
                "INSERT INTO cases (id, ref, title, status, urgent, spam, auto, unverified, created_at, updated_at, "
                "last_response_at) VALUES (:id, :ref, 't', 'investigating', false, false, false, false, :at, :at, :lr)"),
                {"id": case_id, "ref": f"2026-000{case_id}", "at": at, "lr": last_response})
            for role in ("reporter", "reported"):
                connection.execute(text(
                    "INSERT INTO parties (case_id, role, address, consent_public, created_at) "
                    "VALUES (:case_id, :role, :address, false, :at)"),
                    {"case_id": case_id, "role": role, "address": f"{role}{case_id}@example.net", "at": at})
    db.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT case_id, role, answered_at FROM parties ORDER BY case_id, role")).all()
    engine.dispose()
    stamp = str(answered)[:16]  # (SQLite gives the stored text back)
    assert [(r.case_id, r.role, r.answered_at and str(r.answered_at)[:16]) for r in rows] == [
        (1, "reported", None), (1, "reporter", stamp), (2, "reported", None), (2, "reporter", None)]
