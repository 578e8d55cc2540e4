"""Pull throughput over loopback: corral's /api/pull against a plain HTTP download of the same blob.

A fake registry (tests/fake_registry.py: token challenge, redirect to a "CDN" port, ranges) serves
one model whose weights are SIZE MB of random bytes. Each run, alternating the order:

* plain: a separate Python process downloads the blob from the CDN URL with httpx in one stream
  and writes it to a file (no hashing, no fsync): the speed of "just fetching the bytes";
* corral: POST /api/pull to a real ``corral serve`` until ``success`` (the manifest, the token,
  the parallel ranges, sha256 verification, the durable commit and the manifest write), then
  DELETE the model so the next run fetches everything again.

The ratio plain seconds / corral seconds is the figure of merit (goal: >= 0.9). ``curl`` is timed
too, for reference, when it is installed.

    python benchmarks/pull.py             # 500 MB, 3 runs per side
    python benchmarks/pull.py --size 200 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from fake_registry import FakeRegistry  # noqa: E402
from servers import running_server  # noqa: E402

PLAIN = """
import sys, time, httpx
url, target = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with httpx.Client(timeout=120, trust_env=False) as client, client.stream("GET", url) as response, \\
        open(target, "wb") as out:
    response.raise_for_status()
    for chunk in response.iter_raw():
        out.write(chunk)
print(time.perf_counter() - start)
"""


def busy_cores(window: float = 1.0) -> float:
    """How many cores the whole machine kept busy over ``window`` seconds (from /proc/stat)."""
    def busy() -> float:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    before, started = busy(), time.perf_counter()
    time.sleep(window)
    return (busy() - before) / (time.perf_counter() - started)


def wait_until_quiet(limit: float, threshold: float = 0.3) -> float:
    deadline = time.monotonic() + limit
    while True:
        load = busy_cores()
        if load < threshold or time.monotonic() >= deadline:
            return load


def random_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            out.write(chunk)
            left -= len(chunk)


def publish(registry: FakeRegistry, blob: Path) -> str:
    digest = registry.add_blob_file(blob)
    config = json.dumps({"model_format": "gguf", "model_family": "bench"}).encode()
    config_digest = registry.add_blob(config)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest,
                            "size": blob.stat().st_size}]}
    registry.manifests[("library/bench", "latest")] = json.dumps(manifest).encode()
    return digest


def plain_download(url: str, target: Path) -> float:
    done = subprocess.run([sys.executable, "-c", PLAIN, url, str(target)], capture_output=True, text=True,
                          check=True)
    target.unlink()
    return float(done.stdout.strip())


def curl_download(url: str, target: Path) -> float | None:
    if shutil.which("curl") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", str(target), url], check=True)
    seconds = time.perf_counter() - start
    target.unlink()
    return seconds


def corral_pull(server: str, name: str) -> float:
    with httpx.Client(timeout=600) as client:
        start = time.perf_counter()
        with client.stream("POST", server + "/api/pull", json={"model": name, "insecure": True}) as response:
            last = {}
            for line in response.iter_lines():
                if line.strip():
                    last = json.loads(line)
        seconds = time.perf_counter() - start
        if last != {"status": "success"}:
            raise SystemExit(f"pull failed: {last}")
        client.request("DELETE", server + "/api/delete", json={"model": name}).raise_for_status()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=500, help="blob size in MB (default 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the corral server, e.g. --set registry.max_parts=1")
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                        help="wait up to this long for other processes to use under 0.3 cores (default 120)")
    args = parser.parse_args()
    size = args.size * 1_000_000
    with tempfile.TemporaryDirectory(prefix="corral-pull-bench-") as tmp:
        work = Path(tmp)
        blob = work / "blob"
        random_file(blob, size)
        with FakeRegistry(root=work / "registry") as registry:
            digest = publish(registry, blob)
            url = f"http://127.0.0.1:{registry.cdn_port}/blobs/{digest}"
            env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
            env.update(HOME=str(work / "home"), OLLAMA_MODELS=str(work / "models"))
            if args.settings:
                tables: dict[str, list[str]] = {}
                for item in args.settings:
                    key, _, value = item.partition("=")
                    table, _, name = key.partition(".")
                    tables.setdefault(table, []).append(f"{name} = {value}")
                config = work / "corral.toml"
                config.write_text("".join(f"[{table}]\n" + "\n".join(lines) + "\n" for table, lines in tables.items()))
                env["CORRAL_CONFIG"] = str(config)
            name = f"{registry.host}/library/bench"
            load = wait_until_quiet(args.wait_quiet) if args.wait_quiet > 0 else busy_cores()
            print(f"blob {args.size} MB, {os.cpu_count()} CPUs, other processes busy on {load:.2f} cores")
            plain, corral, curl = [], [], []
            with running_server(env) as server:
                corral_pull(server, name)  # warm-up: imports, page cache of the source file
                for run in range(args.runs):
                    order = ("plain", "corral") if run % 2 == 0 else ("corral", "plain")
                    for side in order:
                        if side == "plain":
                            plain.append(plain_download(url, work / "plain"))
                        else:
                            corral.append(corral_pull(server, name))
                    took = curl_download(url, work / "curl")
                    if took is not None:
                        curl.append(took)
                    print(f"run {run + 1}: plain {plain[-1]:.2f}s, corral {corral[-1]:.2f}s"
                          + (f", curl {curl[-1]:.2f}s" if curl else ""), flush=True)
    mb = size / 1e6
    p, c = statistics.median(plain), statistics.median(corral)
    print(f"plain httpx download: {mb / p:.0f} MB/s (median {p:.2f}s)")
    if curl:
        print(f"curl:                 {mb / statistics.median(curl):.0f} MB/s")
    print(f"corral pull:          {mb / c:.0f} MB/s (median {c:.2f}s)")
    print(f"ratio corral / plain: {p / c:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
