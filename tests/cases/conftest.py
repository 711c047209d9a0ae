"""The middle tier's fixtures: the case store on SQLite, no servers (tests/case_store.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.case_store import Store, Stores


@pytest.fixture(scope="session")
def stores() -> Iterator[Stores]:
    made = Stores()
    yield made
    made.close()


@pytest.fixture
def store(request: pytest.FixtureRequest, stores: Stores) -> Iterator[Store]:
    """A fresh case store. A variant configuration by marker: `@pytest.mark.config((old, new), ...)`
    replaces text in the tests' configuration (tests/harness.write_config)."""
    marker = request.node.get_closest_marker("config")
    with stores.store(*(marker.args if marker else ())) as made:
        yield made
