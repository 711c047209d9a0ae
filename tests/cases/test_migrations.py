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
