"""The executor of Go's text/template (text/template/exec.go), ported function by function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from corral.template_limits import Budget, TemplateLimitExceeded

from .functions import BUILTINS, GoFunc, wrap_python_function
from ..gofmt import go_quote, sprint
from .nodes import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    DotNode,
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
)
from ..govalues import (
    MISSING,
    NIL,
    Named,
    Pointer,
    indirect,
    indirect_interface,
    is_function,
    is_true,
    kind,
    lookup_method,
    map_entries,
    map_key_type,
    sequence_items,
    sorted_keys,
    struct_field,
    type_name,
)

# Go allows 100000 nested template calls; Python's stack allows far fewer.
MAX_EXEC_DEPTH = 100

MISSING_KEY_OPTIONS = ("default", "invalid", "zero", "error")

_GO_TYPE_NAMES = {
    "any": "interface {}",
    "value": "reflect.Value",
    "string": "string",
    "int": "int",
    "bool": "bool",
    "float": "float64",
}


class ExecError(Exception):
    """A run-time error: Go's message, the template being executed, and the node at fault."""

    def __init__(self, message: str, template_name: str, node: Node | None) -> None:
        super().__init__(message)
        self.message = message
        self.template_name = template_name
        self.node = node


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Output:
    """The text written so far, counted against the budget as it grows."""

    __slots__ = ("parts", "budget")

    def __init__(self, budget: Budget) -> None:
        self.parts: list[str] = []
        self.budget = budget

    def append(self, text: str) -> None:
        self.budget.output(len(text))
        self.parts.append(text)


def execute(
    trees: Mapping[str, ListNode],
    name: str,
    functions: Mapping[str, GoFunc],
    data: Any,
    missing_key: str = "zero",
    budget: Budget | None = None,
) -> str:
    """Run template ``name`` of ``trees`` on ``data``; ExecError on failure. Every loop iteration
    and template call is a step of ``budget`` (default limits if none is given), and the output
    and every string a function returns count against its output limit."""
    out = _Output(budget or Budget())
    state = _State(trees, name, functions, missing_key, out, [["$", data]], 0)
    root = trees.get(name)
    if root is None:
        state.errorf(f"{go_quote(name)} is an incomplete or empty template")
    state.walk(data, root)
    return "".join(out.parts)


