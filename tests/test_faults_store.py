"""Faults made to happen for real around the model store and the registries, on a real ``corral
serve``: a SIGKILL mid-pull, a full disk (a small tmpfs as the store) during a pull, a create and
a blob upload, a SIGTERM mid-create, and a registry that stalls, resets, lies about sizes or sends
a bomb. While each runs, ``GET /api/version`` from another client answers within a second."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fake_registry import Fault, FakeRegistry, gzip_bomb
from ollama_store import ollama_model
from registry_support import corral_env, stream
from servers import free_port, store_with_smollm2

pytestmark = [pytest.mark.slow, pytest.mark.faults]

REPO = "library/big"
WEIGHTS = 40_000_000


# -- a server we may kill, and a client that keeps asking for the version ------------------------


class Server:
    """``corral serve`` in a process of its own, which a test may kill with any signal."""

    def __init__(self, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"],
            env={**env, "OLLAMA_HOST": f"127.0.0.1:{port}"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("corral serve did not start:\n" + "".join(self.lines))
            time.sleep(0.1)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def serving(env: dict[str, str]) -> Iterator[Server]:
    server = Server(env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            assert server.stop() == 0, "".join(server.lines)


@contextmanager
def version_answers_within_a_second(url: str) -> Iterator[list[float]]:
    """Ask for /api/version every 0.2 s from another client while the block runs."""
    times: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    client.get(url + "/api/version").raise_for_status()
                    times.append(time.monotonic() - started)
                except httpx.HTTPError:
                    times.append(float("inf"))
                stop.wait(0.2)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield times
    finally:
        stop.set()
        thread.join(15)
    assert times, "the probe never ran"
    assert max(times) < 1.0, f"/api/version took {max(times):.2f} s (of {len(times)} probes)"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path):
    """A registry serving ``library/big``: 40 MB of random weights and a small system prompt."""
    publisher = tmp_path / "publisher"
    ollama_model(publisher, ("registry.ollama.ai", "library", "big", "latest"), os.urandom(WEIGHTS),
                 template="{{ .Prompt }}", system="Be brief.")
    fake = FakeRegistry(root=tmp_path / "registry-blobs").start()
    fake.publish_store(publisher, ("registry.ollama.ai", "library", "big", "latest"), REPO, "latest")
    yield fake
    fake.stop()


def weights_of(registry: FakeRegistry) -> dict:
    return json.loads(registry.manifests[(REPO, "latest")])["layers"][0]


@contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` MB at ``folder``: a real disk that really fills up."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the ENOSPC tests of "
                    "tests/test_store.py cover the backend")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Write a file that leaves ``leave`` bytes free on ``disk``."""
    import shutil

    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as handle:
        left = free - leave
        while left > 0:
            try:
                left -= handle.write(bytes(min(left, 1 << 20)))
            except OSError:
                break
    return filler


