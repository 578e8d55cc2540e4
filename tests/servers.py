"""Start a real ``corral serve`` on a free port, as a user would, and stop it cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ollama_store import ollama_model

SMOL_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


TOOLS_TEMPLATE = (
    "{{- if or .System .Tools }}<|im_start|>system\n{{ .System }}"
    "{{- if .Tools }}\nYou can call these tools by answering with JSON:\n{{ range .Tools }}{{ json .Function }}\n{{ end }}"
    "{{- end }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
    "{{- range .ToolCalls }}{{ json .Function }}{{ end }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
THINKING_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{- if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ if $.Think }}<think>\n{{ end }}"
)
WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
WEATHER_CALL_SHAPE = {"type": "object", "properties": {
    "name": {"enum": ["get_weather"]},
    "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    "required": ["name", "arguments"]}
"""A tool, and the JSON schema that makes SmolLM2 answer with a call to it (a 135M model needs the help)."""
SMOL_PARAMS = {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.2, "num_predict": 1024}
"""SmolLM2's parameters in test stores. ``num_predict``: on some questions the 135M model rambles to
the end of its 4,096-token context (one "What is two plus two?" in five), minutes on a loaded CI
machine; a test that wants more says so in its request."""


def processes_with(command: bytes, environment: str) -> list[int]:
    """Processes whose command line holds ``command`` and whose environment has ``environment``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if command in cmdline and environment.encode() in environ:
                pids.append(int(entry.name))
    return pids


def runner_pids(store: Path) -> list[int]:
    """The llama.cpp runner processes (a warm spare included) of servers of ``store``."""
    return processes_with(b"runtime_llamacpp.runner", f"OLLAMA_MODELS={store}")


def store_with_smollm2(root: Path, gguf: Path, name: tuple[str, str, str, str] = ("registry.ollama.ai", "library", "smol", "latest"),
                       *, template: str = SMOL_TEMPLATE, system: str | None = "You are a helpful assistant.",
                       params: dict[str, Any] = SMOL_PARAMS) -> Path:
    """An Ollama store holding the real SmolLM2 model, as `ollama create` would leave it."""
    import hashlib

    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    link_or_copy(gguf, root / "blobs" / f"sha256-{digest}")
    ollama_model(root, name, gguf.read_bytes(), template=template, params=params,
                 system=system, model_type="134.52M", file_type="Q4_1")
    return root


@contextmanager
def running_server(env: dict[str, str], *, timeout: float = 30, scheme: str = "http", verify: Any = True,
                   log: list[str] | None = None, command: list[str] | None = None) -> Iterator[str]:
    """Run ``corral serve`` (or ``command``, a server like it) with ``env``; yield its URL; SIGTERM
    it and check it exits cleanly.

    ``scheme="https"`` with ``verify`` (what httpx takes) for a server with TLS settings in ``env``;
    ``log`` receives the server's output lines as they come."""
    port = free_port()
    env = {**env, "OLLAMA_HOST": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        command or [sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # Drain the log as it comes: a pipe nobody reads fills up (64 KB) and then blocks the server.
    lines: list[str] = [] if log is None else log
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()

    def output() -> str:
        reader.join(timeout=10)
        return "".join(lines)

    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"corral serve did not start:\n{output()}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"corral serve did not stop on SIGTERM:\n{output()}") from None
        if process.returncode != 0:
            raise RuntimeError(f"corral serve exited with {process.returncode}:\n{output()}")


@contextmanager
def empty_ollama() -> Iterator[str]:
    """A stub on a loopback port that answers what ``corral list`` and ``corral ps`` ask as a
    server with no models does; yields its HOST:PORT."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            body = b"Ollama is running" if self.path == "/" else b'{"models": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{stub.server_address[1]}"
    finally:
        stub.shutdown()
        stub.server_close()
