#!/usr/bin/env python
"""Streaming speed: corral's HTTP streaming against llama-cpp-python called in-process.

One run of this script loads the same GGUF twice: once in this process (the baseline, called the
plain way, ``Llama.create_completion(stream=True)``, on the main thread only) and once behind a
real ``corral serve`` subprocess on a free loopback port with a temporary store (streaming
``POST /api/generate`` with ``raw: true``, read line by line with httpx; the model is preloaded
first, so load time is excluded). Both sides get the same prompt tokens and the same options:
temperature 0, a fixed seed, the same num_ctx, n_threads = the CPU count, flash attention off,
n_batch 512, no stop strings, and a token budget (num_predict / max_tokens) the model is asked to
fill with a long story; a run that ends early is reported with the tokens it produced. Runs
alternate (baseline, corral, baseline, corral, ...) so machine noise spreads over both sides.

Measured per run:

- decode tokens/s where the text arrives: (tokens after the first) / (time from the first text
  chunk to the last); for corral also the server's own ``eval_count / eval_duration``;
- time to first token (TTFT): from the call (for corral, the request send) to the first non-empty
  text; for corral also the part spent outside the runner's completion call (HTTP, server, pipes),
  i.e. client TTFT minus the runner's ``prompt_eval_duration``;
- CPU per token (Linux, from /proc) of the server, the runner and the client, and how many cores
  other processes used meanwhile (a run where they used more than 0.25 is starred).

The summary gives the two goals: ``corral/baseline decode`` (>= 0.95) and ``added TTFT``
(< 15 ms), each as the median over the (baseline, corral) pairs, which cancels the slow drift of
this machine's speed, and as the ratio (difference) of the per-side medians.

Prompt evaluation is the same on both sides. llama-cpp-python (and so corral's runner) reuses the
longest common prefix of the previous prompt still in its KV cache. By default (``--prompt-cache
cold``) both sides first complete one token of an unrelated prompt, so the measured prompt is
evaluated in full on both sides. ``--prompt-cache warm`` keeps the measured prompt cached on both
sides instead: TTFT is then about one decode step and the added TTFT is the plumbing alone.

Run it with the Python that has corral installed (its virtual environment active)::

    python benchmarks/streaming.py [--tokens 256] [--runs 3] [--prompt-tokens small|long|N]
    python benchmarks/streaming.py --stream-interval-ms 0 --against main --runs 9

``--stream-interval-ms 0`` measures Ollama's framing (one chunk per token). ``--against REVISION``
adds a third side, a second corral server running that git revision's code (its core, sdk, plugins
and contrib folders unpacked from this repository into a temporary folder laid out as the corral
package and put first on its PYTHONPATH), alternating with the others:
the comparison of the two corrals is then made under the same noise.

The SmolLM2-135M test model is fetched once (``corral.testing.smollm2_path()``); ``--model``
benchmarks another GGUF (the prompts use ChatML tokens). The server and its runner are stopped on
exit, Ctrl+C included. See docs/performance.md for figures and how to read them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "smol"
SCRUB_PROMPT = "Hello"  # shares no first token with the measured prompts (checked at start-up)
LONG_TOKENS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

INSTRUCTION = ("Write a very long, detailed story about a lighthouse keeper and the sea. "
               "Use many chapters.")
DOCUMENT_SENTENCES = (
    "The harbour of Port Ellis faces west, and in winter the swell comes straight off the ocean.",
    "Its lighthouse was built in 1871 from granite quarried two miles inland and carried by cart.",
    "For ninety years three keepers shared the watch, four hours on and eight hours off.",
    "The lamp burned paraffin until 1954, when the station was connected to the mainland grid.",
    "Fishing boats from the town went out before dawn and came back with herring and mackerel.",
    "A lifeboat station was added in 1902 after the schooner Margaret was lost on the Skerry rocks.",
    "Children from the keepers' families walked to the village school along the cliff path.",
    "Supplies came by boat every fortnight, weather permitting, and sometimes not for six weeks.",
    "The fog signal was a compressed-air horn that could be heard twelve miles out to sea.",
    "In 1987 the light was automated and the last keeper, Thomas Hale, moved to the village.",
    "The keepers' cottages are now a small museum with logbooks, lenses and old photographs.",
    "Visitors climb the one hundred and twelve steps to the gallery on summer afternoons.",
)


# -- prompts ------------------------------------------------------------------------------------

def chat_prompt(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def build_prompt(size: str, count_tokens: Callable[[str], int]) -> str:
    """``small``: a short instruction; ``long``: about LONG_TOKENS tokens; a number: about that many."""
    if size == "small":
        return chat_prompt(INSTRUCTION)
    target = LONG_TOKENS if size == "long" else int(size)
    lines: list[str] = []
    index = 0
    while True:
        sentence = DOCUMENT_SENTENCES[index % len(DOCUMENT_SENTENCES)]
        candidate = lines + [f"({index + 1}) {sentence}"]
        text = chat_prompt("Here are my notes about a lighthouse:\n" + "\n".join(candidate) + "\n\n" + INSTRUCTION)
        if count_tokens(text) > target and lines:
            break
        lines = candidate
        index += 1
    return chat_prompt("Here are my notes about a lighthouse:\n" + "\n".join(lines) + "\n\n" + INSTRUCTION)


# -- process accounting (Linux /proc; zeros elsewhere) -------------------------------------------

def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_times(pid: int | str | None) -> dict[str, float]:
    """CPU seconds of each live thread of a process, to the nanosecond (schedstat; /proc/PID/stat
    counts in 10 ms ticks, too coarse for a fraction of a millisecond per token)."""
    times: dict[str, float] = {}
    if pid is None:
        return times
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return times
    for task in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError):
            times[f"{pid}/{task.name}"] = int((task / "schedstat").read_text().split()[0]) / 1e9
    return times


def cpu_used(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU seconds between two thread_times() snapshots; a thread that ended in between is left out."""
    return sum(value - before.get(key, 0.0) for key, value in after.items())


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores)."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_until_quiet(limit: float, *, threshold: float = 0.15, window: float = 1.0) -> float:
    """Wait up to ``limit`` seconds for other processes to use under ``threshold`` cores (measured
    over ``window`` seconds while we are idle); return the last load seen."""
    deadline = time.monotonic() + limit
    while True:
        before, started = machine_busy_seconds(), time.perf_counter()
        time.sleep(window)
        load = (machine_busy_seconds() - before) / (time.perf_counter() - started)
        if load < threshold or time.monotonic() >= deadline:
            return load


