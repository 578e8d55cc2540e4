"""The runnable examples in examples/ against a real server with SmolLM2, as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import running_server, store_with_smollm2
from support import REPO, clean_environ

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[str]:
    root = store_with_smollm2(tmp_path_factory.mktemp("examples") / "models", smollm2_gguf)
    env = {**clean_environ(tmp_path_factory.mktemp("home")), "OLLAMA_MODELS": str(root)}
    with running_server(env) as server:
        yield server


def run(command: list[str], url: str, *, cwd: Path | None = None, model_in_env: bool = False) -> str:
    env = {**os.environ, "OLLAMA_HOST": url}
    if model_in_env:
        env["CORRAL_MODEL"] = "smol"
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize(("script", "expected"), [
    ("ollama_chat.py", "[stop: "),
    ("ollama_generate.py", " tokens in "),
    ("ollama_embed.py", "4 vectors of 576 dimensions"),
    ("openai_chat.py", "models: smol:latest"),
])
def test_python_examples(url: str, script: str, expected: str) -> None:
    output = run([sys.executable, str(EXAMPLES / "python" / script), "smol"], url)
    assert expected in output
    assert len(output.strip().splitlines()) >= 2


def test_python_examples_take_the_model_from_the_environment(url: str) -> None:
    output = run([sys.executable, str(EXAMPLES / "python" / "ollama_embed.py")], url, model_in_env=True)
    assert "576 dimensions" in output
    missing = subprocess.run([sys.executable, str(EXAMPLES / "python" / "ollama_embed.py")],
                             env={k: v for k, v in os.environ.items() if k != "CORRAL_MODEL"},
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "usage: python ollama_embed.py MODEL" in missing.stderr


@pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None, reason="needs a JDK on PATH")
def test_java_example_streams_a_chat(url: str, tmp_path: Path) -> None:
    subprocess.run(["javac", "-d", str(tmp_path), str(EXAMPLES / "java" / "StreamChat.java")],
                   check=True, capture_output=True, timeout=300)
    output = run(["java", "-cp", str(tmp_path), "StreamChat", "smol", "What is the capital of France?"], url)
    assert "Paris" in output
    assert output.rstrip().splitlines()[-1].startswith("[done: stop, ")
    unknown = subprocess.run(["java", "-cp", str(tmp_path), "StreamChat", "nothere"], env={**os.environ, "OLLAMA_HOST": url},
                             capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 1 and "Error 404" in unknown.stderr and "model 'nothere' not found" in unknown.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl on PATH")
def test_curl_script(url: str) -> None:
    output = run(["bash", str(EXAMPLES / "curl.sh"), "smol"], url)
    assert '"done":true' in output and "data: [DONE]" in output
    assert '{"object":"list","data":[{"id":"smol:latest"' in output
