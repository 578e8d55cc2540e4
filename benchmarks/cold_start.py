#!/usr/bin/env python
"""Cold model to first token, with and without the warm spare runner, in one run.

Two ``corral serve`` processes over the same model: one keeps a spare runner process with
llama.cpp imported (the default), one starts a runner per load (``CORRAL_SPARE_RUNNER=0``). Each
run asks a server for one token from a model that is not loaded (``keep_alive: 0`` unloads it
after every request) and measures, where the text arrives, the time from sending the request to
the first token, and the server's ``load_duration``. Runs alternate between the servers and wait
``--pause`` seconds first, so the spare that replaces the one just used has imported llama.cpp
(as it would have between a user's loads). The goal (issue 20) is 0.5 s to the first token.

    python benchmarks/cold_start.py [--runs 7] [--pause 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def cold_request(client: Any, url: str) -> dict[str, float]:
    body = {"model": "smol", "prompt": "Hi", "raw": True, "stream": True, "keep_alive": 0,
            "options": {"num_predict": 1, "temperature": 0, "num_ctx": 2048}}
    started = time.perf_counter()
    first = None
    with client.stream("POST", f"{url}/api/generate", json=body, timeout=None) as response:
        for line in response.iter_lines():
            if not line:
                continue
            item = json.loads(line)
            if "error" in item:
                raise SystemExit(f"/api/generate failed: {item['error']}")
            if first is None and (item.get("response") or item.get("done")):
                first = time.perf_counter() - started
            if item.get("done"):
                return {"first_token_s": first or 0.0, "load_s": item.get("load_duration", 0) / 1e9}
    raise SystemExit("the stream ended without done")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per side (default 7)")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds before each run (default 3)")
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: the SmolLM2-135M test model)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import httpx

    from streaming import Server

    if args.model is None:
        from corral.testing import smollm2_path

        args.model = smollm2_path()
    workdir = Path(tempfile.mkdtemp(prefix="corral-cold-"))
    servers = {"spare": Server(args.model, workdir / "spare"),
               "no spare": Server(args.model, workdir / "fresh", extra_env={"CORRAL_SPARE_RUNNER": "0"})}
    try:
        client = httpx.Client(timeout=None)
        for server in servers.values():
            server.wait_ready(client, timeout=120)
        print(f"cold model to first token; {platform.node()} {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}; model {args.model.name}; {args.runs} runs per side\n")
        rows: list[dict[str, Any]] = []
        for run in range(1, args.runs + 1):
            for side, server in servers.items():
                time.sleep(args.pause)
                row = {"side": side, "run": run, **cold_request(client, server.url)}
                rows.append(row)
                print(f"  run {run} {side:<8}  first token {row['first_token_s'] * 1000:6.0f} ms"
                      f"  load_duration {row['load_s'] * 1000:6.0f} ms", flush=True)
        print()
        medians = {}
        for side in servers:
            first = statistics.median(r["first_token_s"] for r in rows if r["side"] == side)
            load = statistics.median(r["load_s"] for r in rows if r["side"] == side)
            medians[side] = first
            print(f"{side:<8}: first token {first * 1000:.0f} ms (median), load_duration {load * 1000:.0f} ms")
        print(f"spare / no spare, first token: {medians['spare'] / medians['no spare']:.2f}")
    finally:
        for server in servers.values():
            server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