class Meter:
    """CPU used by the server, its runner, this process and everything else during one measurement."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def snapshot(self) -> dict[str, Any]:
        runner: dict[str, float] = {}
        for pid in children(self.server_pid) if self.server_pid else ():
            runner.update(thread_times(pid))
        return {"wall": time.perf_counter(), "machine": machine_busy_seconds(), "self": thread_times("self"),
                "client": time.thread_time(), "server": thread_times(self.server_pid), "runner": runner}

    @staticmethod
    def usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        delta = {key: cpu_used(before[key], after[key]) if isinstance(before[key], dict) else after[key] - before[key]
                 for key in before}
        ours = delta["self"] + delta["server"] + delta["runner"]
        wall = delta["wall"] or 1e-9
        return {"server": delta["server"], "runner": delta["runner"], "client": delta["client"],
                "self": delta["self"], "other_cores": max(delta["machine"] - ours, 0.0) / wall}


# -- the baseline: llama-cpp-python in this process, on the main thread --------------------------

class Baseline:
    def __init__(self, model_path: Path, *, num_ctx: int, threads: int, seed: int, options: dict[str, Any]) -> None:
        from llama_cpp import Llama

        # The same constructor arguments as corral's runner (plugins/runtime_llamacpp/runner.py).
        self.llm = Llama(
            str(model_path), n_ctx=num_ctx, n_batch=512, n_ubatch=512, n_threads=threads, n_threads_batch=threads,
            use_mmap=True, use_mlock=False, flash_attn=False, last_n_tokens_size=64, seed=seed, verbose=False,
        )
        self.seed = seed
        self.options = options

    def tokenize(self, text: str) -> list[int]:
        # as the runner tokenizes a raw prompt
        return self.llm.tokenize(text.encode(), add_bos=True, special=True)

    def complete(self, prompt: str, max_tokens: int, meter: Meter | None = None) -> dict[str, Any]:
        from llama_cpp import StoppingCriteriaList

        def count(_tokens: Any, _logits: Any) -> bool:
            return False  # the runner passes a stopping criterion too (it times the first token)

        o = self.options
        before = meter.snapshot() if meter else None
        started = time.perf_counter()
        tokens = self.tokenize(prompt)
        stream = self.llm.create_completion(
            tokens, max_tokens=max_tokens, temperature=o["temperature"], top_p=o["top_p"], min_p=o["min_p"],
            typical_p=o["typical_p"], top_k=o["top_k"], repeat_penalty=o["repeat_penalty"],
            presence_penalty=o["presence_penalty"], frequency_penalty=o["frequency_penalty"],
            mirostat_mode=o["mirostat"], mirostat_tau=o["mirostat_tau"], mirostat_eta=o["mirostat_eta"],
            stop=[], seed=self.seed, stopping_criteria=StoppingCriteriaList([count]), stream=True,
        )
        times: list[float] = []
        pieces: list[str] = []
        reason = None
        for chunk in stream:
            choice = chunk["choices"][0]
            if choice["text"]:
                times.append(time.perf_counter())
                pieces.append(choice["text"])
            reason = choice.get("finish_reason") or reason
        usage = Meter.usage(before, meter.snapshot()) if meter and before else None
        generated = self.llm.n_tokens - len(tokens) + 1  # the last sampled token is never evaluated
        return measurement("baseline", started, times, pieces, prompt_tokens=len(tokens), tokens=generated,
                           reason=reason, usage=usage)


# -- corral: a real server subprocess --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's child process: SIGTERM it if this benchmark dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Process:
    """A server subprocess in a session of its own with its output in ``log_path``; it gets SIGTERM
    if this script dies, and ``close()`` (idempotent) stops it: SIGTERM, then its whole process
    group killed if it is too slow or a second Ctrl+C comes."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl+C reaches only us; we stop the server ourselves
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.close)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def close(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # a corral server stops its runner before it exits
                process.wait(timeout=30)
        except BaseException:  # too slow, or a second Ctrl+C: kill the server's whole process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise
        finally:
            self.process = None
            self.log.close()


class Server(Process):
    """``corral serve`` over a temporary store holding the model."""

    def __init__(self, model_path: Path, workdir: Path, *, num_parallel: int = 1,
                 extra_env: dict[str, str] | None = None, code: Path | None = None) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from servers import store_with_smollm2  # the tests' store builder (writes an Ollama-layout store)

        store = store_with_smollm2(workdir / "models", model_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
        env.update(HOME=str(workdir / "home"), OLLAMA_HOST=f"127.0.0.1:{self.port}", OLLAMA_MODELS=str(store),
                   OLLAMA_KEEP_ALIVE="-1", OLLAMA_NUM_PARALLEL=str(num_parallel))
        env.update(extra_env or {})
        if code is not None:  # another revision's corral, found before the installed one
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(code), env.get("PYTHONPATH"))))
        super().__init__([sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"],
                         workdir / "server.log", env)

    def wait_ready(self, client: Any, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"corral serve did not start; its log:\n{self.log_tail()}")
            time.sleep(0.1)


class Corral:
    def __init__(self, server: Server, client: Any, *, options: dict[str, Any], label: str = "corral") -> None:
        self.label = label
        self.server = server
        self.client = client
        self.options = options

    def _body(self, prompt: str, max_tokens: int) -> bytes:
        return json.dumps({"model": MODEL_NAME, "prompt": prompt, "raw": True, "stream": True, "keep_alive": -1,
                           "options": {**self.options, "num_predict": max_tokens}}).encode()

    def preload(self) -> None:
        """Load the model with the measured load-time options (num_ctx, threads...) and keep it."""
        body = json.dumps({"model": MODEL_NAME, "keep_alive": -1, "options": self.options}).encode()
        response = self.client.post(f"{self.server.url}/api/generate", content=body, timeout=300)
        if response.status_code != 200:
            raise SystemExit(f"preloading failed: {response.status_code} {response.text}\n{self.server.log_tail()}")

    def complete(self, prompt: str, max_tokens: int, meter: Meter | None = None) -> dict[str, Any]:
        body = self._body(prompt, max_tokens)
        headers = {"Content-Type": "application/json"}
        times: list[float] = []
        pieces: list[str] = []
        final: dict[str, Any] = {}
        before = meter.snapshot() if meter else None
        started = time.perf_counter()
        with self.client.stream("POST", f"{self.server.url}/api/generate", content=body, headers=headers,
                                timeout=None) as response:
            if response.status_code != 200:
                response.read()
                raise SystemExit(f"/api/generate failed: {response.status_code} {response.text}")
            for line in response.iter_lines():
                if not line:
                    continue
                arrived = time.perf_counter()
                item = json.loads(line)
                if "error" in item:
                    raise SystemExit(f"/api/generate failed mid-stream: {item['error']}")
                if item.get("response"):
                    times.append(arrived)
                    pieces.append(item["response"])
                if item.get("done"):
                    final = item
        usage = Meter.usage(before, meter.snapshot()) if meter and before else None
        result = measurement(self.label, started, times, pieces, prompt_tokens=final.get("prompt_eval_count", 0),
                             tokens=final.get("eval_count", 0), reason=final.get("done_reason"), usage=usage)
        if final.get("eval_duration"):
            result["server_rate"] = final["eval_count"] / (final["eval_duration"] / 1e9)
        if "prompt_eval_duration" in final:  # the runner's own time from the request to the first token
            result["runner_ttft_ms"] = final["prompt_eval_duration"] / 1e6
        return result


def measurement(side: str, started: float, times: list[float], pieces: list[str], *, prompt_tokens: int,
                tokens: int, reason: str | None, usage: dict[str, float] | None, **extra: Any) -> dict[str, Any]:
    chunks = len(times)
    # Tokens after the first over the time after the first. The first text chunk holds one token;
    # later chunks may hold several (a server may coalesce), so count tokens, not chunks.
    after_first = (tokens or chunks) - 1
    decode = after_first / (times[-1] - times[0]) if chunks > 1 and times[-1] > times[0] else float("nan")
    return {"side": side, "prompt_tokens": prompt_tokens, "tokens": tokens, "chunks": chunks, "reason": reason,
            "ttft_ms": (times[0] - started) * 1000 if times else float("nan"), "decode": decode,
            "total_s": (times[-1] - started) if times else float("nan"), "text": "".join(pieces),
            "usage": usage, **extra}


# -- report -------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def print_table(rows: list[dict[str, Any]], wanted: int) -> None:
    width = max(9, *(len(row["side"]) + 1 for row in rows))
    header = (f"{'side':<{width}}{'run':>4}{'prompt':>8}{'tokens':>8}{'chunks':>8}{'TTFT ms':>10}{'decode t/s':>12}"
              f"{'server t/s':>12}{'srv ms/tok':>12}{'run ms/tok':>12}{'cli ms/tok':>12}{'other cores':>13}")
    print(header)
    print("-" * len(header))
    for row in rows:
        usage = row.get("usage") or {}
        per_token = max(row["tokens"] or row["chunks"], 1)

        def ms(key: str) -> str:
            return f"{usage[key] * 1000 / per_token:.2f}" if key in usage else "-"

        server = f"{row['server_rate']:.1f}" if "server_rate" in row else "-"
        cpu = {"server": ms("server"), "runner": ms("runner"), "client": ms("client")}
        if row["side"] == "baseline":  # the model runs in this process: its CPU is the 'runner' column
            cpu = {"server": "-", "runner": ms("self"), "client": "-"}
        other = f"{usage['other_cores']:.2f}{'*' if noisy(row) else ''}" if "other_cores" in usage else "-"
        print(f"{row['side']:<{width}}{row['run']:>4}{row['prompt_tokens']:>8}{row['tokens']:>8}{row['chunks']:>8}"
              f"{row['ttft_ms']:>10.1f}{row['decode']:>12.1f}{server:>12}{cpu['server']:>12}{cpu['runner']:>12}"
              f"{cpu['client']:>12}{other:>13}")
    for side in dict.fromkeys(row["side"] for row in rows):
        mine = [r for r in rows if r["side"] == side]
        server = median([r["server_rate"] for r in mine if "server_rate" in r])
        print(f"{side + ' median':<{width + 12}}{median([r['tokens'] for r in mine]):>8.0f}{'':>8}"
              f"{median([r['ttft_ms'] for r in mine]):>10.1f}{median([r['decode'] for r in mine]):>12.1f}"
              f"{(f'{server:.1f}' if server == server else '-'):>12}")
    if any(noisy(row) for row in rows):
        print(f"* other processes used more than {NOISY_CORES} cores during that run")
    short = [r for r in rows if (r["tokens"] or r["chunks"]) < wanted]
    if short:
        print(f"note: {len(short)} run(s) stopped before {wanted} tokens (end of sequence); "
              "rates use the tokens produced")


def summary(rows: list[dict[str, Any]], side: str = "corral") -> dict[str, float]:
    base = [r for r in rows if r["side"] == "baseline"]
    ours = [r for r in rows if r["side"] == side]
    pairs = list(zip(base, ours))
    return {
        "baseline_decode": median([r["decode"] for r in base]),
        "corral_decode": median([r["decode"] for r in ours]),
        "server_decode": median([r.get("server_rate", float("nan")) for r in ours]),
        "baseline_ttft_ms": median([r["ttft_ms"] for r in base]),
        "corral_ttft_ms": median([r["ttft_ms"] for r in ours]),
        "decode_ratio": median([r["decode"] for r in ours]) / median([r["decode"] for r in base]),
        "added_ttft_ms": median([r["ttft_ms"] for r in ours]) - median([r["ttft_ms"] for r in base]),
        "pair_decode_ratio": median([c["decode"] / b["decode"] for b, c in pairs]),
        "pair_added_ttft_ms": median([c["ttft_ms"] - b["ttft_ms"] for b, c in pairs]),
        "outside_runner_ttft_ms": median([r["ttft_ms"] - r["runner_ttft_ms"] for r in ours if "runner_ttft_ms" in r]),
        "quiet_pairs": len(quiet := [(b, c) for b, c in pairs if noisy(b) is False and noisy(c) is False]),
        "quiet_decode_ratio": median([c["decode"] / b["decode"] for b, c in quiet]),
        "quiet_added_ttft_ms": median([c["ttft_ms"] - b["ttft_ms"] for b, c in quiet]),
    }


def server_ms_per_token(row: dict[str, Any]) -> float:
    usage = row.get("usage") or {}
    return usage["server"] * 1000 / max(row["tokens"] or row["chunks"], 1) if "server" in usage else float("nan")


def versus_summary(rows: list[dict[str, Any]], other: str) -> dict[str, float]:
    """This checkout's corral against another side (a revision, a plugin on), run by run (they alternate)."""
    pairs = list(zip([r for r in rows if r["side"] == "corral"], [r for r in rows if r["side"] == other]))
    return {
        "pairs": len(pairs),
        "decode_ratio": median([a["decode"] / b["decode"] for a, b in pairs]),
        "server_ms_per_token": median([server_ms_per_token(a) for a, _ in pairs]),
        "other_server_ms_per_token": median([server_ms_per_token(b) for _, b in pairs]),
        "server_cpu_ratio": median([server_ms_per_token(a) / server_ms_per_token(b) for a, b in pairs]),
    }


PACKAGE_FOLDERS = {"core": "", "sdk": "sdk", "plugins": "plugins", "contrib": "contrib"}
"""Repository folders and where they sit in the ``corral`` package (pyproject.toml's package-dir)."""


def overlay(revision: str, target: Path) -> Path:
    """The ``corral`` package of a git revision of this repository, unpacked under ``target``, for
    PYTHONPATH (the server and its runner then import that revision's code)."""
    import io
    import tarfile

    listing = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", revision],
                             capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise SystemExit(f"git ls-tree {revision} failed: {listing.stderr.strip()}")
    folders = [folder for folder in PACKAGE_FOLDERS if folder in listing.stdout.split()]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, *folders],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {revision} failed: {archive.stderr.decode(errors='replace').strip()}")
    source = target / "src"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    package = target / "pkg" / "corral"
    for folder in folders:  # core first: it is the package itself
        shutil.copytree(source / folder, package / PACKAGE_FOLDERS[folder], dirs_exist_ok=True)
    return package.parent


