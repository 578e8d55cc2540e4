"""`corral convert` run as a user runs it: default output name, --outfile/--outtype/--force,
and `Error: ...` with exit code 1 when it cannot convert."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from support import run_corral


@pytest.fixture
def minilm_copy(minilm_folder: Path, tmp_path: Path) -> Path:
    """The MiniLM folder as links, so the default output lands in a temporary folder."""
    folder = tmp_path / "all-MiniLM-L6-v2"
    folder.mkdir()
    for item in minilm_folder.iterdir():
        (folder / item.name).symlink_to(item)
    return folder


def test_help_has_an_example(clean_env: dict[str, str]) -> None:
    result = run_corral("convert", "--help", env=clean_env)
    assert result.returncode == 0
    assert "Example:" in result.stdout and "--outtype" in result.stdout and "--force" in result.stdout


@pytest.mark.slow
def test_convert_writes_the_default_name_and_refuses_to_overwrite(minilm_copy: Path,
                                                                   clean_env: dict[str, str]) -> None:
    result = run_corral("convert", str(minilm_copy), env=clean_env, timeout=300)
    assert result.returncode == 0, result.stderr
    out = minilm_copy / "all-MiniLM-L6-23M-v2-F16.gguf"  # named from the folder, as llama.cpp names it
    assert result.stdout == f"Wrote {out}\n"
    assert gguf.GGUFReader(out).fields["general.architecture"].contents() == "bert"
    before = out.stat().st_mtime_ns

    again = run_corral("convert", str(minilm_copy), env=clean_env, timeout=300)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == f"Error: {out} already exists; use --force to overwrite it"
    assert out.stat().st_mtime_ns == before

    forced = run_corral("convert", str(minilm_copy), "--force", env=clean_env, timeout=300)
    assert forced.returncode == 0, forced.stderr


@pytest.mark.slow
def test_outfile_and_outtype(minilm_copy: Path, tmp_path: Path, clean_env: dict[str, str]) -> None:
    out = tmp_path / "m.gguf"
    result = run_corral("convert", str(minilm_copy), "--outtype", "bf16", "--outfile", str(out),
                        env=clean_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert gguf.GGUFReader(out).fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_BF16
    into_folder = run_corral("convert", str(minilm_copy), "--outtype", "f32", "--outfile", str(tmp_path),
                             env=clean_env, timeout=300)
    assert into_folder.returncode == 0, into_folder.stderr
    assert (tmp_path / "all-MiniLM-L6-23M-v2-F32.gguf").is_file()


def test_errors_are_one_line_and_exit_1(tmp_path: Path, clean_env: dict[str, str]) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    result = run_corral("convert", str(folder), "--outfile", str(tmp_path / "x.gguf"), env=clean_env)
    assert result.returncode == 1
    assert result.stderr.startswith('Error: ')
    assert "model.safetensors: file not found" in result.stderr
    missing = run_corral("convert", str(tmp_path / "nowhere"), env=clean_env)
    assert (missing.returncode, missing.stderr) == (1, f"Error: {tmp_path / 'nowhere'}: not a folder\n")
    assert not (tmp_path / "x.gguf").exists()
