"""Runners share the CPU: no more threads than cores, and one decode at a time per core set."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from corral.plugins.runtime_llamacpp.cpu_share import Turns, cores, runner_env, runner_threads, turn_lock_path
from servers import running_server, runner_pids, store_with_smollm2

HOLD = """
import sys, time
from corral.plugins.runtime_llamacpp.cpu_share import Turns
turns = Turns(sys.argv[1])
with turns:
    print("holding", flush=True)
    sys.stdin.readline()  # hold the turn until told (or killed)
"""
TAKE = """
import sys, time
from corral.plugins.runtime_llamacpp.cpu_share import Turns
with Turns(sys.argv[1]):
    print(time.monotonic(), flush=True)
"""


def test_threads_never_exceed_the_cores() -> None:
    available = len(cores())
    assert runner_threads() == available
    assert runner_threads(1) == 1
    assert runner_threads(available + 7) == available
    assert turn_lock_path().endswith(".lock") and f"corral-{os.getuid()}-cpus-" in turn_lock_path()


def test_one_process_decodes_at_a_time_and_a_dead_one_blocks_nobody(tmp_path: Path) -> None:
    lock = str(tmp_path / "cpus.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, lock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "holding"
    waiter = subprocess.Popen([sys.executable, "-c", TAKE, lock], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert waiter.poll() is None  # still waiting for its turn
    released = time.monotonic()
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert float(waiter.communicate(timeout=30)[0]) >= released
    holder.wait(timeout=30)

    crashed = subprocess.Popen([sys.executable, "-c", HOLD, lock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    assert crashed.stdout.readline().strip() == "holding"
    crashed.kill()
    crashed.wait()
    subprocess.run([sys.executable, "-c", TAKE, lock], check=True, timeout=30, capture_output=True)


def test_turns_within_one_process_and_without_a_lock(tmp_path: Path) -> None:
    with Turns(None):
        pass
    turns = Turns(str(tmp_path / "cpus.lock"))
    for _ in range(3):
        with turns:
            pass
    turns.close()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a file away")
def test_a_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "cpus.lock"
    lock.touch()
    os.chown(lock, 65534, 65534)
    with pytest.raises(PermissionError, match="belongs to another user"):
        Turns(str(lock))


@pytest.mark.slow
def test_two_models_generate_at_once_with_capped_threads_and_one_turn_lock(
        server_env: dict[str, str], smol_store: Path, smollm2_gguf: Path) -> None:
    store_with_smollm2(smol_store, smollm2_gguf, ("registry.ollama.ai", "library", "smol2", "latest"),
                       system="You are a terse assistant.")
    options = {"temperature": 0, "seed": 42, "num_predict": 24, "num_thread": 64}
    with running_server({**server_env, "OLLAMA_MAX_LOADED_MODELS": "2"}) as url:
        alone = {name: httpx.post(f"{url}/api/generate", timeout=300, json={
            "model": name, "prompt": "Name three colours.", "stream": False, "options": options}).json()["response"]
            for name in ("smol", "smol2")}
        together: dict[str, str] = {}

        def generate(name: str) -> None:
            together[name] = httpx.post(f"{url}/api/generate", timeout=300, json={
                "model": name, "prompt": "Name three colours.", "stream": False, "options": options}).json()["response"]

        threads = [threading.Thread(target=generate, args=(name,)) for name in ("smol", "smol2")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert together == alone and alone["smol"]
        holding = [pid for pid in runner_pids(smol_store) if turn_lock_path() in open_files(pid)]
        # their idle OpenMP threads stop spinning soon after each turn (cpu_share.py)
        environments = [Path(f"/proc/{pid}/environ").read_bytes() for pid in holding]
    assert len(holding) == 2  # both runners (not the warm spare) take turns on one lock
    assert all(b"\0GOMP_SPINCOUNT=20000\0" in environment for environment in environments)


def test_an_operator_s_openmp_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert runner_env()["GOMP_SPINCOUNT"] == "20000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    assert runner_env()["GOMP_SPINCOUNT"] == "5"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "GOMP_SPINCOUNT" not in runner_env()


def open_files(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(os.readlink(fd))
    return found


@pytest.mark.slow
def test_an_engine_uses_no_more_threads_than_cores(smollm2_gguf: Path) -> None:
    from corral.plugins.runtime_llamacpp.runner import Runner

    engine = Runner({"model_path": str(smollm2_gguf), "num_ctx": 256, "num_thread": 64})
    try:
        assert engine.threads == len(cores())
        assert turn_lock_path() in open_files(os.getpid())
    finally:
        engine.close()
    assert turn_lock_path() not in open_files(os.getpid())