def snapshot(models: Path) -> dict[str, str]:
    """Every blob and manifest with its sha256: what must not change."""
    return {str(path.relative_to(models)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in ("blobs", "manifests") for path in sorted((models / folder).rglob("*"))
            if path.is_file() and "partial" not in path.name and not path.name.startswith(".tmp-")}


def temporaries(models: Path) -> list[str]:
    return sorted(str(path.relative_to(models)) for path in models.rglob(".tmp-*"))


# -- SIGKILL mid-pull ---------------------------------------------------------------------------


def test_a_pull_killed_with_sigkill_resumes_after_a_restart_without_fetching_again(
        tmp_path: Path, clean_env: dict[str, str], registry: FakeRegistry) -> None:
    models = tmp_path / "models"
    env = corral_env(clean_env, models)
    weights = weights_of(registry)
    registry.throttle = 1_500_000  # bytes per second per stream: the pull takes a while
    server = Server(env)
    with version_answers_within_a_second(server.url):
        threading.Thread(target=lambda: _quietly(server.url, {"model": f"{registry.host}/{REPO}", "insecure": True}),
                         daemon=True).start()
        deadline = time.monotonic() + 60
        while registry.served[weights["digest"]] < WEIGHTS // 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    server.stop(signal.SIGKILL)
    served_before = -1
    while served_before != registry.served[weights["digest"]]:  # the fake's senders notice the dead peer
        served_before = registry.served[weights["digest"]]
        time.sleep(1)
    assert 0 < served_before < WEIGHTS
    partial = models / "blobs" / (weights["digest"].replace(":", "-") + "-partial")
    records = [json.loads(path.read_text()) for path in partial.parent.glob(partial.name + "-*")]
    verified = sum(record["Completed"] for record in records)
    assert 0 < verified <= served_before

    registry.throttle = None
    with serving(env) as again, version_answers_within_a_second(again.url):
        _, lines = stream(again.url, "/api/pull", {"model": f"{registry.host}/{REPO}", "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    fetched_again = registry.served[weights["digest"]] - served_before
    assert fetched_again == WEIGHTS - verified  # exactly what the records did not promise
    blob = models / "blobs" / weights["digest"].replace(":", "-")
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == weights["digest"]


def _quietly(url: str, body: dict) -> None:
    try:
        stream(url, "/api/pull", body)
    except httpx.HTTPError:
        pass


# -- a full disk -------------------------------------------------------------------------------------


@pytest.fixture
def full_disk_store(tmp_path: Path, clean_env: dict[str, str], smollm2_gguf: Path):
    """A 160 MB tmpfs as the store, holding SmolLM2 (98 MB), and a server on it."""
    with small_disk(tmp_path / "disk", 160) as disk:
        models = disk / "models"
        store_with_smollm2(models, smollm2_gguf)
        before = snapshot(models)
        with serving(corral_env(clean_env, models)) as server:
            yield disk, models, server
        assert snapshot(models) == before  # every existing model, byte for byte
        assert temporaries(models) == []


def assert_smol_still_works(url: str) -> None:
    with httpx.Client(timeout=120) as client:
        show = client.post(url + "/api/show", json={"model": "smol"})
        assert show.status_code == 200 and show.json()["system"] == "You are a helpful assistant."
        answer = client.post(url + "/api/generate", json={"model": "smol", "prompt": "Hi", "stream": False,
                                                          "options": {"num_predict": 2}})
        assert answer.status_code == 200, answer.text


def test_a_pull_that_cannot_fit_is_refused_up_front(full_disk_store, registry: FakeRegistry) -> None:
    disk, models, server = full_disk_store
    fill(disk, 20_000_000)  # less than the 40 MB of weights
    with version_answers_within_a_second(server.url), httpx.Client(timeout=60) as client:
        response = client.post(server.url + "/api/pull", json={"model": f"{registry.host}/{REPO}",
                                                                "insecure": True, "stream": False})
    assert response.status_code == 507
    assert response.json()["error"].startswith(f"pull model: not enough free space in {models}: it needs 40.0 MB")
    assert registry.bytes_served() == 0
    assert not (models / "manifests" / registry.host).exists()
    assert_smol_still_works(server.url)


def test_a_disk_that_fills_up_during_a_pull(full_disk_store, registry: FakeRegistry) -> None:
    disk, models, server = full_disk_store
    weights = weights_of(registry)
    registry.throttle = 2_000_000
    filler: list[Path] = []

    def fill_once_reserved() -> None:  # someone else takes the rest of the disk mid-download
        deadline = time.monotonic() + 30
        while registry.served[weights["digest"]] < 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        filler.append(fill(disk, 0))

    threading.Thread(target=fill_once_reserved, daemon=True).start()
    with version_answers_within_a_second(server.url):
        _, lines = stream(server.url, "/api/pull", {"model": f"{registry.host}/{REPO}", "insecure": True})
    assert "no space left on device" in lines[-1].get("error", ""), lines[-3:]
    assert not (models / "manifests" / registry.host).exists()  # no half model
    assert_smol_still_works(server.url)

    filler[0].unlink()  # room again: the pull resumes and completes
    registry.throttle = None
    _, lines = stream(server.url, "/api/pull", {"model": f"{registry.host}/{REPO}", "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert registry.served[weights["digest"]] < 2 * WEIGHTS
    with httpx.Client(timeout=60) as client:
        assert client.request("DELETE", server.url + "/api/delete",
                              json={"model": f"{registry.host}/{REPO}"}).status_code == 200


def test_a_disk_that_is_full_during_a_create(full_disk_store) -> None:
    disk, models, server = full_disk_store
    filler = fill(disk, 1_000_000)
    with version_answers_within_a_second(server.url), httpx.Client(timeout=60) as client:
        response = client.post(server.url + "/api/create", json={
            "model": "smol-licensed", "from": "smol", "license": "a long license. " * 250_000, "stream": False})
    assert response.status_code == 507, response.text
    assert response.json()["error"].startswith("no space left on device while writing")
    assert not (models / "manifests" / "registry.ollama.ai" / "library" / "smol-licensed").exists()
    assert_smol_still_works(server.url)
    filler.unlink()


def test_a_disk_that_is_full_during_a_blob_upload(full_disk_store) -> None:
    disk, models, server = full_disk_store
    data = os.urandom(8_000_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    filler = fill(disk, 1_000_000)
    with version_answers_within_a_second(server.url), httpx.Client(timeout=60) as client:
        response = client.post(f"{server.url}/api/blobs/{digest}", content=data)
        assert response.status_code == 507, response.text
        assert response.json()["error"].startswith("no space left on device while writing")
        assert client.head(f"{server.url}/api/blobs/{digest}").status_code == 404
    assert_smol_still_works(server.url)
    filler.unlink()


# -- SIGTERM mid-create ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_create_stopped_by_a_signal_leaves_no_model_and_no_leftovers(
        tmp_path: Path, clean_env: dict[str, str], smollm2_gguf: Path, minilm_folder: Path, signum: int) -> None:
    from corral.sdk.hub import checkpoint_files

    models = store_with_smollm2(tmp_path / "models", smollm2_gguf)
    env = corral_env(clean_env, models)
    names = [str(path.relative_to(minilm_folder)) for path in minilm_folder.rglob("*") if path.is_file()]
    files = {name: minilm_folder / name for name in checkpoint_files(names)}
    server = Server(env)
    digests = {}
    with httpx.Client(timeout=120) as client:
        for name, path in files.items():
            data = path.read_bytes()
            digests[name] = "sha256:" + hashlib.sha256(data).hexdigest()
            assert client.post(f"{server.url}/api/blobs/{digests[name]}", content=data).status_code in (200, 201)
    before = snapshot(models)
    seen: list[dict] = []
    with version_answers_within_a_second(server.url):
        try:
            with httpx.Client(timeout=120) as client, client.stream(
                    "POST", server.url + "/api/create", json={"model": "minilm", "files": digests}) as response:
                for line in response.iter_lines():
                    if line.strip():
                        seen.append(json.loads(line))
                    if seen and seen[-1].get("status") == "converting model" and server.process.poll() is None:
                        assert temporaries(models), "the conversion works in a .tmp-create-* folder"
                        server.process.send_signal(signum)
                        if signum == signal.SIGKILL:
                            break
        except httpx.HTTPError:
            assert signum == signal.SIGKILL
    code = server.stop()
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL), "".join(server.lines)
    assert any(line.get("status") == "converting model" for line in seen)
    assert seen[-1].get("status") != "success", seen[-3:]
    assert not (models / "manifests" / "registry.ollama.ai" / "library" / "minilm").exists()
    assert snapshot(models) == before
    if signum == signal.SIGKILL:
        assert temporaries(models)  # a crash leaves the work folder behind

    with serving(env) as again:  # the start-up sweep takes whatever the signal left behind
        assert temporaries(models) == []
        _, lines = stream(again.url, "/api/create", {"model": "minilm", "files": digests})
        assert lines[-1] == {"status": "success"}, lines[-3:]


# -- a hostile registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stall", "reset"])
def test_a_registry_that_stalls_or_resets_is_retried_and_the_pull_completes(
        tmp_path: Path, clean_env: dict[str, str], registry: FakeRegistry, fault: str) -> None:
    models = tmp_path / "models"
    weights = weights_of(registry)
    if fault == "stall":
        registry.faults.append(Fault(kind="stall", after=3_000_000, seconds=30, then_drop=True, digest=weights["digest"]))
    else:
        registry.faults += [Fault(kind="drop", after=2_000_000, digest=weights["digest"]) for _ in range(3)]
    with serving(corral_env(clean_env, models, stall=2)) as server, version_answers_within_a_second(server.url):
        _, lines = stream(server.url, "/api/pull", {"model": f"{registry.host}/{REPO}", "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert not registry.faults


def test_a_registry_that_lies_about_a_size_fails_the_pull_cleanly(
        tmp_path: Path, clean_env: dict[str, str], registry: FakeRegistry) -> None:
    models = tmp_path / "models"
    weights = weights_of(registry)
    registry.lie[weights["digest"]] = WEIGHTS // 2
    with serving(corral_env(clean_env, models)) as server, version_answers_within_a_second(server.url):
        _, lines = stream(server.url, "/api/pull", {"model": f"{registry.host}/{REPO}", "insecure": True})
    assert f"the registry says the blob has {WEIGHTS // 2} bytes, the manifest {WEIGHTS}" in lines[-1]["error"]
    assert not (models / "manifests").exists()


@pytest.mark.parametrize("where", ["manifest", "token", "error"])
def test_a_registry_that_sends_a_bomb_costs_the_server_no_memory(
        tmp_path: Path, clean_env: dict[str, str], registry: FakeRegistry, where: str) -> None:
    registry.bomb, registry.bomb_size = where, 1 << 30  # a 1 MB gzip answer that unpacks to 1 GiB
    gzip_bomb(registry.bomb_size)
    with serving(corral_env(clean_env, tmp_path / "models")) as server:
        before = server.rss()
        with version_answers_within_a_second(server.url), httpx.Client(timeout=120) as client:
            response = client.post(server.url + "/api/pull", json={"model": f"{registry.host}/{REPO}",
                                                                    "insecure": True, "stream": False})
        grown = server.rss() - before
    assert response.status_code == 500 and len(response.json()["error"]) < 300, response.text
    assert grown < 100 * 1024 * 1024, f"the server grew by {grown} bytes"
