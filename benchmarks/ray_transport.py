#!/usr/bin/env python
"""The per-token cost of the Ray transport against the pipe, in one run.

Two ``corral serve`` processes over the same model: one with the llama.cpp runtime's runner
process on a pipe, one with contrib/ray, whose runner is a Ray actor on a one-node Ray cluster
started here on loopback (``ray.cluster_utils.Cluster``, every address 127.0.0.1, no usage
report). Both load the model first with the same options (temperature 0, a fixed seed, the same
threads), then runs alternate (pipe, ray, pipe, ray, ...) so machine noise spreads over both.
Measured per run, where the text arrives: decode tokens/s (tokens after the first over the time
from the first text chunk to the last) and time to first token. The summary gives ray/pipe decode
(the median of per-pair ratios), the added wall time per token (1/ray - 1/pipe) and the CPU
each side spends per token in the server, the bridge (Ray only) and the runner (its process, or
the actor's).

``--interval`` is the runners' stream interval: 0 (the default) sends every token as its own
message, the transport's worst case; 20 is corral's default coalescing.

    python benchmarks/ray_transport.py [--tokens 256] [--runs 5] [--interval 0] [--threads 2]

Needs ``pip install 'corral[ray]'``. See docs/scale-out.md for figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
PROMPT = ("<|im_start|>user\nWrite a very long, detailed story about a lighthouse keeper and the sea. "
          "Use many chapters.<|im_end|>\n<|im_start|>assistant\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens per run (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="runs per side (default 5)")
    parser.add_argument("--interval", type=float, default=0.0, help="stream interval in ms (default 0)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per runner")
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: the SmolLM2-135M test model)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(LOOPBACK_ENV)  # before Ray is imported: it reads them once
    sys.path.insert(0, str(HERE))
    import httpx
    from ray.cluster_utils import Cluster

    from streaming import Corral, Server

    if args.model is None:
        from corral.testing import smollm2_path

        args.model = smollm2_path()
    options = {"num_ctx": 2048, "num_thread": args.threads, "seed": 42, "temperature": 0.0, "stop": []}
    workdir = Path(tempfile.mkdtemp(prefix="corral-ray-bench-"))
    config = workdir / "config.toml"
    config.write_text('[plugins]\nenable = ["ray"]\n')
    interval = {"CORRAL_STREAM_INTERVAL_MS": f"{args.interval:g}"}
    pipe_server = Server(args.model, workdir / "pipe", extra_env=interval)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": args.threads, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "temp_dir": tempfile.mkdtemp(prefix="ray", dir="/tmp")})
    ray_server = Server(args.model, workdir / "ray", extra_env={
        **interval, **LOOPBACK_ENV, "CORRAL_CONFIG": str(config), "CORRAL_RAY_ADDRESS": cluster.address,
        "CORRAL_RAY_NUM_CPUS": str(args.threads)})
    try:
        client = httpx.Client(timeout=None)
        sides = {}
        for name, server in (("pipe", pipe_server), ("ray", ray_server)):
            server.wait_ready(client, timeout=120)
            sides[name] = Corral(server, client, options=options)
            sides[name].preload()
            sides[name].complete(PROMPT, 16)  # warm-up
        print(f"Ray transport against the pipe; {platform.node()} {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"model {args.model.name}; {args.tokens} tokens per run; {args.threads} threads; stream interval "
              f"{args.interval:g} ms; {args.runs} runs per side, alternating\n")
        rows: list[dict[str, Any]] = []
        for run in range(1, args.runs + 1):
            for name, side in sides.items():
                before = cpu_by_role(side.server.pid, name)
                row = side.complete(PROMPT, args.tokens)
                after = cpu_by_role(side.server.pid, name)
                row.update(side=name, run=run, cpu_ms={role: (after[role] - before[role]) * 1000 / max(row["tokens"], 1)
                                                         for role in after})
                rows.append(row)
                print(f"  run {run} {name:<5} decode {row['decode']:6.1f} tok/s (runner's own count "
                      f"{row.get('server_rate', float('nan')):6.1f})  TTFT {row['ttft_ms']:7.1f} ms"
                      f"  ({row['chunks']} chunks, {row['tokens']} tokens)  CPU ms/token "
                      + ", ".join(f"{role} {ms:.2f}" for role, ms in row["cpu_ms"].items()), flush=True)
        report(rows)
    finally:
        ray_server.close()
        pipe_server.close()
        cluster.shutdown()
    return 0


def cpu_by_role(server_pid: int, side: str) -> dict[str, float]:
    """CPU seconds so far of the server, the bridge (Ray) and the runner (its process or actor)."""
    from streaming import children, cpu_seconds

    kids = children(server_pid)
    if side == "pipe":  # the runner and an idle spare
        return {"server": cpu_seconds(server_pid), "bridge": 0.0, "runner": sum(map(cpu_seconds, kids))}
    actors = [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit() and _is_actor(entry)]
    return {"server": cpu_seconds(server_pid), "bridge": sum(map(cpu_seconds, kids)),
            "runner": sum(map(cpu_seconds, actors))}


def _is_actor(entry: Path) -> bool:
    try:
        return (entry / "cmdline").read_bytes().startswith(b"ray::RunnerActor")
    except OSError:
        return False


def report(rows: list[dict[str, Any]]) -> None:
    by_run: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run"], {})[row["side"]] = row
    pairs = [sides for sides in by_run.values() if {"pipe", "ray"} <= set(sides)]
    ratios = [sides["ray"]["decode"] / sides["pipe"]["decode"] for sides in pairs]
    per_token_ms = [1000 / sides["ray"]["decode"] - 1000 / sides["pipe"]["decode"] for sides in pairs]
    added_ttft = [sides["ray"]["ttft_ms"] - sides["pipe"]["ttft_ms"] for sides in pairs]
    medians = {side: statistics.median(row["decode"] for row in rows if row["side"] == side) for side in ("pipe", "ray")}
    print(f"\ndecode, median: pipe {medians['pipe']:.1f} tok/s, ray {medians['ray']:.1f} tok/s")
    print(f"ray/pipe decode (median of pairs): {statistics.median(ratios):.3f}")
    print(f"added wall time per token (median of pairs): {statistics.median(per_token_ms):.3f} ms")
    print(f"added time to first token (median of pairs): {statistics.median(added_ttft):.1f} ms")
    for side in ("pipe", "ray"):
        mine = [row["cpu_ms"] for row in rows if row["side"] == side]
        parts = {role: statistics.median(cpu[role] for cpu in mine) for role in mine[0]}
        print(f"CPU ms per token, {side} (medians): " + ", ".join(f"{role} {ms:.2f}" for role, ms in parts.items())
              + f"; total {sum(parts.values()):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
