"""Prompt files in the formats other load tools use: JSONL, ShareGPT, CSV, folders; their clear errors; sampling."""
import json
import math
from pathlib import Path

import pytest

from llmops.errors import ConfigError
from llmops.traffic import cli, datasets, tokencount

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "datasets"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def contents(dataset):
    return [p.messages[-1]["content"] for p in dataset.prompts]


def test_jsonl_reads_prompt_text_and_messages_with_their_output_lengths():
    ds = datasets.load(FIXTURES / "prompts.jsonl")
    ids = [p.id for p in ds.prompts]
    assert ids == ["prompts.jsonl:1", "prompts.jsonl:2", "prompts.jsonl:3", "prompts.jsonl:5"]  # the line numbers
    assert {p.category for p in ds.prompts} == {"prompts"}
    assert [p.max_tokens for p in ds.prompts] == [None, 40, 4, 32]
    assert ds.prompts[2].messages == ({"role": "system", "content": "Answer with one word."},
                                      {"role": "user", "content": "Is TCP reliable?"})
    assert ds.formats == {"jsonl": 1} and ds.records == 4 and ds.skipped == {}


def test_sharegpt_takes_the_first_human_turn_and_the_reply_length_and_counts_what_it_skips():
    ds = datasets.load(FIXTURES / "sharegpt.json")
    doc = json.loads((FIXTURES / "sharegpt.json").read_text())
    assert [p.id for p in ds.prompts] == ["sharegpt.json:0", "sharegpt.json:1", "sharegpt.json:4"]
    assert contents(ds) == ["What does a load balancer do, in two sentences?", "Name three prime numbers.",
                            "Write a haiku about queues."]
    # The reply after the first human turn sets max_tokens (the system turn before it is not the prompt).
    replies = [doc[0]["conversations"][1]["value"], doc[1]["conversations"][2]["value"],
               doc[4]["conversations"][1]["value"]]
    assert [p.max_tokens for p in ds.prompts] == [math.ceil(len(r) / 4) for r in replies]
    assert ds.skipped == {"fewer than two turns": 1, "no human turn": 1}
    assert ds.formats == {"sharegpt": 1} and ds.public()["skipped"] == ds.skipped
    assert "skipped 1 (fewer than two turns); skipped 1 (no human turn)" in ds.line()


def test_csv_reads_quoted_cells_and_rows_over_several_lines():
    ds = datasets.load(FIXTURES / "questions.csv")
    assert contents(ds) == ["What is a token bucket, briefly?", 'Say "hello", then stop.',
                            "A prompt that spans\ntwo lines of the file."]
    assert [p.max_tokens for p in ds.prompts] == [48, None, 16]
    assert [p.id for p in ds.prompts] == ["questions.csv:2", "questions.csv:3", "questions.csv:5"]


def test_a_folder_reads_every_format_and_each_file_is_a_category(tmp_path):
    ds = datasets.load(FIXTURES)
    assert ds.formats == {"csv": 1, "jsonl": 1, "sharegpt": 1}
    assert sorted({p.category for p in ds.prompts}) == ["prompts", "questions", "sharegpt"]
    only = datasets.load(FIXTURES, categories=["questions"])
    assert {p.category for p in only.prompts} == {"questions"} and only.records == 3
    with pytest.raises(ConfigError, match="unknown prompt category 'poetry'; known: prompts, questions, sharegpt"):
        datasets.load(FIXTURES, categories=["poetry"])


def test_the_shipped_bank_and_text_files_read_as_before(tmp_path):
    ds = datasets.load(datasets.bank.BANK_DIR)
    assert ds.formats == {"bank": 11} and len(ds.prompts) == len(datasets.bank.load())
    txt = datasets.load(write(tmp_path, "mine.txt", "first\n\nsecond\n"))
    assert contents(txt) == ["first", "second"] and txt.formats == {"text": 1}


def test_a_text_file_gives_ids_by_line_and_its_name_as_category_and_keeps_a_cut_last_line(tmp_path):
    """A .txt prompt is a line: a last line without its newline is still a whole prompt (no record to end)."""
    write(tmp_path, "mine.txt", "first\n\n  second  \nthird, cut")
    write(tmp_path, "other.txt", "elsewhere\n")
    ds = datasets.load(tmp_path, categories=["mine"])
    assert [(p.id, p.category) for p in ds.prompts] == [("mine.txt:1", "mine"), ("mine.txt:3", "mine"),
                                                         ("mine.txt:4", "mine")]
    assert contents(ds) == ["first", "second", "third, cut"] and ds.formats == {"text": 2}


@pytest.mark.parametrize("name, data", [
    ("p.jsonl", '{"prompt": "first"}\n{"prompt": "second"}\n'),
    ("p.csv", "prompt\nfirst\nsecond\n"),
    ("p.json", '[{"conversations": [{"from": "human", "value": "first"}, {"from": "gpt", "value": "x"}]},'
               ' {"conversations": [{"from": "human", "value": "second"}, {"from": "gpt", "value": "y"}]}]'),
    ("p.txt", "first\nsecond\n"),
])
def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path, name, data):
    ds = datasets.load(write(tmp_path, name, data, encoding="utf-8-sig"))
    assert contents(ds) == ["first", "second"]


