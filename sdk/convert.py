"""Converting a Hugging Face safetensors checkpoint folder to a GGUF file (see docs/convert.md).

``convert_checkpoint(folder, out, outtype=..., progress=...)`` blocks and is CPU-bound: run it in
a worker thread. ``default_outfile(folder, outtype)`` is the file name llama.cpp's converter would
choose. Failures are ConversionError. Importing this module loads the ``gguf`` package.
"""

from corral.convert import OUTTYPES, convert_checkpoint, default_outfile

__all__ = ["OUTTYPES", "convert_checkpoint", "default_outfile"]
