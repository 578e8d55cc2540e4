"""Quantization with llama.cpp's quantizer (``llama_model_quantize``), always in a subprocess.

The server side (:class:`LlamaCppQuantizer`) checks the source in Python, starts
``python -m corral.plugins.runtime_llamacpp.quantize SRC TMP TYPE`` and turns the worker's JSON
lines into Progress. The worker reads llama.cpp's log, where each tensor starts with a line such
as ``[  12/  20] blk.1.attn_k.weight - [256, 128, 1, 1], type = f16, converting to q4_0 ..``,
and reports the tensor it reached. The output is written next to ``dst`` and renamed into place
only when complete, so a failed or cancelled quantization leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# llama_ftype values (llama.h) of the types offered.
FILE_TYPES = {
    "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18,
}
SOURCE_TYPES = ("F32", "F16", "BF16")
WORKER_MODULE = "corral.plugins.runtime_llamacpp.quantize"
TENSOR_LINE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]\s+(\S+)")


class LlamaCppQuantizer:
    async def quantize(self, src: Path, dst: Path, type: str) -> AsyncIterator[Any]:
        import anyio
        from anyio.streams.buffered import BufferedByteReceiveStream

        from corral import InvalidRequest, Progress, RuntimeFailure
        from corral.sdk.gguf import read_gguf
        from corral.sdk.runner import child_env

        kind = type.upper()
        if kind not in FILE_TYPES:
            raise InvalidRequest(f"unsupported quantization type {type} - supported types are {', '.join(FILE_TYPES)}")
        gguf = await anyio.to_thread.run_sync(lambda: read_gguf(src, skip_arrays_longer_than=0))
        quantized = sorted({tensor.type for tensor in gguf.tensors} - set(SOURCE_TYPES))
        if quantized:
            raise InvalidRequest(f"quantization is only supported for F16, BF16 and F32 models; "
                                 f"{src.name} is already quantized ({gguf.file_type}, tensors of type "
                                 f"{', '.join(quantized)})")
        sizes = {tensor.name: tensor.size for tensor in gguf.tensors}
        total = sum(sizes.values())
        status = f"quantizing {gguf.file_type} model to {kind}"
        temporary = dst.parent / f".tmp-{uuid.uuid4().hex}.gguf"
        process = await anyio.open_process(
            [sys.executable, "-m", WORKER_MODULE, str(src), str(temporary), kind],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(),
        )
        errors: list[str] = []
        other: deque[str] = deque(maxlen=3)  # the last lines that were not ours, for an error message
        try:
            yield Progress(status=status, total=total, completed=0)
            stdout = BufferedByteReceiveStream(process.stdout)  # type: ignore[arg-type]
            done_bytes, current = 0, None
            while True:
                try:
                    line = await stdout.receive_until(b"\n", 1 << 20)
                except (anyio.EndOfStream, anyio.IncompleteRead):
                    break
                try:
                    message = json.loads(line)
                    if not isinstance(message, dict):
                        raise ValueError("not one of ours")
                except ValueError:
                    if line.strip():
                        other.append(line.decode("utf-8", "replace").strip())
                    continue
                if "tensor" in message:
                    if current is not None:
                        done_bytes += sizes.get(current, 0)
                    current = message["tensor"]
                    yield Progress(status=status, total=total, completed=min(done_bytes, total))
                elif "error" in message:
                    errors.append(message["error"])
            code = await process.wait()
            if code != 0 or not temporary.is_file():
                reason = "; ".join(errors or other) or f"exit code {code}"
                raise RuntimeFailure(f"llama.cpp could not quantize {src.name}: {reason}")
            yield Progress(status=status, total=total, completed=total)
            os.replace(temporary, dst)
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
            temporary.unlink(missing_ok=True)


def main() -> None:
    """The worker: quantize argv[1] into argv[2] as argv[3]; JSON lines on stdout."""
    import ctypes

    from corral.sdk.runner import die_with_parent

    die_with_parent()
    src, dst, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    import llama_cpp

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, _user: Any) -> None:
        line = text.decode("utf-8", "replace")
        found = TENSOR_LINE.match(line)
        if found:
            emit({"tensor": found.group(3), "index": int(found.group(1)), "of": int(found.group(2))})
        elif level == 3:  # GGML_LOG_LEVEL_ERROR
            emit({"error": line.strip()})

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[kind]
    code = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if code != 0:
        emit({"error": f"llama_model_quantize returned {code}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
