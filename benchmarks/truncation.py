#!/usr/bin/env python
"""Truncating a long chat (issue 15, finding 10): one /api/chat of 1,500 messages (about 133 KB)
that outgrows num_ctx, against a real ``corral serve`` with SmolLM2, answered with one token.

Each run sends the long chat, then (the baseline) only the messages the server kept of it, which
need no truncation: the same prompt for the model to read. For both it prints the server's own
figures: ``total_duration``, the model's part (``prompt_eval_duration`` + ``eval_duration`` +
``load_duration``), and the rest, which for the long chat is the truncation (renders and
tokenizations). The goal: truncation under 2 s on the 2-core machine the issue was measured on
(main at 3c17660 spent over 170 s of CPU on it).

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
        messages.append({"role": role, "content": f"Message {index:04}: the quick brown fox jumps over the lazy dog "
                                                  "again, and the dog sleeps on."})
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


def chat(client: httpx.Client, url: str, messages: list[dict[str, str]], num_ctx: int) -> dict[str, float]:
    """The server's figures for one chat, in seconds, and the prompt tokens it kept."""
    response = client.post(f"{url}/api/chat", json={
        "model": "smol", "messages": messages, "stream": False,
        "options": {"num_ctx": num_ctx, "num_predict": 1, "temperature": 0}})
    response.raise_for_status()
    body = response.json()
    total = body.get("total_duration", 0) / 1e9
    model = sum(body.get(key, 0) for key in ("load_duration", "prompt_eval_duration", "eval_duration")) / 1e9
    return {"total": total, "model": model, "rest": total - model, "tokens": body.get("prompt_eval_count", 0)}


def kept(messages: list[dict[str, str]], tokens: int, url: str, client: httpx.Client, num_ctx: int) -> list[dict[str, str]]:
    """The system message and the most recent messages whose chat has ``tokens`` prompt tokens."""
    low, high = 1, len(messages) - 1  # the fewest recent messages that make as long a prompt
    while low < high:
        middle = (low + high) // 2
        if chat(client, url, messages[:1] + messages[-middle:], num_ctx)["tokens"] >= tokens:
            high = middle
        else:
            low = middle + 1
    return messages[:1] + messages[-low:]


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
        results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in sides}
        for name, extra in sides.items():
            env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
            env.update(HOME=str(root / "home"), OLLAMA_MODELS=str(store), **extra)
            with running_server(env) as url, httpx.Client(timeout=3600) as client:
                first = chat(client, url, messages, args.num_ctx)  # loads the model
                baseline = kept(messages, first["tokens"], url, client, args.num_ctx)
                print(f"  {name}: {first['tokens']} prompt tokens kept, {len(baseline) - 1} messages and the system "
                      f"one", flush=True)
                for run in range(args.runs):
                    long, short = chat(client, url, messages, args.num_ctx), chat(client, url, baseline, args.num_ctx)
                    results[name].append((long["rest"], short["rest"], long["model"], short["model"]))
                    print(f"  {name} run {run + 1}: long chat {long['total']:.2f} s ({long['rest']:.2f} s outside "
                          f"the model), kept messages alone {short['total']:.2f} s ({short['rest']:.2f} s)", flush=True)
    print()
    print(f"{'server':<16} {'outside the model, median s: long chat':>40} {'kept alone':>11} {'truncation':>11}")
    for name, rows in results.items():
        long_rest = statistics.median(row[0] for row in rows)
        short_rest = statistics.median(row[1] for row in rows)
        print(f"{name[:16]:<16} {long_rest:>40.2f} {short_rest:>11.2f} {long_rest - short_rest:>11.2f}")


if __name__ == "__main__":
    main()