BAD = [
    # (file name, content, words the error holds besides the file name)
    ("p.jsonl", '{"prompt": "a"}\n{not json}\n{"prompt": "c"}\n', ["p.jsonl:2: not valid JSON", "expected one JSON "
                                                                     "object a line", "formats read: .jsonl"]),
    ("p.jsonl", '{"prompt": "a"}\n{"prompt": "b', ["p.jsonl:2: the last line is cut short", "formats read"]),
    ("p.jsonl", '[\n  {"prompt": "a"},\n  {"prompt": "b"}\n]\n', ["p.jsonl:1", "looks like ShareGPT or another JSON "
                                                                  "list (name it .json)"]),
    ("p.jsonl", '{"question": "a"}\n', ["p.jsonl:1: no \"prompt\", \"text\" or \"messages\" (its keys: question)"]),
    ("p.jsonl", '["a"]\n', ["p.jsonl:1: a JSON list"]),
    ("p.jsonl", '{"prompt": "a", "max_tokens": 0}\n', ["p.jsonl:1: \"max_tokens\" must be a positive integer"]),
    ("p.jsonl", '{"prompt": "  "}\n', ["p.jsonl:1: \"prompt\" must be a non-empty string"]),
    ("p.jsonl", '{"messages": [{"role": "bot", "content": "x"}]}\n', ["p.jsonl:1: \"messages\" must be"]),
    ("p.jsonl", '{"conversations": [{"from": "human", "value": "a"}]}\n', ["a ShareGPT record", ".json file"]),
    ("p.json", '{"prompt": "a"}\n{"prompt": "b"}\n', ["p.json:2: not valid JSON", "looks like JSONL, one object a "
                                                      "line (name it .jsonl)"]),
    ("p.json", '{"prompts": []}', ["read as ShareGPT", "\"format\": 1", "a JSON dict without either"]),
    ("p.json", '[{"prompt": "a"}]', ["[0] is a prompt record, not ShareGPT", ".jsonl"]),
    ("p.json", '[{"id": 1}]', ["[0]: expected a ShareGPT record"]),
    ("p.json", '[{"conversations": [{"from": "gpt", "value": "a"}, {"from": "gpt", "value": "b"}]}]',
     ["no ShareGPT record with a human turn and a reply (1 no human turn)"]),
    ("p.json", '[{"conversations": ["a", "b"]}]', ["[0]: each turn must be an object"]),
    ("p.json", '{"format": 1, "category": "t", "prompts": []}', ["\"prompts\" must be a non-empty list"]),
    ("p.csv", "question,answer\na,b\n", ["p.csv:1: no \"prompt\" column (its columns: question, answer)"]),
    ("p.csv", '{"prompt": "a"}\n', ["no \"prompt\" column", "looks like JSONL"]),
    ("p.csv", "prompt,max_tokens\na,4\n,4\n", ["p.csv:3: an empty \"prompt\" cell"]),
    ("p.csv", "prompt\na,b\n", ["p.csv:2: more cells than the 1 columns"]),
    ("p.csv", "prompt,max_tokens\na,many\n", ["p.csv:2: \"max_tokens\" must be a positive integer, not 'many'"]),
    ("p.csv", "prompt\n", ["a header and no rows"]),
    ("p.csv", 'prompt\nfine\n"a"b\n', ["p.csv:3: not valid CSV (',' expected after '\"')", "formats read"]),
    ("p.csv", 'prompt,max_tokens\na,4\n"b, and the file ends', ["p.csv:3: the last line is cut short (the file ends "
                                                               "inside a quoted cell)", "formats read"]),
    ("p.json", '[{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},\n'
               ' {"conversations": [{"from": "hu', ["p.json:2: the file is cut short, it ends inside a record",
                                                     "formats read"]),
    ("p.jsonl", "", ["empty", "formats read"]),
    ("p.json", "  \n", ["empty"]),
    ("p.csv", "\ufeff", ["empty"]),
    ("p.txt", "\n \n", ["empty", "formats read"]),
    ("p.txt", b"caf\xe9\n", ["not UTF-8 text"]),
    ("p.jsonl", b'{"prompt": "caf\xe9"}\n', ["not UTF-8 text"]),
    ("p.yaml", "prompt: a\n", ["the suffix '.yaml' names no format", "formats read"]),
]


