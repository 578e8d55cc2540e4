"""Reading GGUF files, with limits on every length, count and offset the file claims.

``read_gguf(path, skip_arrays_longer_than=...)`` returns a ``GGUFFile`` (metadata, tensors,
architecture, parameter count...); it blocks, so run it in a worker thread. ``human_number`` prints
a parameter count as Ollama does (``135M``).
"""

from corral.gguf import DEFAULT_LIMITS, FILE_TYPES, GGUFFile, Limits, SkippedArray, TensorInfo, human_number, read_gguf

__all__ = ["DEFAULT_LIMITS", "FILE_TYPES", "GGUFFile", "Limits", "SkippedArray", "TensorInfo", "human_number",
           "read_gguf"]
