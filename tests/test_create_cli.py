"""`corral create` as a user runs it, against a real server: a Modelfile in another folder, local
files uploaded once, --quantize, safetensors folders, `show --modelfile` round trips, errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import httpx
import pytest

from support import run_corral
from tiny_llama import write_tiny_llama, write_tiny_lora

pytestmark = pytest.mark.slow


@pytest.fixture
def cli_env(server: str, server_env: dict[str, str]) -> dict[str, str]:
    return {**server_env, "OLLAMA_HOST": server.removeprefix("http://")}


def create(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str, str]:
    result = run_corral("create", *args, env=env, cwd=cwd, timeout=600)
    return result.returncode, result.stdout, result.stderr


def show(server: str, model: str) -> dict:
    return httpx.post(f"{server}/api/show", json={"model": model}, timeout=60).json()


def test_modelfile_in_another_folder_with_a_new_gguf_and_quantize(server: str, cli_env: dict[str, str],
                                                                   tmp_path: Path, smollm2_gguf: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    write_tiny_llama(weights / "tiny-f16.gguf", smollm2_gguf)
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "Modelfile").write_text(
        "# a tiny random llama\nFROM ../weights/tiny-f16.gguf\nSYSTEM You are tiny.\n"
        "PARAMETER temperature 0\nPARAMETER stop <|im_end|>\nMESSAGE user hi\nMESSAGE assistant hello\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    code, _out, err = create(cli_env, "tiny", "-f", "../defs/Modelfile", "--quantize", "q4_K_M", cwd=elsewhere)
    assert code == 0, err
    assert "copying file sha256:" in err  # the server did not have it
    for status in ("parsing GGUF", "quantizing F16 model to Q4_K_M", "using autodetected template chatml",
                   "writing manifest", "success"):
        assert status in err
    shown = show(server, "tiny")
    assert shown["details"]["quantization_level"] == "Q4_K_M"
    assert shown["system"] == "You are tiny."
    assert shown["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    verbose = httpx.post(f"{server}/api/show", json={"model": "tiny", "verbose": True}, timeout=60).json()
    types = {tensor["name"]: tensor["type"] for tensor in verbose["tensors"]}
    assert types["blk.0.attn_q.weight"] == "Q4_K" and types["blk.0.attn_norm.weight"] == "F32"

    reply = httpx.post(f"{server}/api/generate", timeout=300, json={
        "model": "tiny", "prompt": "Hello", "stream": False, "options": {"num_predict": 8, "seed": 3}}).json()
    assert reply["done"] is True and reply["eval_count"] > 0

    # The second time the file is on the server already: nothing is uploaded.
    code, _out, err = create(cli_env, "tiny-f16", "-f", str(defs / "Modelfile"), cwd=elsewhere)
    assert code == 0, err
    assert "copying file" not in err and "quantizing" not in err
    assert show(server, "tiny-f16")["details"]["quantization_level"] == "F16"


def test_an_adapter_changes_what_the_model_says(server: str, cli_env: dict[str, str], tmp_path: Path,
                                               smollm2_gguf: Path) -> None:
    write_tiny_llama(tmp_path / "tiny.gguf", smollm2_gguf)
    write_tiny_lora(tmp_path / "lora.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./tiny.gguf\nPARAMETER temperature 0\n")
    assert create(cli_env, "base", cwd=tmp_path)[0] == 0
    (tmp_path / "Modelfile.lora").write_text("FROM base\nADAPTER ./lora.gguf\n")
    code, _out, err = create(cli_env, "tuned", "-f", "Modelfile.lora", cwd=tmp_path)
    assert code == 0, err
    assert "copying file sha256:" in err and "success" in err
    assert "ADAPTER " in show(server, "tuned")["modelfile"]

    def complete(model: str) -> str:
        reply = httpx.post(f"{server}/api/generate", timeout=300, json={
            "model": model, "prompt": "Hello", "raw": True, "stream": False, "options": {"num_predict": 8}})
        assert reply.status_code == 200, reply.text
        return reply.json()["response"]

    assert complete("base") != complete("tuned")

    (tmp_path / "Modelfile.bad").write_text("FROM base\nADAPTER ./tiny.gguf\n")
    code, _out, err = create(cli_env, "bad", "-f", "Modelfile.bad", cwd=tmp_path)
    assert code == 1 and "is not a LoRA adapter" in err


def test_show_modelfile_round_trips(server: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    httpx.post(f"{server}/api/create", timeout=120, json={
        "model": "rich", "from": "smol", "system": "Line one.\nLine \"two\".", "license": ["MIT", "Apache 2"],
        "messages": [{"role": "user", "content": " spaced "}, {"role": "assistant", "content": "ok"}],
        "parameters": {"top_k": 3, "use_mmap": False, "stop": ["A B", "<|im_end|>"]}, "stream": False,
    }).raise_for_status()
    shown = run_corral("show", "rich", "--modelfile", env=cli_env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    (tmp_path / "Modelfile").write_text(shown.stdout)
    code, _out, err = create(cli_env, "rich-copy", cwd=tmp_path)  # ./Modelfile by default
    assert code == 0, err
    assert "copying file" not in err  # FROM names the blob the server already has
    original, copy = show(server, "rich"), show(server, "rich-copy")
    for key in ("template", "system", "parameters", "license", "messages", "model_info", "capabilities"):
        assert copy.get(key) == original.get(key), key
    again = run_corral("show", "rich-copy", "--modelfile", env=cli_env, timeout=60).stdout
    assert again.replace("rich-copy", "rich") == shown.stdout


def test_a_safetensors_folder_converted_and_quantized(server: str, cli_env: dict[str, str], tmp_path: Path,
                                                      minilm_folder: Path) -> None:
    os.symlink(minilm_folder, tmp_path / "minilm")
    (tmp_path / "Modelfile").write_text("FROM ./minilm\n")
    code, _out, err = create(cli_env, "minilm", "-f", str(tmp_path / "Modelfile"), cwd=tmp_path)
    assert code == 0, err
    assert "converting model" in err and "success" in err
    code, _out, err = create(cli_env, "minilm-q8", "-f", str(tmp_path / "Modelfile"), "-q", "q8_0", cwd=tmp_path)
    assert code == 0, err
    assert "copying file" not in err and "quantizing F16 model to Q8_0" in err
    assert show(server, "minilm")["details"]["family"] == "bert"
    assert show(server, "minilm-q8")["details"]["quantization_level"] == "Q8_0"

    texts = ["The cat sits on the mat.", "A dog runs in the park.", "Stock markets fell sharply today."]

    def embed(model: str) -> list[list[float]]:
        response = httpx.post(f"{server}/api/embed", timeout=300, json={"model": model, "input": texts})
        assert response.status_code == 200, response.text
        return response.json()["embeddings"]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    full, quantized = embed("minilm"), embed("minilm-q8")
    for a, b in zip(full, quantized):
        assert cosine(a, b) > 0.99
    # Still sensible: the two sentences about animals are closer to each other than to markets.
    assert cosine(quantized[0], quantized[1]) > cosine(quantized[0], quantized[2])


def test_errors(server: str, cli_env: dict[str, str], tmp_path: Path, smol_store: Path) -> None:
    before = sorted(p.name for p in (smol_store / "manifests").rglob("*"))
    cases = [
        ("FROM smol\nPARAMETER temperature hot\n", '(line 2): PARAMETER temperature must be a number, not "hot"'),
        ("FROM smol\nSYSTEM ok\nFORM x\n", '(line 3): unknown instruction "FORM"'),
        ("FROM ./missing.gguf\n", '(line 1): FROM "./missing.gguf": no such file or directory'),
        ("FROM smol\nADAPTER ./lora.gguf\n", '(line 2): ADAPTER "./lora.gguf": no such file or directory'),
        ("FROM nothere\n", "pull model manifest"),  # not in the store: pulled first, as Ollama does
        ("FROM smol\n", "quantization is only supported for F16, BF16 and F32 models"),
    ]
    for text, message in cases:
        (tmp_path / "Modelfile").write_text(text)
        extra = ("-q", "q4_0") if text == "FROM smol\n" else ()
        code, out, err = create(cli_env, "broken", "-f", "Modelfile", *extra, cwd=tmp_path)
        assert code == 1, (text, err)
        assert f"Error: {message}" in err, (text, err)
    code, _out, err = create(cli_env, "broken", cwd=tmp_path / "..")
    assert code == 1 and "Error: no Modelfile at Modelfile (use -f to name one)" in err
    assert sorted(p.name for p in (smol_store / "manifests").rglob("*")) == before


def test_help_has_an_example(clean_env: dict[str, str]) -> None:
    result = run_corral("create", "--help", env=clean_env)
    assert result.returncode == 0 and "corral create mario -f Modelfile" in result.stdout
    assert "--quantize" in result.stdout
