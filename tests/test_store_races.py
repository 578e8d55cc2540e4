"""Copies, deletes, creates and pulls racing on one store, over the real HTTP API: a model that
answered 200 must stay whole (every blob it names present)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROUNDS = 40


def test_copy_racing_delete_never_leaves_a_model_without_its_blobs(server: str, smol_store: Path) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        for index in range(ROUNDS):  # each source has blobs of its own (its system prompt, its config)
            response = client.post("/api/create", json={"model": f"src{index}", "from": "smol",
                                                        "system": f"You are assistant number {index}.",
                                                        "stream": False})
            assert response.status_code == 200, response.text

    copied: dict[int, int] = {}
    deleted: dict[int, int] = {}
    start = threading.Barrier(2 * ROUNDS)

    def copy(index: int) -> None:
        with httpx.Client(base_url=server, timeout=120) as client:
            start.wait()
            copied[index] = client.post("/api/copy", json={"source": f"src{index}",
                                                           "destination": f"dst{index}"}).status_code

    def delete(index: int) -> None:
        with httpx.Client(base_url=server, timeout=120) as client:
            start.wait()
            deleted[index] = client.request("DELETE", "/api/delete", json={"model": f"src{index}"}).status_code

    threads = [threading.Thread(target=work, args=(index,)) for index in range(ROUNDS) for work in (copy, delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(deleted.values()) == {200}
    assert set(copied.values()) <= {200, 404}
    with httpx.Client(base_url=server, timeout=120) as client:
        for index, status in copied.items():
            show = client.post("/api/show", json={"model": f"dst{index}"})
            if status == 404:  # the delete came first: no copy, and nothing half made
                assert show.status_code == 404
                continue
            assert show.status_code == 200, show.text
            assert show.json()["system"] == f"You are assistant number {index}."
    blobs = {path.name.replace("-", ":", 1) for path in (smol_store / "blobs").iterdir()}
    for manifest in (smol_store / "manifests").rglob("*"):
        if manifest.is_file():
            import json

            data = json.loads(manifest.read_bytes())
            for layer in [data["config"], *data["layers"]]:
                assert layer["digest"] in blobs, f"{manifest} names a missing blob"
