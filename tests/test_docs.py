"""The README documents every setting and every Makefile target; its links to docs/ resolve."""
from __future__ import annotations

import re

from llmops import settings
from tests.support.env import ROOT
from tests.test_makefile import TARGET

README = (ROOT / "README.md").read_text()
SERVICES = ("ollama", "litellm", "prometheus", "alertmanager", "dashboard")
VERBS = ("start", "stop", "restart", "health", "logs")


def settings_table_rows() -> set[str]:
    """Setting names in the first column of the README's settings table."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", README, re.M))


def makefile_targets() -> list[str]:
    targets = []
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = TARGET.match(line)
        if match and not match.group(1).startswith(".") and "$" not in match.group(1):
            targets.append(match.group(1))
    return targets


def documented(target: str) -> bool:
    """`make T` or `T` in backticks; per-service targets by the README's `verb-S ... for S in` sentence."""
    if re.search(rf"`(make )?{re.escape(target)}`", README):
        return True
    verb, _, service = target.partition("-")
    return verb in VERBS and service in SERVICES and f"`{verb}-S`" in README and f"`{service}`" in README


def test_every_setting_has_a_row_in_the_readme_settings_table():
    missing = [s.name for s in settings.SETTINGS if s.name not in settings_table_rows()]
    assert missing == [], f"add a row to README.md's settings table for: {missing}"


def test_the_settings_table_lists_no_setting_that_does_not_exist():
    assert settings_table_rows() - {s.name for s in settings.SETTINGS} == set()


def test_every_makefile_target_is_in_the_readme():
    missing = [t for t in makefile_targets() if not documented(t)]
    assert missing == [], f"mention these Makefile targets in README.md: {missing}"


def test_the_checks_can_fail():
    assert not documented("no-such-target") and not documented("start-nosuch")
    assert "NO_SUCH_SETTING" not in settings_table_rows()


def test_links_to_docs_resolve():
    links = re.findall(r"\]\(((?:docs/)[^)#]+)\)", README)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
