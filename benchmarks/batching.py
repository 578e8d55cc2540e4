#!/usr/bin/env python
"""Concurrency: parallel streams on one model, two models at once, and a chat's next turn.

Each measure runs against its own baseline in the same invocation, through real ``corral serve``
subprocesses (loopback port, temporary store holding the SmolLM2 test model), streaming over HTTP:

- ``parallel``: with OLLAMA_NUM_PARALLEL=N (default 4), the aggregate tokens/s of N concurrent
  streams over the tokens/s of one stream alone (goal >= 1.5); every stream must finish with all
  its tokens ("nobody cut off").
- ``models``: two models (the same weights under two names, so two runners) generating at once:
  their aggregate tokens/s over one model's stream alone (goal >= 0.9).
- ``turn``: a chat whose first turn carries about 1,500 tokens; the time to first token of its
  second turn over that of a fresh short chat (goal <= 1.2), with 1 slot and with 4 slots (other
  chats run between the two turns, so the second turn must find its own slot).

Generation is greedy with a fixed num_predict on prompts the model does not end early (it counts).
``--against REVISION`` adds a second side, a server running that git revision's code (say, main
before a change), measured run by run alternating with this checkout. Ratios are medians of the
per-run ratios. The other load on the machine is printed per run (``other``, in cores; starred
above 0.25): distrust starred runs, and compare sides only within one invocation.

    python benchmarks/batching.py [--measure parallel models turn] [--runs 3] [--against main]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming import (Server, children, cpu_seconds, machine_busy_seconds, overlay,  # noqa: E402
                       wait_until_quiet)

HISTORY_TOKENS = 1500
NOISY_CORES = 0.25


def counting(start: int) -> str:
    """A raw prompt the model goes on counting from, without ending."""
    return ", ".join(str(n) for n in range(start, start + 8)) + ","


def start_server(args: argparse.Namespace, workdir: Path, code: Path | None, **env: str) -> Server:
    """A server whose store holds ``smol`` and ``smol2`` (the same weights, two runners)."""
    server = Server(args.model, workdir, extra_env=env, code=code)
    from servers import store_with_smollm2  # on the path since Server()

    store_with_smollm2(workdir / "models", args.model, ("registry.ollama.ai", "library", "smol2", "latest"),
                       system="You are a terse assistant.")
    import httpx

    with httpx.Client() as client:
        server.wait_ready(client)
    return server


def stream(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed request: time to first text, tokens, wall time, and the final object."""
    import httpx

    started = time.perf_counter()
    first = None
    final: dict[str, Any] = {}
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=None) as response:
        for line in response.iter_lines():
            if not line:
                continue
            item = json.loads(line)
            if "error" in item:
                raise SystemExit(f"{path} failed: {item['error']}")
            text = item.get("response") or (item.get("message") or {}).get("content")
            if text and first is None:
                first = time.perf_counter()
            if item.get("done"):
                final = item
    ended = time.perf_counter()
    return {"ttft": (first or ended) - started, "tokens": final.get("eval_count", 0), "start": started,
            "end": ended, "final": final}