NOISY_CORES = 0.25


def noisy(row: dict[str, Any]) -> bool | None:
    """Whether other processes used more than NOISY_CORES during the run (None: unknown)."""
    usage = row.get("usage")
    return None if not usage else usage["other_cores"] > NOISY_CORES


# -- main ---------------------------------------------------------------------------------------

def py_spy_command() -> str:
    beside = Path(sys.executable).parent / "py-spy"  # installed in this virtual environment
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found is None:
        raise SystemExit("--py-spy needs py-spy: pip install py-spy")
    return found


def prompt_size(value: str) -> str:
    if value in ("small", "long") or (value.isdigit() and int(value) > 0):
        return value
    raise argparse.ArgumentTypeError("expected small, long or a number of tokens")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=256, help="tokens to generate per run (num_predict); default 256")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per side, alternating; default 3")
    parser.add_argument("--prompt-tokens", type=prompt_size, default="small",
                        help=f"small (a ~30-token instruction), long (~{LONG_TOKENS} tokens) or a number; "
                             "default small")
    parser.add_argument("--num-ctx", type=int, default=2048, help="context size on both sides; default 2048")
    parser.add_argument("--prompt-cache", choices=("cold", "warm"), default="cold",
                        help="cold: both sides evaluate the whole prompt each run (default); "
                             "warm: both reuse it from the KV cache, so TTFT is one decode step")
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                        help="before each pair of runs, wait up to this long for other processes to use "
                             "under 0.15 cores; 0 to measure at once; default 120")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--stream-interval-ms", type=float, metavar="MS",
                        help="corral's llamacpp.stream_interval_ms (0: one chunk per token, Ollama's framing); "
                             "default corral's own default")
    parser.add_argument("--against", metavar="REVISION",
                        help="also run a second corral server with the code of this git revision (e.g. main), "
                             "alternating with this checkout's, and compare the two")
    parser.add_argument("--plugin", metavar="NAME",
                        help="also run a second corral server with this plugin enabled (e.g. metrics), alternating "
                             "with the plain one, and compare the two")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="n_threads on both sides; default the CPU count")
    parser.add_argument("--model", type=Path, help="a GGUF file; default the SmolLM2-135M test model")
    parser.add_argument("--json", type=Path, help="also write every measurement and the summary to this file")
    parser.add_argument("--py-spy", type=Path, metavar="FILE",
                        help="record the server with py-spy (must be on PATH) during the corral runs, "
                             "as collapsed stacks; it costs CPU, so do not compare those figures")
    args = parser.parse_args(argv)
    if args.tokens < 2 or args.runs < 1:
        parser.error("--tokens must be at least 2 and --runs at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)

    import httpx

    if args.model is None:
        from corral.testing import smollm2_path

        args.model = smollm2_path()
    options = {  # Ollama option names; the baseline maps them as corral's runner does
        "num_ctx": args.num_ctx, "num_thread": args.threads, "num_batch": 512, "seed": args.seed,
        "temperature": 0.0, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
        "stop": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    servers: list[Server] = []
    profiler: subprocess.Popen[bytes] | None = None
    extra_env = {} if args.stream_interval_ms is None else {"CORRAL_STREAM_INTERVAL_MS": str(args.stream_interval_ms)}
    try:
        # The servers start first, before this process has any threads (preexec_fn is then safe).
        server = Server(args.model, workdir / "corral", extra_env=extra_env)
        servers.append(server)
        if args.against:
            code = overlay(args.against, workdir / "against")
            servers.append(Server(args.model, workdir / "against", extra_env=extra_env, code=code))
        if args.plugin:
            config = workdir / "plugged.toml"
            config.write_text(f"[plugins]\nenable = {json.dumps([args.plugin])}\n")
            servers.append(Server(args.model, workdir / "plugged", extra_env={**extra_env, "CORRAL_CONFIG": str(config)}))
        baseline = Baseline(args.model, num_ctx=args.num_ctx, threads=args.threads, seed=args.seed, options=options)
        prompt = build_prompt(args.prompt_tokens, lambda text: len(baseline.tokenize(text)))
        prompt_tokens = baseline.tokenize(prompt)
        if prompt_tokens[0] == baseline.tokenize(SCRUB_PROMPT)[0]:
            raise SystemExit("the scrub prompt shares its first token with the measured prompt")
        if len(prompt_tokens) + args.tokens >= args.num_ctx:
            raise SystemExit(f"{len(prompt_tokens)} prompt tokens + {args.tokens} do not fit --num-ctx {args.num_ctx}")

        client = httpx.Client(timeout=None)
        corrals = []
        labels = ["corral"] + ([f"corral@{args.against}"] if args.against else []) \
            + ([f"corral+{args.plugin}"] if args.plugin else [])
        for each, label in zip(servers, labels):
            each.wait_ready(client)
            corrals.append(Corral(each, client, options=options, label=label))
            corrals[-1].preload()
        corral = corrals[0]
        meters = {id(side): Meter(side.server.pid) for side in corrals}
        meters[id(baseline)] = Meter(server.pid)
        sides = [baseline, *corrals]
        for side in sides:  # warm-up: page the weights in, settle threads and caches
            side.complete(prompt, 16)

        print(f"corral streaming benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
              f"{platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        print(f"model {args.model.name}; prompt {args.prompt_tokens} ({len(prompt_tokens)} tokens); "
              f"{args.tokens} tokens per run; num_ctx {args.num_ctx}; {args.threads} threads; "
              f"prompt cache {args.prompt_cache}; stream interval "
              f"{'default' if args.stream_interval_ms is None else f'{args.stream_interval_ms:g} ms'}; "
              f"{args.runs} runs per side, alternating\n")
        rows: list[dict[str, Any]] = []
        for run in range(1, args.runs + 1):
            if args.wait_quiet > 0:
                load = wait_until_quiet(args.wait_quiet)
                if load >= 0.15:
                    print(f"  (other processes still use {load:.2f} cores; measuring anyway)", flush=True)
            for side in sides:
                if args.prompt_cache == "cold":
                    if side is baseline:
                        baseline.llm.reset()
                    side.complete(SCRUB_PROMPT, 1)  # evict the measured prompt from the KV cache
                if args.py_spy and side is corral and profiler is None:
                    profiler = subprocess.Popen(
                        [py_spy_command(), "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
                         "--output", str(args.py_spy), "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1.0)
                row = side.complete(prompt, args.tokens, meters[id(side)])
                row["run"] = run
                rows.append(row)
                print(f"  run {run} {row['side']:<8} decode {row['decode']:6.1f} tok/s  TTFT {row['ttft_ms']:7.1f} ms"
                      f"  ({row['chunks']} chunks)", flush=True)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            profiler = None
        print()
        print_table(rows, args.tokens)
        texts = {row["text"] for row in rows}
        print(f"\noutputs identical on every run and side: {'yes' if len(texts) == 1 else 'NO'}")
        result = summary(rows)
        print(f"\ncorral/baseline decode: {result['pair_decode_ratio']:.3f}  (goal >= 0.95; median of the per-pair "
              f"ratios; ratio of the medians {result['decode_ratio']:.3f})")
        print(f"added TTFT:             {result['pair_added_ttft_ms']:+.1f} ms  (goal < 15 ms; median of the per-pair "
              f"differences; difference of the medians {result['added_ttft_ms']:+.1f} ms)")
        print(f"corral's TTFT outside the runner's completion call (HTTP, server, pipes): "
              f"{result['outside_runner_ttft_ms']:.1f} ms (median)")
        if result["quiet_pairs"] < args.runs:
            over = (f"; over those: decode {result['quiet_decode_ratio']:.3f}, "
                    f"added TTFT {result['quiet_added_ttft_ms']:+.1f} ms") if result["quiet_pairs"] else ""
            print(f"only {result['quiet_pairs']} of {args.runs} pairs ran with other processes under "
                  f"{NOISY_CORES} cores{over}")
        for other in labels[1:]:
            theirs = summary(rows, other)
            versus = versus_summary(rows, other)
            result[other] = {**versus, "their_pair_decode_ratio": theirs["pair_decode_ratio"]}
            print(f"\n{other}/baseline decode: {theirs['pair_decode_ratio']:.3f}  (median of the per-pair ratios)")
            print(f"corral/{other} decode: {versus['decode_ratio']:.3f}  (median of {versus['pairs']} per-pair ratios)")
            print(f"server CPU per token: corral {versus['server_ms_per_token']:.3f} ms, {other} "
                  f"{versus['other_server_ms_per_token']:.3f} ms (median), "
                  f"per-pair ratio {versus['server_cpu_ratio']:.3f}")
        if args.json:
            args.json.write_text(json.dumps({
                "date": dt.datetime.now().astimezone().isoformat(), "cpus": os.cpu_count(),
                "args": {k: str(v) for k, v in vars(args).items()}, "prompt_tokens": len(prompt_tokens),
                "summary": result, "runs": [{k: v for k, v in r.items() if k != "text"} for r in rows],
            }, indent=2))
        client.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait()
        for each in servers:
            each.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
