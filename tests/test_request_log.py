"""The server's log: one line per request and per event, logfmt or JSON, nothing a client sends
able to split or forge a line; and one RequestFinished event per request with its figures."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from corral.plugins.server.logs import JsonFormatter, LogfmtFormatter, logfmt_value
from servers import running_server

FORGED = "time=2026-01-01T00:00:00.000+00:00 level=INFO source=corral.server msg=forged"


def wait_for(lines: list[str], check: Callable[[str], bool], timeout: float = 10) -> str:
    """The first log line that passes ``check`` (a request is logged just after its last byte)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if check(line):
                return line
        time.sleep(0.05)
    raise AssertionError("no such log line in:\n" + "".join(lines))


def record(message: str, *args: object, fields: dict[str, object] | None = None,
           exc_info: object = None) -> logging.LogRecord:
    item = logging.LogRecord("corral.test", logging.WARNING, __file__, 1, message, args, exc_info)
    if fields is not None:
        item.fields = fields
    return item


@pytest.mark.parametrize("value, expected", [
    ("plain-word_1.2:3/x@y+z", "plain-word_1.2:3/x@y+z"),
    ("two words", '"two words"'),
    ("", '""'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("line\nbreak\r", '"line\\nbreak\\r"'),
    ("esc\x1b[31m", '"esc\\u001b[31m"'),
    ("nel\x85 ls\u2028 ps\u2029 rtl\u202e zw\u200b", '"nel\\u0085 ls\\u2028 ps\\u2029 rtl\\u202e zw\\u200b"'),
    ("lone\ud800", '"lone\\ud800"'),
    ("smöl:latest", '"smöl:latest"'),
    (True, "true"), (3, "3"), (0.25, "0.2500"),
])
def test_logfmt_values_are_quoted_and_escaped(value: object, expected: str) -> None:
    assert logfmt_value(value) == expected
    assert len(expected.splitlines()) == 1


def test_a_logfmt_line_escapes_the_message_and_keeps_a_traceback_on_it() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    line = LogfmtFormatter().format(record("invalid option provided: %s", "x\ny", exc_info=exc_info,
                                           fields={"path": "/api/x\n" + FORGED, "skipped": None}))
    assert len(line.splitlines()) == 1
    assert ' msg="invalid option provided: x\\ny" path="/api/x\\ntime=' in line
    assert "skipped" not in line
    assert 'error="Traceback (most recent call last):\\n' in line and "ValueError: bad\\nvalue" in line


def test_a_json_line_is_one_object_with_the_fields() -> None:
    line = JsonFormatter().format(record("request", fields={"path": "/api/x\u2028y", "status": 404}))
    assert len(line.splitlines()) == 1 and line.isascii()
    data = json.loads(line)
    assert data["msg"] == "request" and data["level"] == "WARNING" and data["source"] == "corral.test"
    assert data["path"] == "/api/x\u2028y" and data["status"] == 404 and "time" in data


@pytest.mark.slow
def test_no_request_can_forge_or_split_a_log_line(server_env: dict[str, str]) -> None:
    """Issue 15 item 12: ``GET /api/x%0A...`` wrote a second, forged log line."""
    output: list[str] = []
    with running_server({**server_env, "OLLAMA_DEBUG": "1"}, log=output) as url:
        assert httpx.get(f"{url}/api/x%0A{FORGED.replace(' ', '%20')}").status_code == 404
        line = wait_for(output, lambda line: "/api/x" in line)
        # obs-text header bytes are legal HTTP; \x85 (NEL) is a line break to Python and some viewers
        response = httpx.get(f"{url}/api/version", headers={"User-Agent": b"agent\x85" + FORGED.encode()})
        assert response.status_code == 200
        agent_line = wait_for(output, lambda line: "agent" in line and "/api/version" in line)
        load = {"model": "smol", "prompt": "", "options": {"x\n" + FORGED: 1}}  # an unknown option is logged
        assert httpx.post(f"{url}/api/generate", json=load, timeout=120).status_code == 200
        option_line = wait_for(output, lambda line: "invalid option provided" in line)
        wait_for(output, lambda line: "/api/generate" in line)
        many = {"model": "smol", "prompt": "", "options": {f"k{index}": 0 for index in range(20000)}}
        assert httpx.post(f"{url}/api/generate", json=many, timeout=120).status_code == 200
        many_line = wait_for(output, lambda line: "invalid option provided: k0" in line)
    assert 'msg="invalid option provided: k0, k1, k2, k3, k4 and 19995 more"' in many_line
    assert sum("invalid option provided" in line for line in output) == 2  # one per request
    assert 'path="/api/x\\ntime=2026-01-01T00:00:00.000+00:00 level=INFO source=corral.server msg=forged"' in line
    assert " endpoint=unmatched status=404 rejected=invalid " in line
    assert 'user_agent="agent\\u0085time=' in agent_line
    assert 'msg="invalid option provided: x\\ntime=' in option_line
    for line in "".join(output).splitlines():  # outside quoted values: one time= per line, no forgery
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
        assert bare.startswith("time=") and len(re.findall(r"(?:^| )time=", bare)) == 1, line
        assert "forged" not in bare, line


@pytest.mark.slow
def test_json_log_and_request_finished_events(server_env: dict[str, str], tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(f'[plugins]\nenable = ["event_log"]\n[event_log]\npath = "{events_file}"\n')
    env = {**server_env, "CORRAL_LOG_FORMAT": "json", "CORRAL_CONFIG": str(config)}
    output: list[str] = []
    with running_server(env, log=output) as url:
        chat = httpx.post(f"{url}/api/chat", timeout=120, json={
            "model": "smol", "messages": [{"role": "user", "content": "Say hello."}], "stream": False,
            "options": {"num_predict": 8, "temperature": 0}}).json()
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=120, json={
                "model": "smol", "messages": [{"role": "user", "content": "Count to five."}], "stream": True,
                "max_tokens": 6, "stream_options": {"include_usage": True}}) as response:
            chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
        usage = chunks[-1]["usage"]
        assert httpx.post(f"{url}/api/generate", json={"model": "nothere", "prompt": "x"}).status_code == 404
        digest = "sha256:" + "0" * 64
        assert httpx.head(f"{url}/api/blobs/{digest}").status_code == 404
        assert httpx.get(f"{url}/nowhere").status_code == 404
        wait_for(output, lambda line: "/nowhere" in line)
    lines = [json.loads(line) for line in "".join(output).splitlines()]
    requests = {line["path"]: line for line in lines if line["msg"] == "request"}
    line = requests["/api/chat"]
    assert line["source"] == "corral.server.requests" and line["level"] == "INFO"
    assert line["endpoint"] == "/api/chat" and line["status"] == 200 and line["model"] == "smol:latest"
    assert line["prompt_tokens"] == chat["prompt_eval_count"] and line["completion_tokens"] == chat["eval_count"]
    assert 0 < line["ttft_seconds"] < line["total_seconds"]
    assert line["load_seconds"] > 0.05  # the first request loaded the model
    loaded = [line for line in lines if line["msg"] == "ModelLoaded"]
    assert len(loaded) == 1 and loaded[0]["source"] == "corral.events" and loaded[0]["name"] == "smol:latest"

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    finished = [event for event in events if event["event"] == "RequestFinished"]
    by_endpoint = {event["endpoint"]: event for event in finished}
    assert len(finished) == len(requests)  # once per request, the readiness probes included
    chat_event, openai = by_endpoint["/api/chat"], by_endpoint["/v1/chat/completions"]
    assert chat_event["model"] == "smol:latest" and chat_event["completion_tokens"] == chat["eval_count"]
    assert chat_event["rejected"] is None and chat_event["method"] == "POST"
    assert abs(chat_event["load_seconds"] + chat_event["queue_seconds"] - chat["load_duration"] / 1e9) < 0.005
    assert openai["status"] == 200 and openai["model"] == "smol:latest"
    assert openai["prompt_tokens"] == usage["prompt_tokens"] and openai["completion_tokens"] == usage["completion_tokens"]
    assert openai["load_seconds"] == 0 and 0 < openai["ttft_seconds"] < openai["total_seconds"]
    missing = by_endpoint["/api/generate"]
    assert missing["status"] == 404 and missing["rejected"] == "invalid" and missing["model"] is None
    assert by_endpoint["/api/blobs/{digest}"]["method"] == "HEAD"
    assert by_endpoint["unmatched"]["status"] == 404
