"""Modelfiles: parse one into instructions, turn those into an /api/create request, write one back.

``parse_modelfile(text)`` gives ``Instruction`` records (InvalidModelFile with a line number
otherwise); ``modelfile_request(instructions, model=...)`` the /api/create body (``blob_reference``
names the local files a FROM or ADAPTER needs uploaded first); ``format_modelfile`` and
``format_parameters`` write them as Ollama's ``show`` does.
"""

from corral.modelfile import (
    Instruction,
    blob_reference,
    format_modelfile,
    format_parameters,
    modelfile_request,
    parse_modelfile,
)

__all__ = ["Instruction", "blob_reference", "format_modelfile", "format_parameters", "modelfile_request",
           "parse_modelfile"]
