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
Runs alternate baseline and measure; ratios are medians of the per-run ratios. The machine's other
load is printed per run (``other``, in cores; starred above 0.25): distrust starred runs.

    python benchmarks/batching.py [--measure parallel models turn] [--runs 3] [--tokens 128]

To measure another commit (say, main before a change), overlay it as docs/performance.md explains.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming import REPO, _die_with_parent, chat_prompt, free_port, machine_busy_seconds, wait_until_quiet  # noqa: E402

HISTORY_TOKENS = 1500
NOISY_CORES = 0.25


def counting(start: int) -> str:
    """A raw prompt the model goes on counting from, without ending."""
    return ", ".join(str(n) for n in range(start, start + 8)) + ","


class Server:
    """``corral serve`` over a temporary store with ``smol`` and ``smol2`` (the same weights)."""

    def __init__(self, model: Path, workdir: Path, **env: str) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from servers import store_with_smollm2

        store = store_with_smollm2(workdir / "models", model)
        store_with_smollm2(store, model, ("registry.ollama.ai", "library", "smol2", "latest"),
                           system="You are a terse assistant.")
        self.url = f"http://127.0.0.1:{free_port()}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "CORRAL_"))}
        clean.update(HOME=str(workdir / "home"), OLLAMA_HOST=self.url.removeprefix("http://"),
                     OLLAMA_MODELS=str(store), OLLAMA_KEEP_ALIVE="-1", **env)
        self.log = (workdir / f"server-{len(list(workdir.glob('server-*')))}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"], env=clean,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        import httpx

        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"corral serve did not start (see {self.log.name})")
            time.sleep(0.1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def stream(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed request: TTFT, tokens, wall time, and the final object."""
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
    results: list[dict[str, Any]] = [{}] * len(calls)

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
    """Cores used by processes other than this benchmark's servers and itself during a run."""

    def __init__(self) -> None:
        self.busy, self.wall = machine_busy_seconds(), time.perf_counter()
        self.ours = self._ours()

    @staticmethod
    def _ours() -> float:
        from streaming import children, cpu_seconds

        pids = [os.getpid()]
        for pid in list(pids):
            pids += children(pid)
        for pid in list(pids[1:]):
            pids += children(pid)
        return sum(cpu_seconds(pid) for pid in set(pids))

    def cores(self) -> float:
        wall = time.perf_counter() - self.wall
        return max(machine_busy_seconds() - self.busy - (self._ours() - self.ours), 0.0) / wall


def generate_body(model: str, prompt: str, tokens: int, threads: int) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "raw": True, "stream": True,
            "options": {"temperature": 0, "seed": 42, "num_predict": tokens, "num_thread": threads}}


def measure_parallel(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    n = args.parallel
    server = Server(args.model, workdir, OLLAMA_NUM_PARALLEL=str(n))
    rows = []
    try:
        stream(server.url, "/api/generate", generate_body("smol", counting(1), 8, args.threads))  # load, warm up
        for run in range(1, args.runs + 1):
            quiet(args)
            other = Other()
            alone = stream(server.url, "/api/generate", generate_body("smol", counting(100 + run), args.tokens,
                                                                       args.threads))
            one = alone["tokens"] / (alone["end"] - alone["start"])
            results = together([(server.url, "/api/generate",
                                 generate_body("smol", counting(200 + 40 * i + run), args.tokens, args.threads))
                                for i in range(n)])
            complete = all(r["tokens"] == args.tokens and r["final"].get("done") for r in results)
            rows.append({"run": run, "one": one, "all": aggregate(results), "ratio": aggregate(results) / one,
                         "complete": complete, "other": other.cores()})
            report(f"parallel run {run}: one stream {one:.1f} tok/s, {n} streams {rows[-1]['all']:.1f} tok/s, "
                   f"ratio {rows[-1]['ratio']:.2f}, all finished: {complete}", rows[-1])
    finally:
        server.close()
    return rows


def measure_models(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    server = Server(args.model, workdir, OLLAMA_NUM_PARALLEL="1", OLLAMA_MAX_LOADED_MODELS="2")
    rows = []
    try:
        for model in ("smol", "smol2"):
            stream(server.url, "/api/generate", generate_body(model, counting(1), 8, args.threads))
        for run in range(1, args.runs + 1):
            quiet(args)
            other = Other()
            alone = stream(server.url, "/api/generate", generate_body("smol", counting(100 + run), args.tokens,
                                                                       args.threads))
            one = alone["tokens"] / (alone["end"] - alone["start"])
            results = together([(server.url, "/api/generate",
                                 generate_body(model, counting(200 + 40 * i + run), args.tokens, args.threads))
                                for i, model in enumerate(("smol", "smol2"))])
            rates = [r["tokens"] / (r["end"] - r["start"]) for r in results]
            rows.append({"run": run, "one": one, "all": aggregate(results), "ratio": aggregate(results) / one,
                         "each": rates, "other": other.cores()})
            report(f"models run {run}: one model {one:.1f} tok/s, two at once {rows[-1]['all']:.1f} tok/s "
                   f"({rates[0]:.1f} + {rates[1]:.1f}), ratio {rows[-1]['ratio']:.2f}", rows[-1])
    finally:
        server.close()
    return rows


def history_message(run: int) -> str:
    notes = " ".join(f"Note {i}: the lighthouse at cove {run}-{i} was painted white and red in spring." for i in
                     range(HISTORY_TOKENS // 22))
    return f"Here are my notes.\n{notes}\nWhich colours were used?"


def measure_turn(args: argparse.Namespace, workdir: Path, slots: int) -> list[dict[str, Any]]:
    server = Server(args.model, workdir, OLLAMA_NUM_PARALLEL=str(slots))
    options = {"temperature": 0, "seed": 42, "num_predict": 16, "num_thread": args.threads}
    rows = []

    def chat(messages: list[dict[str, str]]) -> dict[str, Any]:
        return stream(server.url, "/api/chat", {"model": "smol", "messages": messages, "options": options})

    try:
        chat([{"role": "user", "content": "Hello"}])  # load, warm up
        for run in range(1, args.runs + 1):
            quiet(args)
            other = Other()
            short = chat([{"role": "user", "content": f"Say a word about the number {run}."}])
            messages = [{"role": "user", "content": history_message(run)}]
            first = chat(messages)
            for i in range(slots - 1):  # other conversations meanwhile
                chat([{"role": "user", "content": f"Tell me about river {run}-{i}."}])
            messages += [{"role": "assistant", "content": first["final"].get("message", {}).get("content", "")
                          or "White and red."},
                         {"role": "user", "content": "And which season was it?"}]
            second = chat(messages)
            rows.append({"run": run, "short_ttft": short["ttft"], "history": second["final"].get("prompt_eval_count"),
                         "second_ttft": second["ttft"], "first_ttft": first["ttft"],
                         "ratio": second["ttft"] / short["ttft"], "other": other.cores()})
            report(f"turn ({slots} slots) run {run}: short prompt TTFT {short['ttft'] * 1000:.0f} ms; "
                   f"second turn of a {rows[-1]['history']}-token chat {second['ttft'] * 1000:.0f} ms "
                   f"(first turn {first['ttft'] * 1000:.0f} ms); ratio {rows[-1]['ratio']:.2f}", rows[-1])
    finally:
        server.close()
    return rows


def quiet(args: argparse.Namespace) -> None:
    if args.wait_quiet > 0:
        load = wait_until_quiet(args.wait_quiet)
        if load >= 0.15:
            print(f"  (other processes still use {load:.2f} cores; measuring anyway)", flush=True)


def report(line: str, row: dict[str, Any]) -> None:
    star = "*" if row["other"] > NOISY_CORES else ""
    print(f"  {line}  [other {row['other']:.2f}{star}]", flush=True)


def summary(name: str, rows: list[dict[str, Any]], goal: str) -> str:
    ratios = [r["ratio"] for r in rows]
    quiet_ratios = [r["ratio"] for r in rows if r["other"] <= NOISY_CORES]
    line = f"{name:<28} median ratio {statistics.median(ratios):.2f} (goal {goal}; runs {', '.join(f'{r:.2f}' for r in ratios)})"
    if len(quiet_ratios) < len(ratios):
        line += f"; quiet runs only: {statistics.median(quiet_ratios):.2f}" if quiet_ratios else "; no quiet run"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", nargs="+", choices=("parallel", "models", "turn"),
                        default=["parallel", "models", "turn"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream (num_predict); default 128")
    parser.add_argument("--parallel", type=int, default=4, help="concurrent streams on one model; default 4")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
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
    results: dict[str, list[dict[str, Any]]] = {}
    lines = []
    try:
        if "parallel" in args.measure:
            results["parallel"] = measure_parallel(args, workdir)
            lines.append(summary(f"{args.parallel} streams / one stream", results["parallel"], ">= 1.5"))
        if "models" in args.measure:
            results["models"] = measure_models(args, workdir)
            lines.append(summary("two models / one model", results["models"], ">= 0.9"))
        if "turn" in args.measure:
            for slots in (1, 4):
                results[f"turn{slots}"] = measure_turn(args, workdir, slots)
                lines.append(summary(f"2nd turn / short TTFT, {slots} slot{'s' if slots > 1 else ''}",
                                     results[f"turn{slots}"], "<= 1.2"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("\n".join(lines))
    if "parallel" in results and not all(r["complete"] for r in results["parallel"]):
        print("NOTE: some parallel streams stopped before their tokens (cut off)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
