"""`corral quantize` and the llama.cpp quantizer: a small random llama in F16/F32, quantized to
each type, has the requested tensor types; bad sources, types and outputs are clear errors."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from corral.errors import InvalidRequest, PluginError
from corral.kernel import Kernel
from corral.types import QuantizerSpec
from support import run_corral
from tiny_llama import write_tiny_llama

pytestmark = pytest.mark.slow

# The type of a 2D weight that each file type gives (llama.cpp's mixes keep some tensors higher).
MAIN_TYPE = {"q4_0": "Q4_0", "q4_1": "Q4_1", "q5_0": "Q5_0", "q5_1": "Q5_1", "q8_0": "Q8_0",
             "q4_K_S": "Q4_K", "q4_K_M": "Q4_K", "q5_K_S": "Q5_K", "q5_K_M": "Q5_K", "q6_K": "Q6_K"}


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-f16.gguf", smollm2_gguf)


def tensor_types(path: Path) -> dict[str, str]:
    import gguf

    return {tensor.name: tensor.tensor_type.name for tensor in gguf.GGUFReader(str(path)).tensors}


@pytest.mark.parametrize("kind", list(MAIN_TYPE))
def test_every_type(tiny_f16: Path, tmp_path: Path, clean_env: dict[str, str], kind: str) -> None:
    output = tmp_path / "out.gguf"
    result = run_corral("quantize", str(tiny_f16), str(output), kind, env=clean_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"quantizing F16 model to {kind.upper()}" in result.stderr
    assert result.stdout.startswith(f"wrote {output} ({kind.upper()},")
    types = tensor_types(output)
    assert types["blk.0.attn_q.weight"] == MAIN_TYPE[kind]
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1D tensors stay as they were
    assert output.stat().st_size < tiny_f16.stat().st_size
    assert not list(tmp_path.glob(".tmp-*"))


def test_from_f32_and_refusals(tiny_f16: Path, tmp_path: Path, clean_env: dict[str, str], smollm2_gguf: Path) -> None:
    f32 = write_tiny_llama(tmp_path / "tiny-f32.gguf", smollm2_gguf, dtype="f32")
    output = tmp_path / "q.gguf"
    done = run_corral("quantize", str(f32), str(output), "Q8_0", env=clean_env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "quantizing F32 model to Q8_0" in done.stderr
    assert tensor_types(output)["blk.1.ffn_up.weight"] == "Q8_0"
    before = output.read_bytes()

    refusals = [
        (("quantize", str(f32), str(output), "q4_0"), f"{output} already exists; use --force to overwrite it"),
        (("quantize", str(smollm2_gguf), str(tmp_path / "x.gguf"), "q4_0"),
         "quantization is only supported for F16, BF16 and F32 models; SmolLM2-135M-Instruct.Q4_1.gguf is already "
         "quantized (Q4_1"),
        (("quantize", str(f32), str(tmp_path / "x.gguf"), "q3_K_XL"), "unsupported quantization type q3_K_XL - "
                                                                         "supported types are Q4_0, Q4_1"),
        (("quantize", str(tmp_path / "missing.gguf"), str(tmp_path / "x.gguf"), "q4_0"), "missing.gguf: no such file"),
        (("quantize", str(f32), str(tmp_path / "no" / "x.gguf"), "q4_0"), "no such folder"),
    ]
    for args, message in refusals:
        result = run_corral(*args, env=clean_env, timeout=300)
        assert result.returncode == 1, result
        assert result.stderr.startswith("Error: "), result.stderr
        assert message in result.stderr
    assert output.read_bytes() == before
    assert not (tmp_path / "x.gguf").exists()

    forced = run_corral("quantize", str(f32), str(output), "q4_0", "--force", env=clean_env, timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert tensor_types(output)["blk.1.ffn_up.weight"] == "Q4_0"


def test_a_broken_source_fails_cleanly(tmp_path: Path, clean_env: dict[str, str], tiny_f16: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_f16.read_bytes()[: tiny_f16.stat().st_size // 2])
    result = run_corral("quantize", str(broken), str(tmp_path / "out.gguf"), "q4_0", env=clean_env, timeout=300)
    assert result.returncode == 1 and result.stderr.startswith("Error: ")
    assert "broken.gguf" in result.stderr
    assert not (tmp_path / "out.gguf").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_quantizer_registry(tmp_path: Path) -> None:
    from corral import hookimpl

    class Other:
        @hookimpl
        def register_quantizers(self, settings):
            return [QuantizerSpec(name="other", types=("q3_k_s", "Q4_0"), factory=lambda kernel: "built")]

    kernel = Kernel.create({"HOME": str(tmp_path)}, load_entry_points=False)
    assert type(kernel.quantizer_for("q4_k_m")).__name__ == "LlamaCppQuantizer"
    assert kernel.quantizer_for("Q4_K_M") is kernel.quantizer_for("q4_k_m")
    with pytest.raises(InvalidRequest, match="unsupported quantization type iq2_xs"):
        kernel.quantizer_for("iq2_xs")
    clash = Kernel.create({"HOME": str(tmp_path)}, load_entry_points=False, plugins=(Other(),))
    with pytest.raises(PluginError, match='quantization type "Q4_0" is registered by both plugin'):
        clash.quantizer_for("q4_0")


def test_cancelling_stops_the_worker(tiny_f16: Path, tmp_path: Path) -> None:
    kernel = Kernel.create({"HOME": str(tmp_path)}, load_entry_points=False)
    quantizer = kernel.quantizer_for("q6_K")
    output = tmp_path / "out.gguf"

    async def scenario() -> None:
        iterator = quantizer.quantize(tiny_f16, output, "Q6_K")
        first = await iterator.__anext__()
        assert first.completed == 0 and first.total > 0
        await iterator.aclose()

    anyio.run(scenario)
    assert not output.exists()
    assert not list(tmp_path.glob(".tmp-*"))
