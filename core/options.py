"""Model options (Ollama's ``options`` object and Modelfile PARAMETERs): names, types, defaults.

Merge order: defaults, then the model's PARAMETERs, then the request's ``options``. Load-time
options decide how a model is loaded (a change reloads it); the rest only steer sampling.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequest

log = logging.getLogger(__name__)

INT, FLOAT, BOOL, STRINGS = "integer", "float32", "boolean", "array"

OPTION_TYPES: dict[str, str] = {
    # load time (api.Runner)
    "num_ctx": INT, "num_batch": INT, "num_gpu": INT, "main_gpu": INT, "use_mmap": BOOL, "use_mlock": BOOL,
    "num_thread": INT,
    # sampling (api.Options)
    "num_keep": INT, "seed": INT, "num_predict": INT, "top_k": INT, "top_p": FLOAT, "min_p": FLOAT,
    "typical_p": FLOAT, "repeat_last_n": INT, "temperature": FLOAT, "repeat_penalty": FLOAT,
    "presence_penalty": FLOAT, "frequency_penalty": FLOAT, "mirostat": INT, "mirostat_tau": FLOAT,
    "mirostat_eta": FLOAT, "stop": STRINGS,
}
LOAD_OPTIONS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread"})

DEFAULTS: dict[str, Any] = {
    "num_keep": 4, "seed": -1, "num_predict": -1, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0,
    "repeat_last_n": 64, "temperature": 0.8, "repeat_penalty": 1.0, "presence_penalty": 0.0,
    "frequency_penalty": 0.0, "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
    "num_batch": 512, "num_thread": 0, "use_mmap": True, "use_mlock": False,
}

# Options Ollama once had and now ignores with a warning.
RETIRED = frozenset({"penalize_newline", "tfs_z", "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "num_gqa"})


INT32 = 2**31 - 1
INT64 = 2**63 - 1
FLOAT32 = 3.4028234663852886e38
LLAMA_MAX_THREADS = 512  # GGML_MAX_N_THREADS: llama.cpp crashes beyond it

RANGES: dict[str, tuple[float, float]] = {
    # Integers end up in llama.cpp's 32-bit fields; a value outside int32 is never meaningful.
    "num_ctx": (1, INT32), "num_batch": (1, INT32), "num_gpu": (-1, INT32), "main_gpu": (0, INT32),
    "num_thread": (0, LLAMA_MAX_THREADS), "num_keep": (-1, INT32), "seed": (-INT64 - 1, INT64),
    "num_predict": (-2, INT32), "top_k": (-INT32 - 1, INT32), "repeat_last_n": (-1, INT32), "mirostat": (0, 2),
    "top_p": (0.0, 1.0), "min_p": (0.0, 1.0), "typical_p": (0.0, 1.0), "temperature": (0.0, FLOAT32),
    "repeat_penalty": (0.0, FLOAT32), "presence_penalty": (-FLOAT32, FLOAT32),
    "frequency_penalty": (-FLOAT32, FLOAT32), "mirostat_tau": (0.0, FLOAT32), "mirostat_eta": (0.0, FLOAT32),
}
"""Each number option's inclusive range: what the runtime can take without crashing or
allocating without bound. A value outside it is a 400 naming the option."""


def convert_option(name: str, value: Any) -> Any:
    """Check one value against its option's type, as Ollama's Options.FromMap does, and its range."""
    kind = OPTION_TYPES[name]
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f'option "{name}" must be of type integer')
        if isinstance(value, float):
            if not math.isfinite(value) or not -INT64 - 1 <= value <= INT64:
                raise InvalidRequest(f'option "{name}" must be of type integer')
            value = int(value)  # JSON numbers arrive as floats in Go too; it truncates them
        return _in_range(name, value)
    if kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f'option "{name}" must be of type float32')
        if not math.isfinite(value):
            raise InvalidRequest(f'option "{name}" must be a finite number')
        return float(_in_range(name, value))
    if kind == BOOL:
        if not isinstance(value, bool):
            raise InvalidRequest(f'option "{name}" must be of type boolean')
        return value
    if not isinstance(value, list):
        raise InvalidRequest(f'option "{name}" must be of type array')
    if not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f'option "{name}" must be of an array of strings')
    return list(value)


def _in_range(name: str, value: float) -> Any:
    low, high = RANGES[name]
    if low <= value <= high:
        return value
    limits = {INT32: "a 32-bit integer", INT64: "a 64-bit integer", FLOAT32: "a float32"}
    if (value > high and high in limits) or (value < low and (-low - 1 in limits or -low in limits)):
        wanted = limits.get(high, "a number")
    elif high in limits:
        wanted = f"at least {_number(low)}"
    else:
        wanted = f"between {_number(low)} and {_number(high)}"
    raise InvalidRequest(f'option "{name}" must be {wanted}, not {value}')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def checked(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Known options converted to their types; unknown and retired ones dropped with a warning."""
    result: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in (options or {}).items():
        if value is None:
            continue
        if name not in OPTION_TYPES:
            unknown.append(name)
            continue
        result[name] = convert_option(name, value)
    if unknown:  # one line per request, however many a client sends
        shown = ", ".join(name[:40] for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        log.warning("invalid option provided: %s%s", shown, more)
    return result


def merge(model_params: Mapping[str, Any] | None, request_options: Mapping[str, Any] | None,
          *, context_length: int) -> dict[str, Any]:
    """Defaults, then the model's parameters, then the request's options."""
    options = dict(DEFAULTS)
    options["num_ctx"] = context_length
    options.update(checked(model_params))
    options.update(checked(request_options))
    return options


def load_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {name: options[name] for name in sorted(LOAD_OPTIONS) if name in options}