def together(calls: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in calls]

    def run(index: int) -> None:
        results[index] = stream(*calls[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def aggregate(results: list[dict[str, Any]]) -> float:
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return sum(r["tokens"] for r in results) / wall


class Other:
    """Cores used by processes other than this benchmark and its servers during a measurement."""

    def __init__(self) -> None:
        self.busy, self.wall, self.ours = machine_busy_seconds(), time.perf_counter(), self._ours()

    @staticmethod
    def _ours() -> float:
        pids = {os.getpid()}
        for _ in range(3):  # servers, their runners (and spare runners)
            pids |= {child for pid in pids for child in children(pid)}
        return sum(cpu_seconds(pid) for pid in pids)

    def cores(self) -> float:
        wall = time.perf_counter() - self.wall
        return max(machine_busy_seconds() - self.busy - (self._ours() - self.ours), 0.0) / wall


def generate(model: str, prompt: str, tokens: int, threads: int) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "raw": True, "stream": True,
            "options": {"temperature": 0, "seed": 42, "num_predict": tokens, "num_thread": threads}}


# -- the measures: each function does one run on one server --------------------------------------

def run_parallel(url: str, args: argparse.Namespace, run: int) -> dict[str, Any]:
    alone = stream(url, "/api/generate", generate("smol", counting(100 + run), args.tokens, args.threads))
    one = alone["tokens"] / (alone["end"] - alone["start"])
    results = together([(url, "/api/generate", generate("smol", counting(200 + 40 * i + run), args.tokens,
                                                         args.threads)) for i in range(args.parallel)])
    complete = all(r["tokens"] == args.tokens and r["final"].get("done") for r in results)
    row = {"one": one, "all": aggregate(results), "ratio": aggregate(results) / one, "complete": complete}
    row["line"] = (f"one stream {one:.1f} tok/s, {args.parallel} streams {row['all']:.1f} tok/s, "
                   f"ratio {row['ratio']:.2f}, all finished: {complete}")
    return row


def run_models(url: str, args: argparse.Namespace, run: int) -> dict[str, Any]:
    alone = stream(url, "/api/generate", generate("smol", counting(100 + run), args.tokens, args.threads))
    one = alone["tokens"] / (alone["end"] - alone["start"])
    results = together([(url, "/api/generate", generate(model, counting(200 + 40 * i + run), args.tokens,
                                                         args.threads)) for i, model in enumerate(("smol", "smol2"))])
    rates = [r["tokens"] / (r["end"] - r["start"]) for r in results]
    row = {"one": one, "all": aggregate(results), "ratio": aggregate(results) / one, "each": rates}
    row["line"] = (f"one model {one:.1f} tok/s, two at once {row['all']:.1f} tok/s ({rates[0]:.1f} + "
                   f"{rates[1]:.1f}), ratio {row['ratio']:.2f}")
    return row


def history_message(run: int) -> str:
    notes = " ".join(f"Note {i}: the lighthouse at cove {run}-{i} was painted white and red in spring." for i in
                     range(HISTORY_TOKENS // 22))
    return f"Here are my notes.\n{notes}\nWhich colours were used?"


def run_turn(url: str, args: argparse.Namespace, run: int, *, slots: int) -> dict[str, Any]:
    options = {"temperature": 0, "seed": 42, "num_predict": 8, "num_thread": args.threads}

    def chat(messages: list[dict[str, str]]) -> dict[str, Any]:
        return stream(url, "/api/chat", {"model": "smol", "messages": messages, "options": options})

    short = chat([{"role": "user", "content": f"Say a word about the number {run}."}])
    messages = [{"role": "user", "content": history_message(run)}]
    first = chat(messages)
    for i in range(slots - 1):  # other conversations meanwhile
        chat([{"role": "user", "content": f"Tell me about river {run}-{i}."}])
    answer = (first["final"].get("message") or {}).get("content") or "White and red."
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And which season was it?"}]
    second = chat(messages)
    row = {"short_ttft": short["ttft"], "second_ttft": second["ttft"], "first_ttft": first["ttft"],
           "history": second["final"].get("prompt_eval_count"), "ratio": second["ttft"] / short["ttft"]}
    row["line"] = (f"short prompt TTFT {short['ttft'] * 1000:.0f} ms; second turn of a {row['history']}-token "
                   f"chat {second['ttft'] * 1000:.0f} ms (its first turn {first['ttft'] * 1000:.0f} ms); "
                   f"ratio {row['ratio']:.2f}")
    return row


MEASURES = {
    "parallel": ("{parallel} streams / one stream", ">= 1.5", run_parallel, lambda a: {"OLLAMA_NUM_PARALLEL": str(a.parallel)}),
    "models": ("two models / one model", ">= 0.9", run_models,
               lambda a: {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "2"}),
    "turn1": ("2nd turn / short TTFT, 1 slot", "<= 1.2", lambda url, a, run: run_turn(url, a, run, slots=1),
              lambda a: {"OLLAMA_NUM_PARALLEL": "1"}),
    "turn4": ("2nd turn / short TTFT, 4 slots", "<= 1.2", lambda url, a, run: run_turn(url, a, run, slots=4),
              lambda a: {"OLLAMA_NUM_PARALLEL": "4"}),
}


def warm_up(url: str, args: argparse.Namespace) -> None:
    for model in ("smol", "smol2"):
        stream(url, "/api/generate", generate(model, counting(1), 8, args.threads))


def measure(name: str, args: argparse.Namespace, workdir: Path, sides: dict[str, Path | None]) -> dict[str, list]:
    label, _goal, once, env = MEASURES[name]
    servers = {side: start_server(args, workdir / f"{name}-{side.replace('/', '_')}", code, **env(args))
               for side, code in sides.items()}
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    try:
        for server in servers.values():
            warm_up(server.url, args)
        for run in range(1, args.runs + 1):
            for side, server in servers.items():
                if args.wait_quiet > 0:
                    load = wait_until_quiet(args.wait_quiet)
                    if load >= 0.15:
                        print(f"  (other processes still use {load:.2f} cores; measuring anyway)", flush=True)
                other = Other()
                row = once(server.url, args, run)
                row.update(run=run, other=other.cores())
                rows[side].append(row)
                star = "*" if row["other"] > NOISY_CORES else ""
                print(f"  {name} {side} run {run}: {row['line']}  [other {row['other']:.2f}{star}]", flush=True)
    finally:
        for server in servers.values():
            server.close()
    return rows


def summary(label: str, goal: str, rows: list[dict[str, Any]]) -> str:
    ratios = [r["ratio"] for r in rows]
    quiet = [r["ratio"] for r in rows if r["other"] <= NOISY_CORES]
    line = f"{label:<34} {statistics.median(ratios):5.2f}  (goal {goal}; runs {', '.join(f'{r:.2f}' for r in ratios)})"
    if len(quiet) < len(ratios):
        line += f"; quiet runs: {statistics.median(quiet):.2f}" if quiet else "; no quiet run"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", nargs="+", choices=("parallel", "models", "turn"),
                        default=["parallel", "models", "turn"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream (num_predict); default 128")
    parser.add_argument("--parallel", type=int, default=4, help="concurrent streams on one model; default 4")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--against", metavar="REVISION", help="also measure a server running this git revision")
    parser.add_argument("--wait-quiet", type=float, default=60, metavar="SECONDS",
                        help="before each run, wait up to this long for other processes to use under "
                             "0.15 cores; default 60")
    parser.add_argument("--model", type=Path, help="a GGUF file; default the SmolLM2-135M test model")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    args = parser.parse_args(argv)
    if args.model is None:
        from corral.testing import smollm2_path

        args.model = smollm2_path()
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    print(f"corral concurrency benchmark; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"model {args.model.name}; {args.tokens} tokens per stream; {args.threads} threads")
    workdir = Path(tempfile.mkdtemp(prefix="corral-batching-"))
    names = [name for name in MEASURES if name.rstrip("14") in args.measure]
    results: dict[str, dict[str, list]] = {}
    try:
        sides: dict[str, Path | None] = {"corral": None}
        if args.against:
            sides[f"corral@{args.against}"] = overlay(args.against, workdir / "against")
        for name in names:
            results[name] = measure(name, args, workdir, sides)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    for name in names:
        label, goal, _once, _env = MEASURES[name]
        for side, rows in results[name].items():
            print(summary(f"{label.format(parallel=args.parallel)} [{side}]", goal, rows))
    cut = [row for rows in results.get("parallel", {}).values() for row in rows if not row["complete"]]
    if cut:
        print(f"NOTE: in {len(cut)} parallel run(s) a stream stopped before its tokens (cut off)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
