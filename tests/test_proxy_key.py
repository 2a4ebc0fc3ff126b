"""The proxy key's one header, one redaction marker and one key file path."""
from pathlib import Path

from llmops.proxy import key as proxykey


def test_the_header_carries_the_key_and_no_key_sends_no_header():
    assert proxykey.auth_headers("sk-abc") == {"Authorization": "Bearer sk-abc"}
    assert proxykey.auth_headers("") == {} and proxykey.auth_headers(None) == {}


def test_redaction_uses_one_marker_for_text_and_bodies():
    assert proxykey.redact("key sk-abc in a log line sk-abc", "sk-abc") == "key [redacted] in a log line [redacted]"
    assert proxykey.redact_bytes(b'{"detail": "sk-abc"}', "sk-abc") == b'{"detail": "[redacted]"}'
    assert proxykey.redact("nothing to hide", "") == "nothing to hide"


def test_the_key_file_lives_in_the_state_dir():
    assert proxykey.key_file(Path("/x/.run")) == Path("/x/.run/litellm_key")
