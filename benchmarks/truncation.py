#!/usr/bin/env python
"""Truncating a long chat (issue 15, finding 10): one /api/chat of 1,500 messages (about 133 KB)
that outgrows num_ctx, against a real ``corral serve`` with SmolLM2, answered with one token.

Each run times, from the client, the chat (which renders and tokenizes to find what fits) and a
one-message chat right after it (the baseline: the same request with nothing to truncate), and
prints the two side by side with the server's own ``prompt_eval_count``. The goal is a truncating
chat under 2 s on the 2-core machine the issue was measured on (main at 3c17660 took over 170 s).

    python benchmarks/truncation.py                    # 3 runs
    python benchmarks/truncation.py --messages 3000 --num-ctx 4096 --runs 5
    python benchmarks/truncation.py --against COMMIT --runs 1   # also a server of that commit

``--against`` overlays COMMIT's sources on the path of a second server (the editable install comes
after them), as docs/performance.md describes; expect minutes per run for the old code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from servers import running_server, store_with_smollm2  # noqa: E402

from corral.testing import smollm2_path  # noqa: E402


def conversation(count: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a terse assistant."}]
    for index in range(count):
        role = "user" if index % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"Message {index}: the quick brown fox jumps over the lazy dog again."})
    return messages


def overlay(commit: str, into: Path) -> Path:
    """COMMIT's sources laid out as the ``corral`` package, for PYTHONPATH."""
    source, package = into / "src", into / "pkg"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    (package / "corral").parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(source / "core"), str(package / "corral")], check=True)
    for folder in ("plugins", "contrib"):
        subprocess.run(["cp", "-r", str(source / folder), str(package / "corral" / folder)], check=True)
    return package


def chat(client: httpx.Client, url: str, messages: list[dict[str, str]], num_ctx: int) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.post(f"{url}/api/chat", json={
        "model": "smol", "messages": messages, "stream": False,
        "options": {"num_ctx": num_ctx, "num_predict": 1, "temperature": 0}})
    response.raise_for_status()
    return time.perf_counter() - started, response.json().get("prompt_eval_count", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--num-ctx", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", metavar="COMMIT", help="also measure a server running this commit")
    args = parser.parse_args()

    messages = conversation(args.messages)
    size = sum(len(m["content"]) for m in messages)
    print(f"{len(messages)} messages, {size / 1000:.0f} KB of content, num_ctx {args.num_ctx}")
    with tempfile.TemporaryDirectory(prefix="corral-truncation-") as temporary:
        root = Path(temporary)
        store = store_with_smollm2(root / "models", smollm2_path())
        sides = {"this checkout": {}}
        if args.against:
            sides[args.against] = {"PYTHONPATH": str(overlay(args.against, root / "against"))}
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in sides}
        for name, extra in sides.items():
            env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
            env.update(HOME=str(root / "home"), OLLAMA_MODELS=str(store), **extra)
            with running_server(env) as url, httpx.Client(timeout=3600) as client:
                chat(client, url, messages[-1:], args.num_ctx)  # load the model
                for run in range(args.runs):
                    long_seconds, prompt_tokens = chat(client, url, messages, args.num_ctx)
                    short_seconds, _ = chat(client, url, messages[-1:], args.num_ctx)
                    results[name].append((long_seconds, short_seconds, prompt_tokens))
                    print(f"  {name} run {run + 1}: {long_seconds:.2f} s truncating ({prompt_tokens} prompt tokens "
                          f"kept), {short_seconds:.2f} s for one message", flush=True)
    print()
    print(f"{'server':<16} {'truncating chat (median s)':>28} {'one message (median s)':>24} {'extra':>8}")
    for name, rows in results.items():
        long_median = statistics.median(row[0] for row in rows)
        short_median = statistics.median(row[1] for row in rows)
        print(f"{name[:16]:<16} {long_median:>28.2f} {short_median:>24.2f} {long_median - short_median:>8.2f}")


if __name__ == "__main__":
    main()
