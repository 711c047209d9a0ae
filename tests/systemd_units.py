"""The shipped systemd units, read as section -> [(key, value)]."""

from __future__ import annotations

from pathlib import Path

UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"
SERVICE = UNIT_DIR / "conduct-inbox.service"
FAILURE = UNIT_DIR / "conduct-inbox-failure@.service"
TEMPLATE = UNIT_DIR / "conduct-inbox@.service"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Read a unit file as section -> [(key, value)]; keeps repeated keys, unlike configparser."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        else:
            assert current is not None, f"{path.name}: key outside a section: {line}"
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    """Every value given for a key, in order."""
    return [v for k, v in unit.get(section, []) if k == key]


def single(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    """The one value of a key that must appear exactly once."""
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= given {len(found)} times"
    return found[0]
