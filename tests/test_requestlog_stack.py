"""The request log of the real stack (embedded backend, real inference): the generator's records and the log agree."""
from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from llmops.traffic import TrafficConfig, run
from tests.support.env import ROOT
from tests.support.requestlog import logged

pytestmark = pytest.mark.integration


def test_generator_records_and_the_log_agree_request_by_request(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    output = tmp_path / "traffic.jsonl"
    result = run(TrafficConfig(url=stack.settings.litellm_url, api_key=stack.key, max_requests=6, concurrency=2,
                               max_tokens=8, seed=11, output=output))
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert result.exit_code == 0, (result.verdict, [r for r in records if r["status"] != "ok"])
    assert len(records) == 6 and all(r["call_id"] for r in records)
    rows = logged(stack.settings.request_log_path, [r["call_id"] for r in records])
    for record in records:
        row = rows[record["call_id"]]
        assert (row["outcome"], row["status"]) == (record["status"], record["http_status"]), (record, row)
        assert row["completion_tokens"] == record["completion_tokens"], (record, row)
        assert row["stream"] == 1 and row["ttft_ms"] > 0 and row["user_agent"].startswith("llmops-traffic")
        assert row["deployment"].startswith(stack.settings.ollama_url)


def test_official_client_requests_and_a_400_are_logged_and_exported_without_the_key(ensure_stack_ready, tmp_path):
    stack = ensure_stack_ready
    client = openai.OpenAI(base_url=f"{stack.settings.litellm_url}/v1", api_key=stack.key, max_retries=0)
    ok = client.chat.completions.with_raw_response.create(
        model="smollm2:135m", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    ids = [ok.headers["x-litellm-call-id"], bad.value.response.headers["x-litellm-call-id"]]
    rows = logged(stack.settings.request_log_path, ids)
    assert (rows[ids[0]]["outcome"], rows[ids[1]]["outcome"], rows[ids[1]]["status"]) == ("ok", "client_error", 400)
    assert rows[ids[0]]["user_agent"].startswith("OpenAI/Python")
    out = tmp_path / "export.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "requests_export.py"), "--db",
                           str(stack.settings.request_log_path), "--output", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported = {json.loads(line)["call_id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(ids) <= set(exported) and exported[ids[1]]["status"] == 400
    assert stack.key not in out.read_text()
    db_bytes = b"".join(p.read_bytes() for p in stack.settings.request_log_path.parent.glob("requests.db*"))
    assert stack.key.encode() not in db_bytes and b"Say hi" not in db_bytes


def test_export_of_a_missing_log_says_so(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "requests_export.py"), "--db",
                           str(tmp_path / "none.db"), "--output", str(tmp_path / "x.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no request log yet" in done.stderr


def test_export_bad_since_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "requests_export.py"), "--since", "whenever",
                           "--db", str(tmp_path / "none.db")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--since" in done.stderr
