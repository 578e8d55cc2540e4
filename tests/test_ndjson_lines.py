"""A streamed answer's text lines, written from parts encoded once per request, are byte for byte
the lines that encoding each whole object gives."""

from __future__ import annotations

import pytest

from corral import Metrics, Reply
from corral.sdk.http import go_json
from corral.plugins.server import inference_api

TEXTS = ("Hello", "", " <b>&amp;</b> ", 'a "quote", a \\ backslash', "tab\t newline\n return\r bs\b ff\f nul\x00 us\x1f",
         "é 日本語 🐑", "line\u2028paragraph\u2029", "}\n{\"done\":true}")
OTHERS = (
    Reply(text="visible", thinking="hidden"),
    Reply(thinking="only thinking"),
    Reply(tool_calls=({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},)),
    Reply(done=True, done_reason="stop", metrics=Metrics(total_ns=5, eval_tokens=3, eval_ns=7)),
    Reply(text="last", done=True, done_reason="length", context=(1, 2, 3)),
)


@pytest.mark.parametrize("shape", [inference_api._generate_object, inference_api._chat_object])
def test_lines_from_parts_equal_the_whole_objects_encoded(monkeypatch: pytest.MonkeyPatch, shape) -> None:
    monkeypatch.setattr(inference_api, "now_utc", lambda: "2026-12-07T01:02:03.4567Z")
    for model in ("smol", "hf.co/owner/model-<&>:Q4_K_M"):
        lines = inference_api._Lines(model, shape)
        for reply in (*(Reply(text=text) for text in TEXTS), *OTHERS):
            assert lines(reply) == (go_json(shape(model, reply)) + "\n").encode(), reply
