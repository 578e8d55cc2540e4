#!/usr/bin/env python
"""Command-line start-up: ``corral --help``, ``corral list`` and ``corral ps`` against ``python -c pass``.

Each case is a whole process, started the way a user starts it (the ``corral`` script next to this
Python), timed from spawn to exit; the cases run in turn (A B C A B C ...) so that a shared
machine's drift spreads over all of them, and the medians and the per-round ratios to
``python -c pass`` are printed. ``list`` and ``ps`` talk to a stub HTTP server on a loopback port
that answers as a server with no models does, so they measure the command line alone.

- ``--help (saved table)``: the usual case, the command table saved by an earlier run;
- ``--help (no table)``: the first run after an install or a plugin change, which builds every
  plugin and saves the table (each run here starts with an empty cache folder);
- ``--against REVISION``: the same cases for that git revision's code as well (unpacked from this
  repository and put first on PYTHONPATH, as ``streaming.py --against`` does).

Bytecode is written as usual (PYTHONDONTWRITEBYTECODE is removed from the children's environment),
and the warm-up round writes it. Run it with the Python that has corral installed::

    python benchmarks/startup.py [--runs 21] [--against main]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import empty_ollama  # noqa: E402  (the tests' stub server)
from streaming import overlay  # noqa: E402


def timed(command: list[str], env: dict[str, str], fresh_cache: Path | None) -> float:
    if fresh_cache is not None:
        shutil.rmtree(fresh_cache, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="rounds (each case once per round); default 21")
    parser.add_argument("--against", metavar="REVISION", help="also time this git revision's code")
    args = parser.parse_args(argv)

    script = Path(sys.executable).with_name("corral")
    if not script.exists():
        raise SystemExit(f"no corral script next to {sys.executable}: install corral in this environment")
    work = Path(tempfile.mkdtemp(prefix="corral-startup-"))
    try:
        with empty_ollama() as host:
            return measure(args, script, work, host)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, script: Path, work: Path, host: str) -> int:
    base = {key: value for key, value in os.environ.items()
            if key != "PYTHONDONTWRITEBYTECODE" and not key.startswith(("OLLAMA_", "CORRAL_"))}
    base.update(HOME=str(work / "home"), XDG_CACHE_HOME=str(work / "cache"), OLLAMA_HOST=host)
    versions = {"": base}
    if args.against:
        code = overlay(args.against, work / "against")
        versions[f" @{args.against}"] = {**base, "PYTHONPATH": str(code), "XDG_CACHE_HOME": str(work / "cache2")}
    cases: dict[str, tuple[list[str], dict[str, str], Path | None]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], base, None)}
    for label, env in versions.items():
        cases[f"corral --help (saved table){label}"] = ([str(script), "--help"], env, None)
        cases[f"corral --help (no table){label}"] = ([str(script), "--help"], env, Path(env["XDG_CACHE_HOME"]))
        cases[f"corral list{label}"] = ([str(script), "list"], env, None)
        cases[f"corral ps{label}"] = ([str(script), "ps"], env, None)
    for command, env, _fresh in cases.values():  # warm-up: bytecode, page cache, the saved table
        timed(command, env, None)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (command, env, fresh) in cases.items():
            times[name].append(timed(command, env, fresh))
    print(f"{args.runs} rounds, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':<44}{'median ms':>10}{'min ms':>9}{'x python -c pass':>18}")
    baseline = times["python -c pass"]
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, baseline))
        print(f"{name:<44}{statistics.median(values) * 1000:>10.1f}{min(values) * 1000:>9.1f}{ratio:>18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
