"""Model references, following Ollama's rules (types/model/name.go).

``[scheme://][host/][namespace/]model[:tag][@digest]`` with defaults ``registry.ollama.ai``,
``library`` and ``latest``. Every name that reaches a file path passes through here first.
"""

from __future__ import annotations

import re

import attrs

from .errors import InvalidDigest, InvalidName

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_TAG = _MODEL
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


def validate_digest(digest: str) -> str:
    """Return the canonical ``sha256:<64 lowercase hex>`` form, or raise InvalidDigest.

    Accepts Ollama's on-disk spelling ``sha256-<hex>`` too. This is the only gate between a digest
    from a request or manifest and a file name.
    """
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidDigest("invalid digest format")
    return "sha256:" + match.group(1).lower()


def _check(part: str, pattern: re.Pattern[str], what: str, text: str) -> None:
    if not pattern.fullmatch(part):
        if not part:
            raise InvalidName(f'invalid model name "{text}": the {what} is empty')
        raise InvalidName(f'invalid model name "{text}": the {what} "{part}" has characters that are not allowed')


@attrs.frozen(kw_only=True)
class ModelRef:
    """A fully qualified model name. Build it with :func:`parse_reference`."""

    host: str = DEFAULT_HOST
    namespace: str = DEFAULT_NAMESPACE
    model: str
    tag: str = DEFAULT_TAG
    digest: str | None = None
    scheme: str = DEFAULT_SCHEME

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def display(self) -> str:
        """The shortest form Ollama shows: ``llama3:latest``, ``user/m:tag``, ``hf.co/u/r:Q4_K_M``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.model}"

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """The four path components of the manifest, each already validated."""
        return (self.host, self.namespace, self.model, self.tag)

    def folded(self) -> tuple[str, ...]:
        """Key for Ollama's case-insensitive name matching."""
        return tuple(part.casefold() for part in self.parts)


def parse_reference(text: str) -> ModelRef:
    """Parse and validate a model reference; raise InvalidName with the reason otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidName("invalid model name: the name is empty")
    original = text
    text = text.strip()
    digest = None
    if "@" in text:
        text, _, digest_text = text.partition("@")
        try:
            digest = validate_digest(digest_text)
        except InvalidDigest:
            raise InvalidName(f'invalid model name "{original}": "{digest_text}" is not a sha256 digest') from None
    scheme = DEFAULT_SCHEME
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme not in ("http", "https"):
            raise InvalidName(f'invalid model name "{original}": unsupported scheme "{scheme}"')
    tag = DEFAULT_TAG
    colon, slash = text.rfind(":"), text.rfind("/")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        _check(tag, _TAG, "tag", original)
    pieces = text.split("/")
    if len(pieces) > 3:
        raise InvalidName(f'invalid model name "{original}": too many "/" separators')
    model = pieces[-1]
    namespace = pieces[-2] if len(pieces) >= 2 else DEFAULT_NAMESPACE
    host = pieces[-3] if len(pieces) == 3 else DEFAULT_HOST
    _check(model, _MODEL, "model name", original)
    _check(namespace, _NAMESPACE, "namespace", original)
    _check(host, _HOST, "host", original)
    return ModelRef(host=host, namespace=namespace, model=model, tag=tag, digest=digest, scheme=scheme)

