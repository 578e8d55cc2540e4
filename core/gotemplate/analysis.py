"""What Ollama reads off a parsed template: the fields it uses, thinking tags, the legacy cut.

Ports of template.go's Identifiers/Vars and deleteNode, and thinking/template.go's InferTags.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from corral.errors import TemplateError

from .nodes import (
    ActionNode,
    BranchNode,
    CommandNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    RangeNode,
    TemplateNode,
    TextNode,
    VariableNode,
)
from .template import Template


def identifiers(node: Node | None) -> list[str]:
    """Every field and variable name a node uses (``.Function.Name`` gives Function and Name)."""
    if isinstance(node, ListNode):
        return [name for child in node.nodes for name in identifiers(child)]
    if isinstance(node, TemplateNode):
        if node.pipe is None:
            raise _TemplateWithoutPipeline(node)  # Ollama rejects {{template "name"}} without data
        return identifiers(node.pipe)
    if isinstance(node, ActionNode):
        return identifiers(node.pipe)
    if isinstance(node, BranchNode):
        names = identifiers(node.pipe)
        names += identifiers(node.list)
        if node.else_list is not None:
            names += identifiers(node.else_list)
        return names
    if isinstance(node, PipeNode):
        return [name for command in node.cmds for arg in command.args for name in identifiers(arg)]
    if isinstance(node, (FieldNode, VariableNode)):
        return list(node.ident)
    return []


class _TemplateWithoutPipeline(Exception):
    def __init__(self, node: TemplateNode) -> None:
        super().__init__("undefined template specified")
        self.node = node


def template_vars(template: Template) -> list[str]:
    """Ollama's Template.Vars: the lower-cased, sorted set of identifiers in every template.

    Raises TemplateError for a ``{{template "name"}}`` call without a pipeline, as Ollama does.
    """
    names: set[str] = set()
    try:
        for root in template.trees.values():
            for node in root.nodes:
                names.update(name.lower() for name in identifiers(node))
    except _TemplateWithoutPipeline as error:
        text = template.text
        line = text.count("\n", 0, error.node.pos) + 1
        column = error.node.pos - (text.rfind("\n", 0, error.node.pos) + 1) + 1
        raise TemplateError(str(error), line, column) from None
    return sorted(names)


def _visit(node: Node | None, ancestors: list[Node]) -> Iterator[tuple[Node, list[Node]]]:
    """Walk the tree the way thinking/template.go's templateVisit does, with each node's ancestors."""
    if node is None:
        return
    ancestors.append(node)
    yield node, ancestors
    if isinstance(node, ListNode):
        for child in node.nodes:
            yield from _visit(child, ancestors)
    elif isinstance(node, BranchNode):
        # Go visits an If/Range/With node, then its embedded BranchNode: list it twice.
        ancestors.append(node)
        yield from _visit(node.pipe, ancestors)
        yield from _visit(node.list, ancestors)
        yield from _visit(node.else_list, ancestors)
        ancestors.pop()
    elif isinstance(node, (ActionNode, TemplateNode)):
        yield from _visit(node.pipe, ancestors)
    elif isinstance(node, PipeNode):
        for command in node.cmds:
            yield from _visit(command, ancestors)
    elif isinstance(node, CommandNode):
        for arg in node.args:
            yield from _visit(arg, ancestors)
    ancestors.pop()


def _range_uses_field(node: RangeNode, name: str) -> bool:
    return any(isinstance(n, FieldNode) and n.ident[0] == name for n, _ in _visit(node.pipe, []))


def infer_thinking_tags(root: ListNode) -> tuple[str, str]:
    """The tags around thinking traces: the text that opens and closes the list holding
    ``.Thinking`` inside a ``range`` over ``.Messages`` (Ollama's InferTags heuristic)."""
    opening = closing = ""
    for node, ancestors in _visit(root, []):
        if not (isinstance(node, FieldNode) and node.ident and node.ident[0] == "Thinking"):
            continue
        enclosing_range = next((a for a in reversed(ancestors) if isinstance(a, RangeNode)), None)
        if enclosing_range is None or not _range_uses_field(enclosing_range, "Messages"):
            continue
        enclosing_list = next(a for a in reversed(ancestors) if isinstance(a, ListNode))
        first, last = enclosing_list.nodes[0], enclosing_list.nodes[-1]
        if isinstance(first, TextNode):
            opening = first.text.strip(" \t\n\r\v\f")
        if isinstance(last, TextNode):
            closing = last.text.strip(" \t\n\r\v\f")
    return opening, closing


def cut_after_response(root: ListNode) -> ListNode:
    """A copy of the tree with everything after the first ``.Response`` field deleted.

    Ollama renders the last turn of a legacy template this way, so that the model continues
    right where the response begins (template.go's deleteNode).
    """
    cut = False

    def delete(node: Node) -> bool:
        nonlocal cut
        if isinstance(node, FieldNode) and "Response" in node.ident:
            cut = True
            return False
        return cut

    def walk(node: Any) -> Any:
        if delete(node):
            return None
        if isinstance(node, ListNode):
            node.nodes = [kept for kept in (walk(child) for child in node.nodes) if kept is not None]
        elif isinstance(node, BranchNode):
            if delete(node):  # Go walks the embedded BranchNode as a node of its own
                return None
            body = walk(node.list)
            node.list = body if body is not None else ListNode(node.list.pos)
            if node.else_list is not None:
                node.else_list = walk(node.else_list)  # Go panics here; dropping it is the kind reading
        elif isinstance(node, ActionNode):
            pipe = walk(node.pipe)
            if pipe is None:
                return None
            node.pipe = pipe
        elif isinstance(node, PipeNode):
            commands = []
            for command in node.cmds:
                args = [kept for kept in (walk(arg) for arg in command.args) if kept is not None]
                if not args:
                    return None
                command.args = args
                commands.append(command)
            if not commands:
                return None
            node.cmds = commands
        return node

    copied = copy.deepcopy(root)
    result = walk(copied)
    return result if result is not None else ListNode(root.pos)