class _State:
    def __init__(
        self,
        trees: Mapping[str, ListNode],
        name: str,
        functions: Mapping[str, GoFunc],
        missing_key: str,
        out: _Output,
        variables: list[list[Any]],
        depth: int,
    ) -> None:
        self.trees = trees
        self.name = name
        self.functions = functions
        self.missing_key = missing_key
        self.out = out
        self.budget = out.budget
        self.vars = variables
        self.depth = depth
        self.node: Node | None = None

    # -- variables and errors ------------------------------------------------------------------

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        self.vars[len(self.vars) - n][1] = value

    def var_value(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.errorf(f"undefined variable: {name}")

    def at(self, node: Node) -> None:
        self.node = node

    def errorf(self, message: str) -> NoReturn:
        raise ExecError(message, self.name, self.node)

    # -- walking -------------------------------------------------------------------------------

    def walk(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, ActionNode):
            # Variables declared by an action persist until the next {{end}} and print nothing.
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, (IfNode, WithNode)):
            self.walk_if_or_with(isinstance(node, WithNode), dot, node)
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break()
        elif isinstance(node, ContinueNode):
            raise _Continue()
        elif isinstance(node, CommentNode):
            pass
        else:
            self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, is_with: bool, dot: Any, node: BranchNode) -> None:
        mark = self.mark()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(indirect_interface(value)):
                self.walk(value if is_with else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot: Any, node: RangeNode) -> None:
        self.at(node)
        outer_mark = self.mark()
        try:
            self._range(dot, node)
        except _Break:
            pass
        finally:
            self.pop(outer_mark)

    def _range(self, dot: Any, node: RangeNode) -> None:
        value, _ = indirect(self.eval_pipeline(dot, node.pipe))
        mark = self.mark()
        decl = node.pipe.decl

        def one_iteration(index: Any, element: Any) -> None:
            if decl:
                if node.pipe.is_assign:
                    # With two variables, the index comes first; with one, the element.
                    self.set_var(decl[0].ident[0], index if len(decl) > 1 else element)
                else:
                    self.set_top_var(1, element)  # lexically the second if there are two
            if len(decl) > 1:
                if node.pipe.is_assign:
                    self.set_var(decl[1].ident[0], element)
                else:
                    self.set_top_var(2, index)
            self.budget.step()
            try:
                self.walk(element, node.list)
            except _Continue:
                pass
            finally:
                self.pop(mark)

        value_kind = kind(value)
        if value_kind == "int":
            if len(decl) > 1:
                self.errorf(f"can't use {sprint(value)} to iterate over more than one variable")
            for i in range(value):
                one_iteration(None, i)
            if value > 0:
                return
        elif value_kind == "slice":
            elements = sequence_items(value)
            for i, element in enumerate(elements):
                one_iteration(i, NIL if element is None else element)
            if elements:
                return
        elif value_kind == "map":
            entries = map_entries(value)
            for key in sorted_keys(list(entries)):
                element = entries[key]
                one_iteration(key, NIL if element is None else element)
            if entries:
                return
        elif value_kind != "invalid":  # an untyped nil acts like an empty map
            self.errorf(f"range can't iterate over {sprint(value)}")
        if node.else_list is not None:
            self.walk(dot, node.else_list)

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        self.at(node)
        tree = self.trees.get(node.name)
        if tree is None:
            self.errorf(f"template {go_quote(node.name)} not defined")
        if self.depth == MAX_EXEC_DEPTH:
            self.errorf(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
        self.budget.step()
        dot = self.eval_pipeline(dot, node.pipe)
        # No dynamic scoping: template invocations inherit no variables.
        state = _State(self.trees, node.name, self.functions, self.missing_key, self.out, [["$", dot]], self.depth + 1)
        state.walk(dot, tree)

    # -- evaluation ----------------------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: PipeNode | None) -> Any:
        if pipe is None:
            return None
        self.at(pipe)
        value = MISSING
        for command in pipe.cmds:
            value = self.eval_command(dot, command, value)  # the previous value is this one's final arg
            if value is NIL:  # an interface{} holding nil: step down to the nil inside
                value = None
        for variable in pipe.decl:
            if pipe.is_assign:
                self.set_var(variable.ident[0], value)
            else:
                self.push(variable.ident[0], value)
        return value

    def not_a_function(self, args: list[Node] | None, final: Any) -> None:
        if args is not None and len(args) > 1 or final is not MISSING:
            self.errorf(f"can't give argument to non-function {args[0] if args else ''}")

    def eval_command(self, dot: Any, command: CommandNode, final: Any) -> Any:
        first = command.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_node(dot, first, command.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain_node(dot, first, command.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, command, command.args, final)
        if isinstance(first, PipeNode):
            # Parenthesized pipeline: the arguments are all inside it.
            self.not_a_function(command.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable_node(dot, first, command.args, final)
        self.at(first)
        self.not_a_function(command.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        self.errorf(f"can't evaluate command {go_quote(str(first))}")

    def ideal_constant(self, constant: NumberNode) -> Any:
        """A number where no type is known: its syntax picks the type, as in Go."""
        self.at(constant)
        text = constant.text
        is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(c in text for c in "pP")
        if constant.is_complex:
            return constant.complex_value
        if constant.is_float and not is_hex_int and not text.startswith("'") and any(c in text for c in ".eEpP"):
            return constant.float_value
        if constant.is_int:
            return constant.int_value
        if constant.is_uint:
            self.errorf(f"{text} overflows int")
        return None

    def eval_field_node(self, dot: Any, field: FieldNode, args: list[Node] | None, final: Any) -> Any:
        self.at(field)
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(self, dot: Any, chain: ChainNode, args: list[Node] | None, final: Any) -> Any:
        self.at(chain)
        if not chain.fields:
            self.errorf("internal error: no fields in evalChainNode")
        if isinstance(chain.node, NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        # (pipe).Field1.Field2 has pipe as .node and the fields as .fields.
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable_node(self, dot: Any, variable: VariableNode, args: list[Node] | None, final: Any) -> Any:
        # $x.Field has $x as the first ident, Field as the second.
        self.at(variable)
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, ident: list[str], args: list[Node] | None, final: Any
    ) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, MISSING, receiver)
        # Now if it's a method, it gets the arguments.
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_function(
        self, dot: Any, node: IdentifierNode, command: Node, args: list[Node] | None, final: Any
    ) -> Any:
        self.at(node)
        name = node.ident
        function = self.functions.get(name)
        is_builtin = False
        if function is None:
            function = BUILTINS.get(name)
            is_builtin = function is not None
        if function is None:
            self.errorf(f"{go_quote(name)} is not a defined function")
        return self.eval_call(dot, function, is_builtin, command, name, args, final)

    def eval_field(
        self, dot: Any, name: str, node: Node, args: list[Node] | None, final: Any, receiver: Any
    ) -> Any:
        """Evaluate .Field or .Method args...: a method, a struct field or a map key."""
        if receiver is None:
            if self.missing_key == "error":  # an untyped nil reads like a missing map key
                self.errorf(f"nil data; no entry for key {go_quote(name)}")
            return None
        typ = type_name(receiver)
        receiver, nil = indirect(receiver)
        if nil and receiver is NIL:
            # Calling a method on a nil interface can't work.
            self.errorf(f"nil pointer evaluating {typ}.{name}")
        if not nil:
            method = lookup_method(receiver, name)
            if method is not None:
                return self.eval_call(dot, wrap_python_function(name, method), False, node, name, args, final)
        has_args = args is not None and len(args) > 1 or final is not MISSING
        receiver_kind = kind(receiver)
        if receiver_kind == "struct":
            found, value = struct_field(receiver, name)
            if found:
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return value
        elif receiver_kind == "map" and map_key_type(receiver) in ("string", "interface {}"):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            entries = map_entries(receiver)
            if name in entries:
                value = entries[name]
                return NIL if value is None else value
            if self.missing_key == "zero":
                if isinstance(receiver, Named) and receiver.type.map_zero is not None:
                    return receiver.type.map_zero()
                return NIL
            if self.missing_key == "error":
                self.errorf(f"map has no entry for key {go_quote(name)}")
            return None
        elif receiver_kind == "ptr" and nil:
            self.errorf(f"nil pointer evaluating {typ}.{name}")
        self.errorf(f"can't evaluate field {name} in type {typ}")

    def eval_call(
        self,
        dot: Any,
        function: GoFunc,
        is_builtin: bool,
        node: Node,
        name: str,
        args: list[Node] | None,
        final: Any,
    ) -> Any:
        """Call a function or method; args, if given, include the function's own node first."""
        arguments = args[1:] if args is not None else []
        params = function.params
        num_in = len(arguments) + (final is not MISSING)
        num_fixed = len(arguments)
        if function.variadic:
            num_fixed = len(params) - 1
            if num_in < num_fixed:
                self.errorf(f"wrong number of args for {name}: want at least {len(params) - 1} got {len(arguments)}")
        elif num_in != len(params):
            self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")

        if is_builtin and name in ("and", "or"):
            # and/or short-circuit: return the first argument that decides the result.
            value: Any = None
            for argument in arguments:
                value = self.eval_arg(dot, "value", argument)
                if is_true(indirect_interface(value)) == (name == "or"):
                    return value
            if final is not MISSING:
                value = self.validate_type(final, "value")
            return value

        argv: list[Any] = []
        kinds: list[str] = []
        i = 0
        while i < num_fixed and i < len(arguments):
            argv.append(self.eval_arg(dot, params[i], arguments[i]))
            kinds.append(params[i])
            i += 1
        if function.variadic:
            while i < len(arguments):
                argv.append(self.eval_arg(dot, params[-1], arguments[i]))
                kinds.append(params[-1])
                i += 1
        if final is not MISSING:
            param = params[-1]
            if function.variadic and num_in - 1 < num_fixed:
                param = params[num_in - 1]
            argv.append(self.validate_type(final, param))
            kinds.append(param)
        argv = [a if k == "value" else indirect_interface(a) for a, k in zip(argv, kinds)]

        if is_builtin and name == "call":
            # The called function's name goes in first, for call's error messages.
            if arguments:
                callee = str(arguments[0])
            else:
                callee = final if isinstance(final, str) else f"<{type_name(final)} Value>"
            argv.insert(0, callee)
        try:
            if function.sized:
                result = function.call(*argv, size_check=self.budget.size)
            else:
                result = function.call(*argv)
        except (ExecError, _Break, _Continue, RecursionError, TemplateLimitExceeded):
            raise
        except Exception as error:  # a Go function's error result, or a recovered panic
            self.at(node)
            self.errorf(f"error calling {name}: {error}")
        if isinstance(result, str):  # printf in a loop can double a string without printing it
            self.budget.size(len(result))
        return result

    def validate_type(self, value: Any, typ: str | None) -> Any:
        """Make sure a value can be passed as an argument of Go type ``typ``."""
        if value is None:
            if typ is None or typ in ("any", "value"):
                return None
            self.errorf(f"invalid value; expected {_GO_TYPE_NAMES[typ]}")
        if typ is None or typ in ("any", "value"):
            return value
        if _has_type(value, typ):
            return value
        if isinstance(value, Pointer) and _has_type(value.elem, typ):
            return value.elem
        if isinstance(value, Pointer) and value.elem is None:
            self.errorf(f"dereference of nil pointer of type {_GO_TYPE_NAMES[typ]}")
        self.errorf(f"wrong type for value; expected {_GO_TYPE_NAMES[typ]}; got {type_name(value)}")

    def eval_arg(self, dot: Any, typ: str | None, node: Node) -> Any:
        self.at(node)
        if isinstance(node, DotNode):
            return self.validate_type(dot, typ)
        if isinstance(node, NilNode):
            if typ is None or typ in ("any", "value"):
                return None
            self.errorf(f"cannot assign nil to {_GO_TYPE_NAMES[typ]}")
        if isinstance(node, FieldNode):
            return self.validate_type(self.eval_field_node(dot, node, [node], MISSING), typ)
        if isinstance(node, VariableNode):
            return self.validate_type(self.eval_variable_node(dot, node, None, MISSING), typ)
        if isinstance(node, PipeNode):
            return self.validate_type(self.eval_pipeline(dot, node), typ)
        if isinstance(node, IdentifierNode):
            return self.validate_type(self.eval_function(dot, node, node, None, MISSING), typ)
        if isinstance(node, ChainNode):
            return self.validate_type(self.eval_chain_node(dot, node, None, MISSING), typ)
        if typ == "bool":
            if isinstance(node, BoolNode):
                return node.value
            self.errorf(f"expected bool; found {node}")
        if typ == "string":
            if isinstance(node, StringNode):
                return node.text
            self.errorf(f"expected string; found {node}")
        if typ == "int":
            if isinstance(node, NumberNode) and node.is_int:
                return node.int_value
            self.errorf(f"expected integer; found {node}")
        if typ == "float":
            if isinstance(node, NumberNode) and node.is_float:
                return node.float_value
            self.errorf(f"expected float; found {node}")
        if typ in ("any", "value"):
            return self.eval_empty_interface(dot, node)
        self.errorf(f"can't handle {node} for arg of type {_GO_TYPE_NAMES.get(typ or '', typ)}")

    def eval_empty_interface(self, dot: Any, node: Node) -> Any:
        self.at(node)
        if isinstance(node, BoolNode):
            return node.value
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, FieldNode):
            return self.eval_field_node(dot, node, None, MISSING)
        if isinstance(node, IdentifierNode):
            return self.eval_function(dot, node, node, None, MISSING)
        if isinstance(node, NilNode):
            self.errorf("evalEmptyInterface: nil (can't happen)")
        if isinstance(node, NumberNode):
            return self.ideal_constant(node)
        if isinstance(node, StringNode):
            return node.text
        if isinstance(node, VariableNode):
            return self.eval_variable_node(dot, node, None, MISSING)
        if isinstance(node, PipeNode):
            return self.eval_pipeline(dot, node)
        self.errorf(f"can't handle assignment of {node} to empty interface argument")

    def print_value(self, node: Node, value: Any) -> None:
        self.at(node)
        if isinstance(value, Pointer):
            value, _ = indirect(value)  # fmt handles a nil pointer
        if value is None or value is NIL:
            self.out.append("<no value>")
            return
        if is_function(value):
            self.errorf(f"can't print {node} of type {type_name(value)}")
        self.out.append(sprint(value))


def _has_type(value: Any, typ: str) -> bool:
    if typ == "string":
        return isinstance(value, str)
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "bool":
        return isinstance(value, bool)
    if typ == "float":
        return isinstance(value, float)
    return False
