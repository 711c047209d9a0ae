"""Packaging (issue 14, item 13): every library the code imports is declared, bounds where we
rely on a library's internals, one version, a licence, py.typed, classifiers."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import conduct_inbox

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "conduct_inbox"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"conduct_inbox", "__future__"}


def _declared() -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
    return {importlib.metadata.distribution(req.name).metadata["Name"].lower().replace("_", "-"): req for req in reqs}


def test_every_imported_library_is_declared() -> None:
    declared = _declared()
    owners = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(_imported_top_level_modules()):
        dists = {name.lower().replace("_", "-") for name in owners.get(module, [])}
        if not dists & set(declared):
            missing.append(f"{module} (from {sorted(dists) or '?'})")
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    assert "lxml" in _imported_top_level_modules()


def test_libraries_whose_internals_we_use_have_an_upper_bound() -> None:
    declared = _declared()
    # aiosmtplib: mail/smtp.py replaces aiosmtplib.protocol.normalize_message_line_endings;
    # mail-parser-reply: mail/quotes.py uses the shape of its header pattern;
    # confusable-homoglyphs: recusal.py reads its confusables.json.
    for name in ("aiosmtplib", "mail-parser-reply", "confusable-homoglyphs"):
        assert any(spec.operator == "<" for spec in declared[name].specifier), name
        installed = importlib.metadata.version(name)
        assert declared[name].specifier.contains(installed), (name, installed)


def test_one_version_licence_classifiers_and_py_typed() -> None:
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "conduct_inbox.__version__"}
    metadata = importlib.metadata.metadata("conduct-inbox")
    assert metadata["Version"] == conduct_inbox.__version__
    assert metadata["License-Expression"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert (SRC / "py.typed").exists()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["conduct_inbox"]
