"""Ollama's model options (the ``options`` object and Modelfile PARAMETERs): names and types.

``OPTION_TYPES`` maps each name to one of ``INT``, ``FLOAT``, ``BOOL``, ``STRINGS``;
``LOAD_OPTIONS`` are those that decide how a model is loaded (changing one reloads it);
``convert_option(name, value)`` checks and converts a value (InvalidRequest otherwise).
"""

from corral.options import BOOL, FLOAT, INT, LOAD_OPTIONS, OPTION_TYPES, STRINGS, convert_option

__all__ = ["BOOL", "FLOAT", "INT", "LOAD_OPTIONS", "OPTION_TYPES", "STRINGS", "convert_option"]
