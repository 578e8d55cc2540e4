"""contrib/ray on a real Ray cluster on this machine: every node a process on 127.0.0.1.

The cluster has a head that runs no models and two worker nodes with two CPUs each; the second
has the server's store hidden (an empty tmpfs over it, in a mount namespace of its own), as a
machine that shares nothing with the server. Models ask for one CPU, so either node has room for
two: with OLLAMA_MAX_LOADED_MODELS=1 counting per node, two models still go to two nodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ray_cluster import LOOPBACK_ENV, LoopbackCluster, loopback_cluster, wait_for
from servers import TOOLS_TEMPLATE, free_port, processes_with, running_server, store_with_smollm2

if os.environ.get("CI"):  # CI installs the ray extra: a missing Ray or unshare is a failure there
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

GREEDY = {"temperature": 0, "seed": 1}
QUESTION = "What is the capital of France? Answer in one word."
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
HTTP = httpx.Client(timeout=300)


def ray_env(clean_env: dict[str, str], store: Path, config: Path, address: str, **extra: str) -> dict[str, str]:
    return {**clean_env, **LOOPBACK_ENV, "OLLAMA_MODELS": str(store), "CORRAL_CONFIG": str(config),
            "CORRAL_RAY_ADDRESS": address, "CORRAL_RAY_NUM_CPUS": "1", **extra}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    root = store_with_smollm2(tmp_path_factory.mktemp("store"), smollm2_gguf)
    store_with_smollm2(root, smollm2_gguf, ("registry.ollama.ai", "library", "other", "latest"),
                       template=TOOLS_TEMPLATE)
    return root


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_text('[plugins]\nenable = ["ray"]\n')
    return path


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    from support import clean_environ

    return clean_environ(home)


@pytest.fixture(scope="module")
def cluster(env: dict[str, str], store: Path) -> Iterator[LoopbackCluster]:
    with loopback_cluster(env) as cluster:
        cluster.start_head(num_cpus=0)
        cluster.add_node(num_cpus=2)
        cluster.add_node(num_cpus=2, hide=(store,))
        yield cluster


def runner_actor_pids(home: Path) -> list[int]:
    """The processes of RunnerActors started by this module's nodes (their HOME is ``home``)."""
    return processes_with(b"ray::RunnerActor", f"HOME={home}")


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def generate(url: str, model: str, **options: object) -> dict:
    response = HTTP.post(f"{url}/api/generate", json={
        "model": model, "prompt": QUESTION, "stream": False, "options": {**GREEDY, **options}})
    return {"status": response.status_code, **response.json()}


def test_cold_start_two_models_on_two_nodes_one_fetching_the_blob_max_loaded_per_node(
        cluster: LoopbackCluster, env: dict[str, str], store: Path, config: Path, home: Path) -> None:
    digest = max((store / "blobs").glob("sha256-*"), key=lambda path: path.stat().st_size).name  # the GGUF
    cached = home / ".cache" / "corral" / "blobs" / digest
    assert not cached.exists()
    server_env = ray_env(env, store, config, cluster.address)  # OLLAMA_MAX_LOADED_MODELS=1, per node
    with running_server(server_env, timeout=120) as url:
        first = generate(url, "smol")
        second = generate(url, "other")
        assert "Paris" in first["response"] and "Paris" in second["response"]
        models = HTTP.get(f"{url}/api/ps").json()["models"]
        assert sorted((m["name"], m["node"]) for m in models) == [("other:latest", "127.0.0.1"),
                                                                  ("smol:latest", "127.0.0.1")]
        shown = subprocess.run([sys.executable, "-c", "from corral.plugins.cli import main; main()", "ps"],
                               env={**env, "OLLAMA_HOST": url}, capture_output=True, text=True, timeout=60)
        header, *rows = shown.stdout.splitlines()
        assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "NODE"]
        assert len(rows) == 2 and all(row.split()[-1] == "127.0.0.1" for row in rows)
        pids = runner_actor_pids(home)
        assert len(pids) == 2
        # One actor maps the server's store, the other the copy its node fetched and verified.
        maps = [mapped_files(pid) for pid in pids]
        assert sum(str(store / "blobs" / digest) in text for text in maps) == 1
        assert sum(str(cached) in text for text in maps) == 1
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest.removeprefix("sha256-")
    wait_for(lambda: runner_actor_pids(home) == [], 30)  # the server's actors end with it


