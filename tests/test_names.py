"""Model references follow Ollama's types/model/name.go rules."""

from __future__ import annotations

import pytest

from corral.errors import InvalidDigest, InvalidName
from corral.names import parse_reference, validate_digest

HEX = "a" * 64


@pytest.mark.parametrize(("text", "parts", "display"), [
    ("llama3", ("registry.ollama.ai", "library", "llama3", "latest"), "llama3:latest"),
    ("llama3.2:1b", ("registry.ollama.ai", "library", "llama3.2", "1b"), "llama3.2:1b"),
    ("user/model:tag", ("registry.ollama.ai", "user", "model", "tag"), "user/model:tag"),
    ("h/n/m:t", ("h", "n", "m", "t"), "h/n/m:t"),
    ("_why/_the/_lucky:_stiff", ("_why", "_the", "_lucky", "_stiff"), "_why/_the/_lucky:_stiff"),
    ("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
     ("hf.co", "bartowski", "SmolLM2-135M-Instruct-GGUF", "Q4_K_M"),
     "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M"),
    ("localhost:5000/library/m:t", ("localhost:5000", "library", "m", "t"), "localhost:5000/library/m:t"),
    ("REGISTRY.OLLAMA.AI/library/Llama3", ("REGISTRY.OLLAMA.AI", "library", "Llama3", "latest"), "Llama3:latest"),
    ("registry.ollama.ai/library/x:y", ("registry.ollama.ai", "library", "x", "y"), "x:y"),
    ("host/library/m:tag", ("host", "library", "m", "tag"), "host/library/m:tag"),
])
def test_valid_names(text: str, parts: tuple[str, ...], display: str) -> None:
    ref = parse_reference(text)
    assert ref.parts == parts
    assert ref.display == display
    assert str(ref) == "/".join(parts[:3]) + ":" + parts[3]


def test_scheme_and_digest() -> None:
    ref = parse_reference(f"http://localhost:8080/ns/m:t@sha256:{HEX}")
    assert (ref.scheme, ref.host, ref.digest) == ("http", "localhost:8080", f"sha256:{HEX}")


@pytest.mark.parametrize("text", [
    "", " ", "n/m:", "mm:", "/nn/mm", "-hh/nn/mm:tt", "host/name:space/model:tag", "^", "a/b/c/d",
    "../etc/passwd", "..", ".", "a/../b", "m:..", "m:../x", "ns./m", "m@sha256:zz", "ftp://h/n/m",
    "m\x00", "m/", "a b", "x" * 81, "n/" + "x" * 81, "m:" + "t" * 81, "model:tag:more", "ns.x/m",
])
def test_invalid_names(text: str) -> None:
    with pytest.raises(InvalidName) as error:
        parse_reference(text)
    assert str(error.value).startswith("invalid model name")


def test_invalid_name_messages_say_why() -> None:
    with pytest.raises(InvalidName, match='the namespace "ns.x" has characters that are not allowed'):
        parse_reference("ns.x/m")
    with pytest.raises(InvalidName, match="the tag is empty"):
        parse_reference("mm:")


def test_case_folding_key() -> None:
    assert parse_reference("Llama3:Latest").folded() == parse_reference("llama3").folded()


@pytest.mark.parametrize("digest", [f"sha256:{HEX}", f"sha256-{HEX}", f"sha256:{HEX.upper()}"])
def test_valid_digests(digest: str) -> None:
    assert validate_digest(digest) == f"sha256:{HEX}"


@pytest.mark.parametrize("digest", [
    "", "sha256:", f"sha256:{HEX}0", f"sha512:{HEX}", f"sha256:../{HEX[3:]}", f"sha256:{HEX[:-1]}g",
    f"sha256/{HEX}", f" sha256:{HEX}", f"sha256:{HEX}\n", None, 42, "../../etc/passwd",
])
def test_invalid_digests(digest: object) -> None:
    with pytest.raises(InvalidDigest, match="invalid digest format"):
        validate_digest(digest)  # type: ignore[arg-type]
