"""POST /api/create through a real server: both request forms, streamed and not, the real
`ollama` client, errors with Ollama's statuses, and a failed create leaving the store as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import ollama
import pytest

pytestmark = pytest.mark.slow

MARIO_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def manifests(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in (store / "manifests").rglob("*") if p.is_file()}


def chat_prompt_tokens(server: str, model: str) -> tuple[int, str]:
    reply = httpx.post(f"{server}/api/chat", timeout=120, json={
        "model": model, "stream": False, "messages": [{"role": "user", "content": "What is your name?"}],
        "options": {"temperature": 0, "seed": 1, "num_predict": 12}}).json()
    return reply["prompt_eval_count"], reply["message"]["content"]


def test_current_form_from_the_gguf_then_chat(server: str, smollm2_gguf: Path) -> None:
    digest = digest_of(smollm2_gguf)
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 200  # smol already uses this blob
    response = httpx.post(f"{server}/api/create", timeout=120, json={
        "model": "mario", "files": {"SmolLM2.gguf": digest}, "template": MARIO_TEMPLATE,
        "system": "You are Mario from Super Mario Bros.", "parameters": {"temperature": 0.3, "stop": ["<|im_end|>"]},
        "messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "It's-a me, Mario!"}],
        "license": ["MIT"],
    })
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    statuses = [item["status"] for item in lines(response)]
    assert statuses[0] == "parsing GGUF"
    assert f"using existing layer {digest}" in statuses
    assert not any("autodetected" in status for status in statuses)  # a TEMPLATE was given
    assert statuses[-2:] == ["writing manifest", "success"]

    shown = httpx.post(f"{server}/api/show", json={"model": "mario"}).json()
    assert shown["system"] == "You are Mario from Super Mario Bros."
    assert shown["template"] == MARIO_TEMPLATE
    assert shown["license"] == "MIT"
    assert shown["messages"][1] == {"role": "assistant", "content": "It's-a me, Mario!"}
    assert "temperature                    0.3" in shown["parameters"]
    assert shown["details"]["quantization_level"] == "Q4_1"

    base_tokens, _ = chat_prompt_tokens(server, "smol")
    mario_tokens, answer = chat_prompt_tokens(server, "mario")
    assert answer.strip()
    # The system prompt and the two example messages are in mario's prompt, not in smol's.
    assert mario_tokens > base_tokens + 15


def test_legacy_form_with_a_modelfile_not_streamed(server: str) -> None:
    modelfile = 'FROM smol\nSYSTEM """You are Luigi."""\nPARAMETER temperature 0\nPARAMETER num_ctx 1024\n'
    response = httpx.post(f"{server}/api/create", timeout=120,
                          json={"name": "luigi", "modelfile": modelfile, "stream": False})
    assert (response.status_code, response.json()) == (200, {"status": "success"})
    shown = httpx.post(f"{server}/api/show", json={"model": "luigi"}).json()
    assert shown["system"] == "You are Luigi."
    assert "num_ctx                        1024" in shown["parameters"]
    assert shown["details"]["parent_model"] == "smol:latest"
    reply = httpx.post(f"{server}/api/generate", timeout=120, json={
        "model": "luigi", "prompt": "Say hello.", "stream": False, "options": {"num_predict": 8}}).json()
    assert reply["response"].strip() and reply["done"] is True


def test_legacy_form_with_a_blob_digest(server: str, smollm2_gguf: Path) -> None:
    modelfile = f"FROM @{digest_of(smollm2_gguf)}\nPARAMETER top_k 5\n"
    response = httpx.post(f"{server}/api/create", timeout=120, json={"name": "fromblob", "modelfile": modelfile})
    statuses = [item["status"] for item in lines(response)]
    assert "using autodetected template chatml" in statuses and statuses[-1] == "success"
    shown = httpx.post(f"{server}/api/show", json={"model": "fromblob"}).json()
    assert "<|im_start|>" in shown["template"] and "top_k" in shown["parameters"]


def test_the_ollama_client(server: str) -> None:
    client = ollama.Client(host=server, timeout=120)
    result = client.create(model="peach", from_="smol", system="You are Princess Peach.",
                           parameters={"temperature": 0.1})
    assert result.status == "success"
    progress = [item.status for item in client.create(model="peach2", from_="peach", stream=True)]
    assert progress[-1] == "success"
    assert "SYSTEM You are Princess Peach." in client.show("peach2").modelfile
    with pytest.raises(ollama.ResponseError) as raised:
        client.create(model="nobody", from_="peach", template="{{ .Prompt")
    assert raised.value.status_code == 400
    assert "template:" in raised.value.error


ERRORS = [
    ({"model": "x"}, 400, "neither 'from' or 'files' was specified"),
    ({"model": "bad name!", "from": "smol"}, 400, "invalid model name"),
    ({"from": "smol"}, 400, "invalid model name"),
    ({"model": "x", "files": {"/etc/passwd": "sha256:" + "0" * 64}}, 400, "file path must be relative"),
    ({"model": "x", "files": {"m.gguf": "nope"}}, 400, "invalid digest format"),
    ({"model": "x", "files": {"m.gguf": 3}}, 400, "cannot unmarshal"),
    ({"model": "x", "from": "smol", "parameters": {"temprature": 1}}, 400, "unknown parameter 'temprature'"),
    ({"model": "x", "from": "smol", "quantize": "q9_9"}, 400, "unsupported quantization type q9_9"),
    ({"model": "x", "from": "smol", "quantize": "q4_0"}, 400, "quantization is only supported for F16, BF16 and F32"),
    ({"name": "x", "modelfile": "FROM smol\nPARAMETER top_k lots\n"}, 400,
     '(line 2): PARAMETER top_k must be an integer, not "lots"'),
    ({"name": "x", "modelfile": "SYSTEM hi\n"}, 400, "no FROM line"),
    ({"name": "x", "modelfile": "FROM ./model.gguf\n"}, 400, "the server does not read local files"),
    ({"model": "x", "from": "smol", "template": "{{ .Prompt"}, 400, "template:"),
]


def test_errors_have_ollama_statuses_and_change_nothing(server: str, smol_store: Path) -> None:
    before = manifests(smol_store)
    for body, status, message in ERRORS:
        for stream in (False, True):
            response = httpx.post(f"{server}/api/create", json={**body, "stream": stream}, timeout=120)
            assert response.status_code == status, (body, response.text)
            assert message in response.json()["error"], body
    assert manifests(smol_store) == before


def test_a_create_failing_halfway_leaves_the_store_as_it_was(server: str, smol_store: Path, smollm2_gguf: Path) -> None:
    before = manifests(smol_store)
    response = httpx.post(f"{server}/api/create", timeout=120, json={
        "model": "smol", "files": {"m.gguf": digest_of(smollm2_gguf)}, "system": "changed", "quantize": "q4_K_M"})
    items = lines(response)
    assert items[0] == {"status": "parsing GGUF"}  # it started...
    assert "quantization is only supported for F16, BF16 and F32 models" in items[-1]["error"]  # ...and failed
    assert manifests(smol_store) == before
    shown = httpx.post(f"{server}/api/show", json={"model": "smol"}).json()
    assert shown["system"] == "You are a helpful assistant."