def test_an_actor_killed_mid_stream_ends_that_stream_and_the_next_request_reloads(
        cluster: LoopbackCluster, env: dict[str, str], store: Path, config: Path, home: Path) -> None:
    with running_server(ray_env(env, store, config, cluster.address), timeout=120) as url:
        with HTTP.stream("POST", f"{url}/api/generate", json={
                "model": "smol", "prompt": COUNTING, "raw": True,
                "options": {**GREEDY, "num_predict": 5000}}) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines))["done"] is False
            (pid,) = runner_actor_pids(home)
            os.kill(pid, signal.SIGKILL)
            rest = [json.loads(line) for line in lines if line]
        assert rest[-1]["error"].startswith("llama runner process has terminated: its Ray actor on node 127.0.0.1")
        assert "Paris" in generate(url, "smol")["response"]
        assert HTTP.get(f"{url}/").status_code == 200


def test_a_lost_cluster_gives_clear_errors_and_its_return_resumes_service(
        env: dict[str, str], store: Path, config: Path, home: Path) -> None:
    with loopback_cluster(env) as cluster:
        cluster.start_head(num_cpus=0)
        node = cluster.add_node(num_cpus=1)
        port = cluster.port
        server_env = ray_env(env, store, config, cluster.address, CORRAL_RAY_PLACEMENT_TIMEOUT="10",
                             CORRAL_RAY_CONNECT_TIMEOUT="20")
        with running_server(server_env, timeout=120) as url:
            with HTTP.stream("POST", f"{url}/api/generate", json={
                    "model": "smol", "prompt": COUNTING, "raw": True,
                    "options": {**GREEDY, "num_predict": 5000}}) as response:
                lines = response.iter_lines()
                assert json.loads(next(lines))["done"] is False
                node.kill()  # the machine running the model is gone
                rest = [json.loads(line) for line in lines if line]
            assert "llama runner process has terminated" in rest[-1]["error"]

            started = time.monotonic()
            refused = generate(url, "smol")
            # Placed nowhere; or, before Ray has noticed the node is gone, on it, where it died at once.
            assert refused["status"] == 500 and ("no Ray node took the model" in refused["error"]
                                                 or "the Ray actor for the model died" in refused["error"])
            assert time.monotonic() - started < 60

            cluster.stop()  # the whole cluster
            started = time.monotonic()
            refused = generate(url, "smol")
            assert refused["status"] == 500 and "Ray" in refused["error"]
            assert time.monotonic() - started < 60
            refused = wait_for(lambda: (lambda a: a if "cannot join the Ray cluster" in a.get("error", "") else None)(
                generate(url, "smol")), 90, 1)
            assert refused["status"] == 500

            cluster.port = port  # the cluster comes back at the same address
            cluster.start({"head": True, "num_cpus": 0, "gcs_server_port": port})
            cluster.add_node(num_cpus=1)
            answer = wait_for(lambda: (lambda a: a if a["status"] == 200 else None)(generate(url, "smol")), 120, 2)
            assert "Paris" in answer["response"]


def test_no_cluster_is_a_one_line_error(env: dict[str, str], store: Path, config: Path) -> None:
    server_env = {**ray_env(env, store, config, f"127.0.0.1:{free_port()}"), "CORRAL_RAY_CONNECT_TIMEOUT": "20",
                  "OLLAMA_HOST": f"127.0.0.1:{free_port()}"}
    result = subprocess.run([sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"],
                            env=server_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot join the Ray cluster (ray.address = 127.0.0.1:" in errors[0]
    assert "Traceback" not in result.stderr
