"""The parser of Go's text/template (text/template/parse/parse.go), production for production."""

from __future__ import annotations

from collections.abc import Callable, Collection

from ..gofmt import go_quote
from .lexer import Item, ItemType, Lexer
from .literals import SyntaxErrorGo, new_number, unquote
from .nodes import (
    ActionNode,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    ElseNode,
    EndNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
    is_empty_tree,
)

MAX_STACK_DEPTH = 10000
MAX_PIPELINE_CMDS = 100000


class ParseError(Exception):
    """A parse error with Go's message, the line Go reports, and the position of the token."""

    def __init__(self, message: str, line: int, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.pos = pos


def parse(text: str, name: str, functions: Collection[str],
          check: Callable[[], None] | None = None) -> dict[str, ListNode]:
    """Parse a template and its ``define``/``block`` definitions: template name -> root list.
    ``check()``, if given, is called at every token (it may raise to stop a long parse)."""
    lexer = Lexer(text, break_ok="break" not in functions, continue_ok="continue" not in functions)
    stream = _TokenStream(lexer.items(check), check)
    trees: dict[str, ListNode] = {}
    _Tree(name, stream, functions, trees).parse()
    return trees


class _TokenStream:
    """The lexer's items, shared by every tree parsed from one text."""

    def __init__(self, items: list[Item], check: Callable[[], None] | None = None) -> None:
        self.items = items
        self.index = 0
        self.check = check

    def next_item(self) -> Item:
        if self.check is not None:
            self.check()
        item = self.items[min(self.index, len(self.items) - 1)]
        self.index += 1
        return item


class _Tree:
    def __init__(
        self, name: str, stream: _TokenStream, functions: Collection[str], trees: dict[str, ListNode]
    ) -> None:
        self.name = name
        self.parse_name = name  # the top-level template's name, for error messages
        self.stream = stream
        self.functions = functions
        self.trees = trees
        self.root: ListNode | None = None
        self.token: list[Item] = [Item(ItemType.EOF, 0, "", 1)] * 3  # three-token lookahead
        self.peek_count = 0
        self.vars: list[str] = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.stack_depth = 0

    # -- token plumbing ------------------------------------------------------------------------

    def next(self) -> Item:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            self.token[0] = self.stream.next_item()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: Item) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: Item, t1: Item) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> Item:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        self.peek_count = 1
        self.token[0] = self.stream.next_item()
        return self.token[0]

    def next_non_space(self) -> Item:
        while True:
            token = self.next()
            if token.type != ItemType.SPACE:
                return token

    def peek_non_space(self) -> Item:
        token = self.next_non_space()
        self.backup()
        return token

    # -- errors --------------------------------------------------------------------------------

    def errorf(self, message: str, pos: int | None = None) -> ParseError:
        """Go's error: the line of the current token; ``pos`` points at the culprit if known."""
        self.root = None
        return ParseError(message, self.token[0].line, self.token[0].pos if pos is None else pos)

    def expect(self, expected: ItemType, context: str) -> Item:
        token = self.next_non_space()
        if token.type != expected:
            raise self.unexpected(token, context)
        return token

    def expect_one_of(self, first: ItemType, second: ItemType, context: str) -> Item:
        token = self.next_non_space()
        if token.type not in (first, second):
            raise self.unexpected(token, context)
        return token

    def unexpected(self, token: Item, context: str) -> ParseError:
        if token.type == ItemType.ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]  # avoid "action in action"
            return self.errorf(f"{token}{extra}", token.pos)
        return self.errorf(f"unexpected {token} in {context}", token.pos)

    # -- top level -----------------------------------------------------------------------------

    def subtree(self, name: str) -> _Tree:
        """A tree for a define or block body, reading on from the same tokens."""
        tree = _Tree(name, self.stream, self.functions, self.trees)
        tree.parse_name = self.parse_name
        return tree

    def add(self) -> None:
        existing = self.trees.get(self.name)
        if existing is None or is_empty_tree(existing):
            assert self.root is not None
            self.trees[self.name] = self.root
            return
        if not is_empty_tree(self.root):
            raise self.errorf(f"template: multiple definition of template {go_quote(self.name)}")

    def parse(self) -> None:
        self.root = ListNode(self.peek().pos)
        while self.peek().type != ItemType.EOF:
            if self.peek().type == ItemType.LEFT_DELIM:
                delim = self.next()
                if self.next_non_space().type == ItemType.DEFINE:
                    self.subtree("definition").parse_definition()
                    continue
                self.backup2(delim)
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                raise self.errorf(f"unexpected {node}")
            self.root.nodes.append(node)
        self.add()

    def parse_definition(self) -> None:
        context = "define clause"
        name = self.expect_one_of(ItemType.STRING, ItemType.RAW_STRING, context)
        try:
            self.name = unquote(name.val)
        except SyntaxErrorGo as error:
            raise self.errorf(str(error)) from None
        self.expect(ItemType.RIGHT_DELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[ListNode, Node]:
        nodes = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().type != ItemType.EOF:
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                return nodes, node
            nodes.nodes.append(node)
        raise self.errorf("unexpected EOF")

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.type == ItemType.TEXT:
            return TextNode(token.pos, token.val)
        if token.type == ItemType.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        raise self.unexpected(token, "input")

    def action(self) -> Node:
        token = self.next_non_space()
        kind = token.type
        if kind == ItemType.BLOCK:
            return self.block_control()
        if kind == ItemType.BREAK:
            return self.break_control(token, "break")
        if kind == ItemType.CONTINUE:
            return self.break_control(token, "continue")
        if kind == ItemType.ELSE:
            return self.else_control()
        if kind == ItemType.END:
            return EndNode(self.expect(ItemType.RIGHT_DELIM, "end").pos)
        if kind == ItemType.IF:
            return IfNode(*self.parse_control("if"))
        if kind == ItemType.RANGE:
            return RangeNode(*self.parse_control("range"))
        if kind == ItemType.TEMPLATE:
            return self.template_control()
        if kind == ItemType.WITH:
            return WithNode(*self.parse_control("with"))
        self.backup()
        token = self.peek()
        # Do not pop variables; they persist until "end".
        return ActionNode(token.pos, token.line, self.pipeline("command", ItemType.RIGHT_DELIM))

    def break_control(self, keyword: Item, name: str) -> Node:
        token = self.next_non_space()
        if token.type != ItemType.RIGHT_DELIM:
            raise self.unexpected(token, "{{" + name + "}}")
        if self.range_depth == 0:
            raise self.errorf("{{" + name + "}} outside {{range}}")
        if name == "break":
            return BreakNode(keyword.pos, keyword.line)
        return ContinueNode(keyword.pos, keyword.line)

    def pipeline(self, context: str, end: ItemType) -> PipeNode:
        token = self.peek_non_space()
        pipe = PipeNode(token.pos, token.line)
        while True:  # declarations, then the commands
            variable = self.peek_non_space()
            if variable.type != ItemType.VARIABLE:
                break
            self.next()
            # Since space is a token, we need 3-token look-ahead here in the worst case: in
            # "$x foo" we must read "foo" (as opposed to ":=") to know $x is an argument.
            token_after_variable = self.peek()
            following = self.peek_non_space()
            if following.type in (ItemType.ASSIGN, ItemType.DECLARE):
                pipe.is_assign = following.type == ItemType.ASSIGN
                self.next_non_space()
                pipe.decl.append(_variable(variable.pos, variable.val))
                self.vars.append(variable.val)
            elif following.type == ItemType.CHAR and following.val == ",":
                self.next_non_space()
                pipe.decl.append(_variable(variable.pos, variable.val))
                self.vars.append(variable.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().type in (ItemType.VARIABLE, ItemType.RIGHT_DELIM, ItemType.RIGHT_PAREN):
                        continue  # the second initialized variable in a range pipeline
                    raise self.errorf("range can only initialize variables")
                raise self.errorf(f"too many declarations in {context}")
            elif token_after_variable.type == ItemType.SPACE:
                self.backup3(variable, token_after_variable)
            else:
                self.backup2(variable)
            break
        while True:
            token = self.next_non_space()
            if token.type == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.type in _OPERAND_STARTS:
                self.backup()
                pipe.cmds.append(self.command())
                if len(pipe.cmds) > MAX_PIPELINE_CMDS:
                    raise self.errorf("pipeline too long")
            else:
                raise self.unexpected(token, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.errorf(f"missing value for {context}")
        # Only the first command of a pipeline can start with a non-executable operand.
        for i, command in enumerate(pipe.cmds[1:]):
            if isinstance(command.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                raise self.errorf(f"non executable command in pipeline stage {i + 2}", command.pos)

    def parse_control(self, context: str) -> tuple[int, int, PipeNode, ListNode, ListNode | None]:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, ItemType.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            body, following = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(following, ElseNode):
                # "{{else if}}" and "{{else with}}" are "{{else}}{{if}}...{{end}}{{end}}" with the
                # subsequent {{end}} assumed; this works even for long if-else-if chains.
                if context == "if" and self.peek().type == ItemType.IF:
                    self.next()
                    else_list = ListNode(following.pos)
                    else_list.nodes.append(IfNode(*self.parse_control("if")))
                elif context == "with" and self.peek().type == ItemType.WITH:
                    self.next()
                    else_list = ListNode(following.pos)
                    else_list.nodes.append(WithNode(*self.parse_control("with")))
                else:
                    else_list, following = self.item_list()
                    if not isinstance(following, EndNode):
                        raise self.errorf(f"expected end; found {following}")
            return pipe.pos, pipe.line, pipe, body, else_list
        finally:
            del self.vars[mark:]

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        # "{{else if ..." and "{{else with ..." are treated as "{{else}}{{if ..." and "{{else}}{{with ...".
        if peek.type in (ItemType.IF, ItemType.WITH):
            return ElseNode(peek.pos, peek.line)
        token = self.expect(ItemType.RIGHT_DELIM, "else")
        return ElseNode(token.pos, token.line)

    def block_control(self) -> Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = self.pipeline(context, ItemType.RIGHT_DELIM)
        block = self.subtree(name)
        block.root, end = block.item_list()
        if not isinstance(end, EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        block.add()
        return TemplateNode(token.pos, token.line, name, pipe)

    def template_control(self) -> Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = None
        if self.next_non_space().type != ItemType.RIGHT_DELIM:
            self.backup()
            # Do not pop variables; they persist until "end".
            pipe = self.pipeline(context, ItemType.RIGHT_DELIM)
        return TemplateNode(token.pos, token.line, name, pipe)

    def parse_template_name(self, token: Item, context: str) -> str:
        if token.type in (ItemType.STRING, ItemType.RAW_STRING):
            try:
                return unquote(token.val)
            except SyntaxErrorGo as error:
                raise self.errorf(str(error)) from None
        raise self.unexpected(token, context)

    def command(self) -> CommandNode:
        command = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()  # skip leading spaces
            operand = self.operand()
            if operand is not None:
                command.args.append(operand)
            token = self.next()
            if token.type == ItemType.SPACE:
                continue
            if token.type in (ItemType.RIGHT_DELIM, ItemType.RIGHT_PAREN):
                self.backup()
            elif token.type != ItemType.PIPE:
                raise self.unexpected(token, "operand")
            break
        if not command.args:
            raise self.errorf("empty command")
        return command

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().type == ItemType.FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().type == ItemType.FIELD:
                chain.fields.append(self.next().val[1:])
            # Compatibility with the original API: fields on a field or variable stay on it.
            if isinstance(node, FieldNode):
                return FieldNode(chain.pos, str(chain)[1:].split("."))
            if isinstance(node, VariableNode):
                return _variable(chain.pos, str(chain))
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                raise self.errorf(f"unexpected . after term {go_quote(str(node))}", chain.pos)
            return chain
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        kind = token.type
        if kind == ItemType.IDENTIFIER:
            if token.val not in self.functions:
                raise self.errorf(f"function {go_quote(token.val)} not defined", token.pos)
            return IdentifierNode(token.pos, token.val)
        if kind == ItemType.DOT:
            return DotNode(token.pos)
        if kind == ItemType.NIL:
            return NilNode(token.pos)
        if kind == ItemType.VARIABLE:
            return self.use_var(token.pos, token.val)
        if kind == ItemType.FIELD:
            return FieldNode(token.pos, token.val[1:].split("."))
        if kind == ItemType.BOOL:
            return BoolNode(token.pos, token.val == "true")
        if kind in (ItemType.CHAR_CONSTANT, ItemType.COMPLEX, ItemType.NUMBER):
            try:
                return new_number(
                    token.pos, token.val, kind == ItemType.CHAR_CONSTANT, kind == ItemType.COMPLEX
                )
            except ValueError as error:
                raise self.errorf(str(error), token.pos) from None
        if kind == ItemType.LEFT_PAREN:
            if self.stack_depth >= MAX_STACK_DEPTH:
                raise self.errorf("max expression depth exceeded")
            self.stack_depth += 1
            try:
                return self.pipeline("parenthesized pipeline", ItemType.RIGHT_PAREN)
            finally:
                self.stack_depth -= 1
        if kind in (ItemType.STRING, ItemType.RAW_STRING):
            try:
                return StringNode(token.pos, token.val, unquote(token.val))
            except SyntaxErrorGo as error:
                raise self.errorf(str(error), token.pos) from None
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> VariableNode:
        variable = _variable(pos, name)
        if variable.ident[0] in self.vars:
            return variable
        raise self.errorf(f"undefined variable {go_quote(variable.ident[0])}", pos)


_OPERAND_STARTS = frozenset(
    {
        ItemType.BOOL,
        ItemType.CHAR_CONSTANT,
        ItemType.COMPLEX,
        ItemType.DOT,
        ItemType.FIELD,
        ItemType.IDENTIFIER,
        ItemType.NUMBER,
        ItemType.NIL,
        ItemType.RAW_STRING,
        ItemType.STRING,
        ItemType.VARIABLE,
        ItemType.LEFT_PAREN,
    }
)


def _variable(pos: int, name: str) -> VariableNode:
    return VariableNode(pos, name.split("."))
