"""The prompt bank: what ships, the format's checks, category selection, seeded order."""
import json

import pytest

from llmops.errors import ConfigError
from llmops.traffic import prompts as bank


def test_shipped_bank_has_300_prompts_in_8_categories_and_long_context():
    prompts = bank.load()
    cats = bank.categories(prompts)
    assert len(prompts) >= 300
    assert len([c for c in cats if c != "long_context"]) >= 8
    assert cats.get("long_context", 0) >= 3
    longest = max(len(p.messages[-1]["content"]) for p in prompts if p.category == "long_context")
    assert longest > 2500  # characters; several hundred tokens at least
    assert len({p.id for p in prompts}) == len(prompts)


def test_shipped_prompts_end_with_a_user_turn_and_ask_for_short_answers():
    for p in bank.load():
        assert p.messages[-1]["role"] == "user" and p.messages[-1]["content"].strip()
        assert p.max_tokens is None or p.max_tokens <= 128


def write(tmp_path, doc, name="bank.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_prompt_system_and_messages_forms(tmp_path):
    path = write(tmp_path, {"format": 1, "category": "t", "prompts": [
        {"id": "a", "prompt": "hi", "system": "be brief", "max_tokens": 5},
        {"id": "b", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                                 {"role": "user", "content": "z"}]}]})
    a, b = bank.load(path)
    assert a.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"})
    assert a.max_tokens == 5 and b.max_tokens is None and len(b.messages) == 3


@pytest.mark.parametrize("doc, words", [
    ("{not json", "not valid JSON"),
    ({"category": "t", "prompts": [{"id": "a", "prompt": "x"}]}, '"format": 1'),
    ({"format": 1, "prompts": [{"id": "a", "prompt": "x"}]}, "category"),
    ({"format": 1, "category": "t", "prompts": []}, "non-empty list"),
    ({"format": 1, "category": "t", "prompts": [{"prompt": "x"}]}, "prompts[0]"),
    ({"format": 1, "category": "t", "prompts": [{"id": "a", "prompt": " "}]}, "(a)"),
    ({"format": 1, "category": "t", "prompts": [{"id": "a", "prompt": "x", "max_tokens": 0}]}, "max_tokens"),
    ({"format": 1, "category": "t", "prompts": [{"id": "a", "messages": [{"role": "bot", "content": "x"}]}]},
     "messages"),
    ({"format": 1, "category": "t", "prompts": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]},
     "already used"),
])
def test_malformed_bank_names_the_file_and_the_problem(tmp_path, doc, words):
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        bank.load(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_text_file_is_one_prompt_per_line(tmp_path):
    path = write(tmp_path, "first\n\nsecond\n", name="mine.txt")
    assert [p.messages[0]["content"] for p in bank.load(path)] == ["first", "second"]


def test_missing_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such"):
        bank.load(tmp_path / "nope.json")


def test_select_keeps_categories_and_names_unknown_ones():
    prompts = bank.load()
    math = bank.select(prompts, ["math"])
    assert math and all(p.category == "math" for p in math)
    with pytest.raises(ConfigError, match="'poetry'.*known: .*math"):
        bank.select(prompts, ["poetry"])


def test_order_is_reproducible_with_the_seed_and_covers_the_bank_each_pass():
    prompts = bank.load()
    n = len(prompts)
    a = [bank.PromptOrder(prompts, 5)[i].id for i in range(2 * n)]
    b = [bank.PromptOrder(prompts, 5)[i].id for i in range(2 * n)]
    c = [bank.PromptOrder(prompts, 6)[i].id for i in range(2 * n)]
    assert a == b and a != c
    assert sorted(a[:n]) == sorted(p.id for p in prompts) == sorted(a[n:])
    assert a[:n] != a[n:]  # each pass is shuffled again
