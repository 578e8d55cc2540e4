"""One error hierarchy for corral.

Every error a user can cause is a CorralError with a message fit to show as is. The server maps
them to Ollama's ``{"error": message}`` with ``status``; the CLI prints ``Error: message`` and
exits with ``exit_code``. Anything else that escapes is a bug.
"""

from __future__ import annotations


class CorralError(Exception):
    status: int = 500
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(CorralError):
    """The request or input is malformed (HTTP 400)."""

    status = 400


class InvalidName(InvalidRequest):
    """A model reference that does not follow Ollama's naming rules."""


class InvalidDigest(InvalidRequest):
    """A digest that is not ``sha256:`` followed by 64 lowercase hex digits."""


class ConfigError(CorralError):
    """A setting, environment variable or config file entry that cannot be used."""

    exit_code = 2


class PluginError(CorralError):
    """A plugin that cannot be loaded, or two plugins that claim the same name."""

    exit_code = 2


class ModelNotFound(CorralError):
    status = 404

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f'model "{name}" not found, try pulling it first')
        self.name = name


class BlobNotFound(CorralError):
    status = 404


class DigestMismatch(CorralError):
    """Data whose sha256 is not the digest it was announced with."""

    status = 400


class StoreError(CorralError):
    """The model store cannot be read or written (permissions, disk full, corrupt manifest)."""

    status = 500


class NoSpace(StoreError):
    """The disk cannot hold what a pull, create or upload would write (HTTP 507)."""

    status = 507


class InvalidModelFile(InvalidRequest):
    """A model file (GGUF, safetensors) that is malformed or outside safe limits."""


class TemplateError(InvalidRequest):
    """A prompt template that does not parse or fails while rendering."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}" + (f", column {column}" if column else "") if line else ""
        super().__init__(f"template: {where}: {message}" if where else f"template: {message}")
        self.line = line
        self.column = column


class ServerBusy(CorralError):
    status = 503


class PullError(CorralError):
    status = 500


class RuntimeFailure(CorralError):
    """A runner that crashed or could not load a model."""

    status = 500


class ConversionError(InvalidRequest):
    """A Hugging Face checkpoint that cannot be converted to GGUF (missing file, corrupt
    safetensors, unsupported architecture or tokenizer). The message names the file."""
