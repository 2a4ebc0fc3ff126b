"""The README documents every setting and every Makefile target; its links to docs/ resolve."""
from __future__ import annotations

import re

from llmops import settings
from tests.support import makefile
from tests.support.env import ROOT

README = (ROOT / "README.md").read_text()


def settings_table_rows() -> set[str]:
    """Setting names in the first column of the README's settings table."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", README, re.M))


def per_service_sentence() -> tuple[set[str], set[str]]:
    """The verbs and services of the README's "Each service also has `start-S`, ... for S in `a`, `b`." sentence."""
    match = re.search(r"Each service also has (.*?)\s+for S in\s+(.*?)\.", README, re.S)
    if not match:
        return set(), set()
    return set(re.findall(r"`([a-z]+)-S`", match.group(1))), set(re.findall(r"`([a-z_]+)`", match.group(2)))


def documented(target: str, services: list[str]) -> bool:
    """`make T` or `T` in backticks; a per-service target by the README's per-service sentence."""
    if re.search(rf"`(make )?{re.escape(target)}`", README):
        return True
    verbs, named = per_service_sentence()
    verb, _, service = target.partition("-")
    return service in services and verb in verbs and service in named


def test_every_setting_has_a_row_in_the_readme_settings_table():
    missing = [s.name for s in settings.SETTINGS if s.name not in settings_table_rows()]
    assert missing == [], f"add a row to README.md's settings table for: {missing}"


def test_the_settings_table_is_the_one_generated_from_settings():
    assert settings.with_table(README) == README, (
        "README.md's settings table is stale: run `.venv/bin/llmops settings table --write`")


def test_a_stale_settings_table_is_found():
    added = (*settings.SETTINGS, settings.Setting("NO_SUCH_SETTING", "", "A row the README lacks."))
    assert settings.with_table(README, added) != README
    assert "| `NO_SUCH_SETTING` | empty | A row the README lacks. |" in settings.with_table(README, added)
    changed = README.replace("| Port of the LiteLLM proxy. |", "| Port of the proxy. |")
    assert changed != README and settings.with_table(changed) == README


def test_the_settings_table_lists_no_setting_that_does_not_exist():
    assert settings_table_rows() - {s.name for s in settings.SETTINGS} == set()


def test_every_makefile_target_is_in_the_readme():
    """Every target `make help` lists, the per-service ones included (they have no line of their own)."""
    services = makefile.services()
    targets = makefile.help_entries()
    assert {f"{verb}-{s}" for s in services for verb in makefile.VERBS} <= set(targets)
    missing = [t for t in targets if not documented(t, services)]
    assert missing == [], f"mention these Makefile targets in README.md: {missing}"


def test_the_readme_names_every_service_and_verb_in_its_per_service_sentence():
    verbs, named = per_service_sentence()
    assert verbs == set(makefile.VERBS)
    assert named == set(makefile.services())


def test_the_checks_can_fail():
    services = makefile.services()
    assert not documented("no-such-target", services) and not documented("start-nosuch", services)
    assert not documented("start-nosuch", [*services, "nosuch"])
    assert "NO_SUCH_SETTING" not in settings_table_rows()


def test_links_to_docs_resolve():
    links = re.findall(r"\]\(((?:docs/)[^)#]+)\)", README)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
