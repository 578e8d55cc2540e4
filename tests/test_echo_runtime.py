"""The proof that the kernel keeps its promise to plugin authors: examples/corral-echo-runtime, a
separate distribution importing only the public surface, serves a model in a format of its own
through the real HTTP server, and its README's commands work as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import pytest

from servers import free_port, running_server
from support import REPO

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "corral-echo-runtime"


def test_an_echo_model_answers_generate_chat_and_embed_over_http(clean_env: dict[str, str]) -> None:
    with running_server(clean_env) as url:
        pulled = httpx.post(f"{url}/api/pull", json={"model": "echo/parrot", "stream": False}, timeout=60)
        assert pulled.json() == {"status": "success"}
        shown = httpx.post(f"{url}/api/show", json={"model": "echo/parrot"}, timeout=60).json()
        assert "details" in shown, shown
        assert shown["details"]["format"] == "echo" and shown["capabilities"] == ["completion"]

        generated = httpx.post(f"{url}/api/generate", json={"model": "echo/parrot", "prompt": "say this back",
                                                              "stream": False}, timeout=60).json()
        assert generated["response"] == "say this back" and generated["done_reason"] == "stop"

        client = ollama.Client(host=url)
        streamed = "".join(part.message.content for part in client.chat(
            model="echo/parrot", stream=True,
            messages=[{"role": "system", "content": "Parrot:"}, {"role": "user", "content": "polly wants"}]))
        assert streamed == "Parrot: polly wants"

        embedded = client.embed(model="echo/parrot", input=["ab", "b"])
        assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 26
        assert embedded.embeddings[1][1] == pytest.approx(1.0)  # "b" alone, normalised

        running = httpx.get(f"{url}/api/ps", timeout=10).json()["models"]
        assert [model["name"] for model in running] == ["echo/parrot:latest"]
        assert running[0]["context_length"] == 4096


def readme_block() -> list[str]:
    """The commands of the README's one fenced block."""
    text = (EXAMPLE / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "the README has one fenced block of commands"
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_the_readme_block_installs_makes_and_runs_an_echo_model(clean_env: dict[str, str]) -> None:
    commands = readme_block()
    assert commands[0] == "pip install ./examples/corral-echo-runtime"
    scripts = str(Path(sys.executable).parent)
    env = {**clean_env, "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
           "PATH": scripts + os.pathsep + clean_env.get("PATH", os.defpath)}
    started = ""
    try:
        for command in commands:
            result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                                    timeout=600)
            started += result.stderr
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert result.stdout.strip() == "Hello from a model corral has never seen"
    finally:
        for pid in re.findall(r"Started corral server at \S+ \(pid (\d+)", started):
            os.kill(int(pid), signal.SIGTERM)
