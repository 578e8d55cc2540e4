"""Choosing a GGUF file from a repository listing, as Ollama's Hugging Face integration does."""

from __future__ import annotations

import pytest

from corral import InvalidRequest, ModelNotFound
from corral.sdk import hub

LISTING = [
    "README.md",
    "SmolLM2-135M-Instruct-Q8_0.gguf",
    "SmolLM2-135M-Instruct-Q4_K_M.gguf",
    "SmolLM2-135M-Instruct-IQ4_XS.gguf",
    "SmolLM2-135M-Instruct.f16.gguf",
    "mmproj-SmolLM2-f16.gguf",
]


def test_default_is_q4_k_m_when_present():
    assert hub.choose_gguf(LISTING, None, "m") == "SmolLM2-135M-Instruct-Q4_K_M.gguf"


def test_default_without_q4_k_m_is_the_first_model_file_by_name():
    files = ["b-Q8_0.gguf", "a-Q5_K_S.gguf", "0-mmproj-f16.gguf"]
    assert hub.choose_gguf(files, None, "m") == "a-Q5_K_S.gguf"


@pytest.mark.parametrize(("tag", "expected"), [
    ("Q8_0", "SmolLM2-135M-Instruct-Q8_0.gguf"),
    ("q8_0", "SmolLM2-135M-Instruct-Q8_0.gguf"),
    ("iq4_xs", "SmolLM2-135M-Instruct-IQ4_XS.gguf"),
    ("F16", "SmolLM2-135M-Instruct.f16.gguf"),
    ("q4_k_m", "SmolLM2-135M-Instruct-Q4_K_M.gguf"),
])
def test_tag_matches_the_quantization_case_insensitively(tag, expected):
    assert hub.choose_gguf(LISTING, tag, "m") == expected


def test_a_partial_quantization_name_does_not_match():
    with pytest.raises(ModelNotFound) as caught:
        hub.choose_gguf(LISTING, "Q4_K", "hf.co/u/r:Q4_K")
    assert caught.value.status == 404
    assert 'no GGUF file for quantization "Q4_K"' in str(caught.value)
    assert "available: F16, IQ4_XS, Q4_K_M, Q8_0" in str(caught.value)


def test_a_projector_is_never_the_model():
    with pytest.raises(ModelNotFound):
        hub.choose_gguf(["mmproj-model-f16.gguf", "model-Q4_0.gguf"], "F16", "m")


def test_split_files_are_refused_clearly():
    files = ["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"]
    with pytest.raises(InvalidRequest, match="split into 2 files"):
        hub.choose_gguf(files, None, "m")


def test_checkpoint_files_need_config_and_safetensors():
    assert hub.checkpoint_files(["config.json", "model.safetensors", "tokenizer.json", "README.md",
                                          "1_Pooling/config.json", "onnx/model.onnx"]) == [
        "1_Pooling/config.json", "config.json", "model.safetensors", "tokenizer.json"]
    assert hub.checkpoint_files(["config.json", "pytorch_model.bin"]) == []


@pytest.mark.parametrize("path", ["../x.gguf", "/etc/passwd", "a/../../b", "a\\..\\b", ""])
def test_paths_that_leave_the_folder_are_unsafe(path):
    assert not hub.safe_repo_path(path)


def test_references_are_routed_by_host():
    assert hub.reference_host("hf.co/user/repo:Q4_K_M") == "hf.co"
    assert hub.reference_host("https://HuggingFace.co/user/repo") == "huggingface.co"
    assert hub.reference_host("user/repo") is None
