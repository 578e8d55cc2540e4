"""Ollama's named templates: a Go template for a GGUF file that only carries a Jinja chat template.

The data in ``named/`` is Ollama's ``template/`` folder (MIT licence, see ``named/LICENSE.ollama``):
``index.json`` lists known Jinja chat templates with the name of the Go template that renders the
same prompt; ``NAME.gotmpl`` is that template and ``NAME.json`` its default parameters.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

MAX_DISTANCE = 100  # Ollama accepts the closest index entry when it is fewer edits away than this


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    template: str  # the Go template text (line endings normalized to \n)
    parameters: Mapping[str, Any] | None  # {"stop": [...]}, what Ollama writes as the params layer
    chat_template: str  # the Jinja template of the index entry that matched


def levenshtein(a: str, b: str) -> int:
    """The edit distance between two strings of code points (Myers/Hyyrö bit-parallel algorithm)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    masks: dict[str, int] = {}
    for i, char in enumerate(b):
        masks[char] = masks.get(char, 0) | (1 << i)
    full = (1 << len(b)) - 1
    top = 1 << (len(b) - 1)
    positive, negative, distance = full, 0, len(b)
    for char in a:
        match = masks.get(char, 0)
        vertical = match | negative
        horizontal = (((match & positive) + positive) ^ positive) | match
        h_positive = negative | (~(horizontal | positive) & full)
        h_negative = positive & horizontal
        if h_positive & top:
            distance += 1
        elif h_negative & top:
            distance -= 1
        h_positive = ((h_positive << 1) | 1) & full
        h_negative = (h_negative << 1) & full
        positive = h_negative | (~(vertical | h_positive) & full)
        negative = h_positive & vertical
    return distance


def _read(name: str) -> str:
    return (resources.files(__package__) / "named" / name).read_text(encoding="utf-8")


@functools.cache
def named_templates() -> tuple[NamedTemplate, ...]:
    """Every entry of index.json, in its order, with its template and parameters loaded."""
    entries = json.loads(_read("index.json"))
    found = []
    for entry in entries:
        name = entry["name"]
        text = _read(f"{name}.gotmpl").replace("\r\n", "\n")
        try:
            raw = json.loads(_read(f"{name}.json"))
        except FileNotFoundError:
            parameters = None
        else:
            # Ollama decodes NAME.json into struct{ Stop []string }: other keys are dropped.
            parameters = {"stop": raw.get("stop")}
        found.append(NamedTemplate(name, text, parameters, entry["template"]))
    return tuple(found)


def named_template(chat_template: str) -> NamedTemplate | None:
    """The named template for a GGUF ``tokenizer.chat_template``, or None.

    As Ollama's template.Named: the index entry with the smallest edit distance to the chat
    template wins (the first one on ties), if that distance is below 100.
    """
    best: NamedTemplate | None = None
    best_distance = MAX_DISTANCE
    for candidate in named_templates():
        if candidate.chat_template == chat_template:
            return candidate
        if abs(len(candidate.chat_template) - len(chat_template)) >= best_distance:
            continue  # the distance is at least the difference in length
        distance = levenshtein(chat_template, candidate.chat_template)
        if distance < best_distance:
            best, best_distance = candidate, distance
    return best