@pytest.mark.parametrize("name, data, words", BAD, ids=[f"{n}-{i}" for i, (n, _d, _w) in enumerate(BAD)])
def test_a_bad_file_names_itself_the_line_and_what_was_expected(tmp_path, name, data, words):
    path = write(tmp_path, name, data)
    with pytest.raises(ConfigError) as err:
        datasets.load(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    for w in words:
        assert w in message, message


def test_a_folder_without_prompt_files_says_which_formats_are_read(tmp_path):
    write(tmp_path, "notes.md", "# not prompts")
    with pytest.raises(ConfigError, match="no prompt files in it .formats read"):
        datasets.load(tmp_path)


def _sharegpt_file(tmp_path, n):
    records = [{"id": str(i), "conversations": [{"from": "human", "value": f"question number {i} " + "x" * (i % 50)},
                                                {"from": "gpt", "value": "y" * (i % 400)}]} for i in range(n)]
    return write(tmp_path, "big.json", json.dumps(records))


def test_a_sample_is_drawn_with_the_seed_and_only_its_records_are_tokenized(tmp_path, monkeypatch):
    path = _sharegpt_file(tmp_path, 2000)
    counted = []
    real = tokencount.estimate_tokens
    monkeypatch.setattr(tokencount, "estimate_tokens", lambda text: counted.append(text) or real(text))
    a = datasets.load(path, sample=25, seed=1)
    assert len(a.prompts) == 25 and len(counted) == 25 and a.records == 2000 and a.sample == 25
    b = datasets.load(path, sample=25, seed=1)
    c = datasets.load(path, sample=25, seed=2)
    assert [p.id for p in a.prompts] == [p.id for p in b.prompts] != [p.id for p in c.prompts]
    assert len({p.id for p in a.prompts}) == 25
    assert "25 of 2000 records" in a.line()
    assert len(datasets.load(path, sample=5000, seed=1).prompts) == 2000  # more than there are: all of them


def test_pruning_drops_what_vllm_drops_and_keeps_drawing_up_to_the_sample(tmp_path):
    def record(prompt, reply):
        return {"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": reply}]}
    ok = [record(f"a fine question {i:04d}", "a fine answer") for i in range(20)]
    bad = [record("hi?", "a fine answer"),  # 1 token: under 4
           record("a fine question", "ok"),  # the reply under 4
           record("q" * 4100 + " long", "a fine answer"),  # over 1,024 tokens
           record("p" * 3600, "r" * 4800)]  # 900 + 1,200 tokens: over 2,048 together
    path = write(tmp_path, "mixed.json", json.dumps(bad + ok))
    full = datasets.load(path, prune=True)
    assert full.pruned == 4 and len(full.prompts) == 20 and "pruned 4 by length" in full.line()
    assert len(datasets.load(path).prompts) == 24  # an option, off by default
    assert len(datasets.load(path, sample=20, seed=3, prune=True).prompts) == 20
    with pytest.raises(ConfigError, match="no prompt is left after pruning by length .4 pruned"):
        datasets.load(write(tmp_path, "allbad.json", json.dumps(bad)), prune=True)


def test_a_bad_dataset_line_stops_the_cli_before_anything_is_sent(capsys, tmp_path):
    from tests.support.fakes.traffic import KEY, FakeOpenAI
    path = write(tmp_path, "prompts.jsonl", '{"prompt": "a"}\n{"prompt": "b"} trailing\n')
    with FakeOpenAI() as fake:
        code = cli.main(["--url", fake.url, "--api-key", KEY, "--max", "3", "--prompts", str(path),
                         "--results-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{path}:2: not valid JSON" in err and "formats read" in err
    assert fake.requests == [] and not (tmp_path / "runs").exists()


def test_a_sharegpt_run_sends_the_first_human_turn_with_the_replys_length_and_the_summary_says_so(capsys, tmp_path):
    from tests.support.fakes.traffic import KEY, FakeOpenAI
    summary = tmp_path / "s.json"
    with FakeOpenAI([{"tokens": 2}]) as fake:
        code = cli.main(["--url", fake.url, "--api-key", KEY, "--max", "3", "--prompts", str(FIXTURES / "sharegpt.json"),
                         "--seed", "4", "--no-progress", "--summary-json", str(summary), "--token-count", "estimate"])
    assert code == 0
    ds = datasets.load(FIXTURES / "sharegpt.json")
    sent = sorted((body["messages"][-1]["content"], body["max_tokens"]) for _, body in fake.requests)
    assert sent == sorted((p.messages[-1]["content"], p.max_tokens) for p in ds.prompts)
    doc = json.loads(summary.read_text())
    assert doc["dataset"]["formats"] == {"sharegpt": 1} and doc["dataset"]["used"] == 3
    assert doc["dataset"]["skipped"] == {"fewer than two turns": 1, "no human turn": 1}
    assert "prompts: 3 records from 1 sharegpt; skipped 1" in capsys.readouterr().err
    with FakeOpenAI([{"tokens": 2}]) as fake:  # --max-tokens wins over the reply's length
        assert cli.main(["--url", fake.url, "--api-key", KEY, "--max", "2", "--prompts", str(FIXTURES / "sharegpt.json"),
                         "--max-tokens", "7", "--no-progress"]) == 0
    assert {body["max_tokens"] for _, body in fake.requests} == {7}
