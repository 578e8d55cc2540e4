"""Pulling from a registry, driven as users drive it: /api/pull on a real ``corral serve``, the real
``ollama`` client, and ``corral pull``, against a fake registry that speaks the real protocol
(token challenge, redirect to a CDN, ranges) and misbehaves on demand."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from fake_registry import Fault, FakeRegistry
from registry_support import corral_env, layers_of, model_layer, publish_smollm2, republish, stream
from servers import running_server
from support import run_corral

pytestmark = pytest.mark.slow


@pytest.fixture
def published(tmp_path: Path, smollm2_gguf: Path):
    registry, manifest = publish_smollm2(tmp_path, smollm2_gguf)
    yield registry, manifest
    registry.stop()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def env(clean_env: dict[str, str], models: Path) -> dict[str, str]:
    return corral_env(clean_env, models)


@pytest.fixture
def server(env: dict[str, str]):
    with running_server(env) as url:
        yield url


def name_in(registry: FakeRegistry, model: str = "library/smol") -> str:
    return f"{registry.host}/{model}"


def stored_manifest(models: Path, registry: FakeRegistry, model: str = "smol", tag: str = "latest") -> Path:
    return models / "manifests" / registry.host / "library" / model / tag


def blob_files(models: Path) -> list[str]:
    return sorted(path.name for path in (models / "blobs").iterdir()) if (models / "blobs").is_dir() else []


def assert_model_stored(models: Path, registry: FakeRegistry, manifest: dict) -> None:
    raw = stored_manifest(models, registry).read_bytes()
    assert raw == registry.manifests[("library/smol", "latest")]  # kept verbatim
    for layer in layers_of(manifest):
        blob = models / "blobs" / layer["digest"].replace(":", "-")
        assert blob.stat().st_size == layer["size"]
    assert not [name for name in blob_files(models) if "partial" in name]


# the happy path, three ways


def test_pull_streams_ollamas_statuses_and_stores_the_model(server: str, published, models: Path) -> None:
    registry, manifest = published
    status, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert status == 200
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    for layer in layers_of(manifest):
        mine = [line for line in lines if line.get("digest") == layer["digest"]]
        assert mine and all(line["status"] == f"pulling {layer['digest'][7:19]}" for line in mine)
        assert all(line["total"] == layer["size"] for line in mine)
        completed = [line.get("completed", 0) for line in mine]
        assert completed == sorted(completed) and completed[-1] == layer["size"]
    assert_model_stored(models, registry, manifest)

    # the protocol as Ollama speaks it: a token after the challenge, the manifest media type,
    # blobs fetched from the CDN in several ranges without the token, every byte exactly once
    manifest_requests = [r for r in registry.requests if "/manifests/" in r["path"]]
    assert "application/vnd.docker.distribution.manifest.v2+json" in manifest_requests[-1]["accept"]
    assert manifest_requests[-1]["authorization"].startswith("Bearer ")
    cdn = [r for r in registry.requests if r["cdn"]]
    assert cdn and all(r["authorization"] is None and r["range"].startswith("bytes=") for r in cdn)
    model = model_layer(manifest)
    # 98 MB in six slices of 16 MiB
    assert len([r for r in cdn if model["digest"] in r["path"]]) == 6
    assert registry.bytes_served() == sum(layer["size"] for layer in layers_of(manifest))

    with httpx.Client(timeout=120) as client:
        tags = client.get(server + "/api/tags").json()["models"]
        assert [entry["name"] for entry in tags] == [f"{registry.host}/library/smol:latest"]
        answer = client.post(server + "/api/generate", json={
            "model": name_in(registry), "prompt": "Say hello.", "stream": False,
            "options": {"num_predict": 8, "temperature": 0}}).json()
    assert answer["done"] is True and answer["response"].strip()


def test_pull_with_the_ollama_client(server: str, published, models: Path) -> None:
    import ollama

    registry, manifest = published
    client = ollama.Client(host=server, timeout=300)
    updates = list(client.pull(name_in(registry), insecure=True, stream=True))
    assert updates[0].status == "pulling manifest" and updates[-1].status == "success"
    assert any(update.digest == model_layer(manifest)["digest"] and update.completed == update.total
               for update in updates)
    assert client.pull(name_in(registry), insecure=True).status == "success"  # stream=False, all present
    assert_model_stored(models, registry, manifest)
    assert registry.bytes_served() == sum(layer["size"] for layer in layers_of(manifest))


def test_corral_pull_prints_one_line_per_layer(server: str, env: dict[str, str], published, models: Path) -> None:
    registry, manifest = published
    result = run_corral("pull", "--insecure", name_in(registry), env={**env, "OLLAMA_HOST": server[7:]},
                        timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "pulling manifest" and lines[-1] == "success"
    model = model_layer(manifest)
    assert f"pulling {model['digest'][7:19]}: 100% 98 MB" in lines
    assert_model_stored(models, registry, manifest)


# failures that are retried or resumed


def test_pull_resumes_after_the_connection_drops(server: str, published, models: Path) -> None:
    registry, manifest = published
    model = model_layer(manifest)
    registry.faults += [Fault(kind="drop", after=3_000_000, digest=model["digest"]),
                        Fault(kind="drop", after=1_000_000, digest=model["digest"])]
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert_model_stored(models, registry, manifest)
    # what was received is never fetched again (the slack: bytes the server had sent into the
    # socket that the drop threw away)
    assert registry.served[model["digest"]] - model["size"] < 2 * 4_000_000
    starts = [int(r["range"][6:].split("-")[0]) for r in registry.requests if r["cdn"] and model["digest"] in r["path"]]
    # two ranges asked for again, from where they broke
    assert len(starts) >= 8 and len(set(starts)) == len(starts)
    assert not registry.faults


def test_pull_from_a_server_that_ignores_ranges(server: str, published, models: Path) -> None:
    # whole-blob answers go through httpx's reader, skipping to each slice's start
    registry, manifest = published
    registry.ignore_ranges = True
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert_model_stored(models, registry, manifest)


def test_pull_retries_server_errors(server: str, published, models: Path) -> None:
    registry, manifest = published
    registry.faults += [Fault(kind="500"), Fault(kind="500"), Fault(kind="500")]
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert_model_stored(models, registry, manifest)
    assert not registry.faults


def test_a_stalled_part_is_fetched_again(clean_env: dict[str, str], published, models: Path) -> None:
    registry, manifest = published
    model = model_layer(manifest)
    registry.faults.append(Fault(kind="stall", after=2_000_000, seconds=30, then_drop=True, digest=model["digest"]))
    with running_server(corral_env(clean_env, models, stall=2)) as server:
        _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert_model_stored(models, registry, manifest)
    stalled = [r for r in registry.requests if r["cdn"] and model["digest"] in r["path"]]
    # six ranges, the stalled one asked for again from where it stopped (a busy machine may
    # stall another one too)
    assert len(stalled) >= 7 and len({r["range"] for r in stalled}) == len(stalled)


def test_pull_resumes_after_corral_restarts(clean_env: dict[str, str], published, models: Path) -> None:
    registry, manifest = published
    model = model_layer(manifest)
    env = corral_env(clean_env, models, stall=60)
    registry.faults.append(Fault(kind="stall", after=5_000_000, seconds=20, then_drop=True, digest=model["digest"]))
    first: list[dict] = []
    with running_server(env) as url:
        pulling = threading.Thread(target=lambda: first.extend(
            _quietly(url, {"model": name_in(registry), "insecure": True})), daemon=True)
        pulling.start()
        # every slice but one arrives; that one stops after 5 MB: wait until no byte moves for
        # 1.5 s (progress is recorded every half second)
        deadline, quiet, last = time.monotonic() + 120, 0, -1
        while quiet < 6 and time.monotonic() < deadline:
            time.sleep(0.25)
            served = registry.served[model["digest"]]
            quiet = quiet + 1 if served == last and served > 0 else 0
            last = served
    partial_names = [name for name in blob_files(models) if "partial" in name]
    assert partial_names and not stored_manifest(models, registry).exists()
    served_before = registry.served[model["digest"]]
    assert served_before < model["size"]

    with running_server(env) as url:
        _, lines = stream(url, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}, lines[-3:]
    assert_model_stored(models, registry, manifest)
    again = registry.served[model["digest"]] - served_before
    assert again == model["size"] - served_before  # only the missing bytes


def _quietly(url: str, body: dict) -> list[dict]:
    try:
        return stream(url, "/api/pull", body)[1]
    except httpx.HTTPError:
        return []


# failures that end the pull, leaving the store as it was


def test_wrong_bytes_never_reach_the_store(server: str, published, models: Path) -> None:
    registry, manifest = published
    model = model_layer(manifest)
    registry.faults.append(Fault(kind="corrupt", after=100, digest=model["digest"]))
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    error = lines[-1]["error"]
    assert error.startswith(f"digest mismatch, file must be downloaded again: want {model['digest']}, got sha256:")
    assert not stored_manifest(models, registry).exists()
    assert model["digest"].replace(":", "-") not in blob_files(models)
    assert not [name for name in blob_files(models) if name.startswith(model["digest"].replace(":", "-"))]

    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}
    assert_model_stored(models, registry, manifest)


def test_unknown_model_is_ollamas_not_found(server: str, published, models: Path) -> None:
    import ollama

    registry, _ = published
    name = name_in(registry, "library/nothing")
    status, lines = stream(server, "/api/pull", {"model": name, "insecure": True})
    assert status == 200
    assert lines == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    with httpx.Client(timeout=60) as client:
        response = client.post(server + "/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert response.status_code == 404
    assert response.json() == {"error": "pull model manifest: file does not exist"}
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        ollama.Client(host=server).pull(name, insecure=True)
    assert not (models / "manifests").exists()


def test_bad_requests(server: str) -> None:
    with httpx.Client(timeout=60) as client:
        for body, message in (({}, "invalid model name"), ({"model": "a/b/c/d"}, "invalid model name")):
            response = client.post(server + "/api/pull", json=body)
            assert (response.status_code, response.json()) == (400, {"error": message})
        for stream_it in (True, False):  # bad input is a 400 before any progress line
            response = client.post(server + "/api/pull", json={"model": "http://evil/x", "stream": stream_it})
            assert (response.status_code, response.json()) == (400, {"error": "insecure protocol http"})


def test_unreachable_registry_is_a_clear_error(server: str, published, models: Path) -> None:
    registry, _ = published
    name = name_in(registry)
    registry.stop()
    with httpx.Client(timeout=120) as client:
        response = client.post(server + "/api/pull", json={"model": name, "insecure": True, "stream": False})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error.startswith("pull model manifest: max retries exceeded: ") and "refused" in error
    assert not (models / "manifests").exists()


def test_garbage_from_the_registry_is_a_clear_error(server: str, published, models: Path) -> None:
    registry, _ = published
    registry.manifests[("library/smol", "latest")] = b"<html>surprise</html>"
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1]["error"].startswith("pull model manifest: the registry sent an invalid manifest")
    registry.manifests[("library/smol", "latest")] = json.dumps(
        {"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:../../etc/passwd", "size": 1},
         "layers": []}).encode()
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1]["error"].startswith("pull model manifest: the registry sent an invalid manifest")
    registry.manifests[("library/smol", "latest")] = b"[" * 5_000_000
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"error": "pull model manifest: the registry sent more than 4194304 bytes"}
    assert not (models / "manifests").exists() and blob_files(models) == []


def test_a_full_disk_is_a_clear_error_and_changes_nothing(clean_env: dict[str, str], published,
                                                          models: Path) -> None:
    """Space for a blob is reserved before a byte is fetched, so a full disk fails at once. The
    file size limit (RLIMIT_FSIZE) plays the full disk in a corral server of its own."""
    import resource
    import subprocess
    import sys

    registry, manifest = published
    env = corral_env(clean_env, models)
    limit = 50_000_000
    code = ("import resource,sys; resource.setrlimit(resource.RLIMIT_FSIZE, (%d, %d)); "
            "from corral.plugins.cli import main; sys.argv=['corral','serve']; main()") % (limit, limit)
    from servers import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", code], env={**env, "OLLAMA_HOST": f"127.0.0.1:{port}"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        _, lines = stream(url, "/api/pull", {"model": name_in(registry), "insecure": True})
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert "file too large" in lines[-1]["error"] or "no space left" in lines[-1]["error"], lines[-1]
    assert not (models / "manifests").exists()
    assert registry.served[model_layer(manifest)["digest"]] == 0
    del resource


# updates


def test_an_updated_model_fetches_only_the_changed_layers(server: str, published, models: Path,
                                                          tmp_path: Path, smollm2_gguf: Path) -> None:
    registry, manifest = published
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}
    before = dict(registry.served)
    updated = republish(registry, tmp_path, smollm2_gguf, system="You answer in French.")
    _, lines = stream(server, "/api/pull", {"model": name_in(registry), "insecure": True})
    assert lines[-1] == {"status": "success"}
    old = {layer["digest"] for layer in layers_of(manifest)}
    new = {layer["digest"] for layer in layers_of(updated)}
    fetched = {digest for digest, count in registry.served.items() if count != before.get(digest, 0)}
    assert fetched == new - old and model_layer(updated)["digest"] not in fetched
    raw = stored_manifest(models, registry).read_bytes()
    assert raw == registry.manifests[("library/smol", "latest")]
    # the blobs only the old version used are gone
    assert {name.replace("-", ":", 1) for name in blob_files(models)} == new
    assert hashlib.sha256(raw).hexdigest()


def test_concurrent_pulls_share_one_download(server: str, published, models: Path) -> None:
    registry, manifest = published
    results: list[list[dict]] = [[], []]
    body = {"model": name_in(registry), "insecure": True}
    threads = [threading.Thread(target=lambda i=i: results[i].extend(stream(server, "/api/pull", body)[1]))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert [lines[-1] for lines in results] == [{"status": "success"}] * 2
    assert_model_stored(models, registry, manifest)
    assert registry.bytes_served() == sum(layer["size"] for layer in layers_of(manifest))


def test_corral_pull_draws_bars_on_a_terminal_and_fails_like_ollama(server: str, env: dict[str, str],
                                                                    published, models: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    registry, manifest = published
    user_env = {**env, "OLLAMA_HOST": server[7:], "COLUMNS": "120", "TERM": "xterm"}
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", "from corral.plugins.cli import main; main()",
                                "pull", "--insecure", name_in(registry)],
                               env=user_env, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(300) == 0, process.stderr.read()
    os.close(leader)
    text = output.decode(errors="replace")
    assert f"pulling {model_layer(manifest)['digest'][7:19]}" in text and "98.4/98.4 MB" in text
    assert "success" in text
    assert_model_stored(models, registry, manifest)

    result = run_corral("pull", "--insecure", name_in(registry, "library/nothing"), env=user_env)
    assert result.returncode == 1
    assert result.stderr == "Error: pull model manifest: file does not exist\n"
