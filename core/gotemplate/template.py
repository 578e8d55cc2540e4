"""The public face of the interpreter: parse a Go template once, execute it many times."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from corral.errors import TemplateError
from corral.template_limits import Budget

from .executor import MISSING_KEY_OPTIONS, ExecError, execute
from .functions import BUILTINS, GoFunc, ollama_functions, wrap_python_function
from .nodes import ListNode
from .parser import ParseError, parse


def _location(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a position in the template text."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


class Template:
    """A parsed Go text/template, with the templates it defines (``define``/``block``).

    By default it knows Ollama's template functions (json, currentDate, yesterdayDate,
    toTypeScriptType) besides Go's builtins, as every Ollama TEMPLATE layer is parsed with them.
    """

    def __init__(self, name: str, text: str, trees: Mapping[str, ListNode], functions: Mapping[str, GoFunc]) -> None:
        self.name = name
        self.text = text
        self.trees = dict(trees)
        self.functions = dict(functions)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        name: str = "",
        functions: Mapping[str, Callable[..., Any]] | None = None,
        with_ollama_functions: bool = True,
        budget: Budget | None = None,
    ) -> Template:
        """Parse ``text``; raises TemplateError(message, line, column) when it does not parse.

        ``functions`` adds Python callables as template functions (arguments arrive as Python
        values, None for nil); they take precedence over Go's builtins, as in Go. ``budget``
        stops a parse that runs out of time (TemplateLimitExceeded).
        """
        known: dict[str, GoFunc] = dict(ollama_functions()) if with_ollama_functions else {}
        for function_name, function in (functions or {}).items():
            known[function_name] = wrap_python_function(function_name, function)
        try:
            trees = parse(text, name, set(known) | set(BUILTINS), budget.check_time if budget else None)
        except ParseError as error:
            line, column = _location(text, error.pos)
            raise TemplateError(error.message, error.line, column if line == error.line else None) from None
        except RecursionError:
            raise TemplateError("max expression depth exceeded") from None
        return cls(name, text, trees, known)

    @property
    def root(self) -> ListNode:
        return self.trees[self.name]

    def with_root(self, root: ListNode, *, functions: Mapping[str, GoFunc] | None = None, alone: bool = False) -> Template:
        """A copy whose own tree is ``root``; ``alone`` drops the defined templates."""
        trees = {self.name: root} if alone else {**self.trees, self.name: root}
        return Template(self.name, self.text, trees, self.functions if functions is None else functions)

    def execute(
        self,
        data: Any,
        *,
        missing_key: str = "zero",
        now: Callable[[], datetime.datetime] | None = None,
        budget: Budget | None = None,
    ) -> str:
        """Apply the template to ``data``; raises TemplateError when execution fails.

        ``missing_key`` is Go's missingkey option (Ollama uses ``zero``); ``now`` replaces the
        clock behind currentDate and yesterdayDate; ``budget`` bounds loop iterations, template
        calls, output and time (TemplateLimitExceeded), the default limits if none is given.
        """
        if missing_key not in MISSING_KEY_OPTIONS:
            raise ValueError(f"unknown missingkey option {missing_key!r}")
        functions = self.functions
        if now is not None:
            dated = ollama_functions(now)
            functions = {**functions, **{k: dated[k] for k in ("currentDate", "yesterdayDate") if k in functions}}
        try:
            output = execute(self.trees, self.name, functions, data, missing_key, budget)
        except ExecError as error:
            raise self._error(error) from None
        except RecursionError:
            raise TemplateError(f'executing "{self.name}": template execution nested too deeply') from None
        except MemoryError:
            raise TemplateError(f'executing "{self.name}": out of memory') from None
        try:
            output.encode("utf-8")
        except UnicodeEncodeError:  # bytes cut out of a UTF-8 sequence: join them as Go would
            output = output.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return output

    def _error(self, error: ExecError) -> TemplateError:
        if error.node is None:
            return TemplateError(error.message)
        line, column = _location(self.text, error.node.pos)
        return TemplateError(f'executing "{error.template_name}" at <{error.node}>: {error.message}', line, column)

    def __str__(self) -> str:
        return self.text
