"""``corral run MODEL [PROMPT]``: a one-shot answer, or the interactive chat (see :mod:`.repl`).

Follows Ollama's ``RunHandler`` (cmd/cmd.go): show the model and pull it when the server does not
have it; read a prompt from the arguments and from stdin when stdin is not a terminal; answer it
with ``/api/generate`` and exit; or, when both stdin and stdout are terminals and no prompt was
given, load the model and open the chat, which talks ``/api/chat``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs
import click

from .model_commands import EPILOG, connect

THINK_LEVELS = ("high", "medium", "low", "max")


@attrs.define(kw_only=True)
class RunOptions:
    """The state of one ``corral run`` session (Ollama's ``runOptions``); the chat commands
    change it as the session goes on."""

    model: str
    parent_model: str = ""
    loaded_messages: list[dict[str, Any]] = attrs.Factory(list)
    messages: list[dict[str, Any]] = attrs.Factory(list)
    prompt: str = ""
    word_wrap: bool = True
    format: str = ""
    system: str = ""
    template: str = ""
    options: dict[str, Any] = attrs.Factory(dict)
    keep_alive: str | None = None
    think: bool | str | None = None
    hide_thinking: bool = False
    verbose: bool = False
    insecure: bool = False

    def copy(self) -> RunOptions:
        return attrs.evolve(self, loaded_messages=list(self.loaded_messages), messages=list(self.messages),
                            options=dict(self.options))


class RunCommand(click.Command):
    """``--think`` alone means ``--think=true`` and never takes the next word as its value
    (cobra's NoOptDefVal): ``corral run m --think "a prompt"``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        args = [("--think=true" if arg == "--think" and index < end else arg) for index, arg in enumerate(args)]
        return super().parse_args(ctx, args)


@click.command("run", cls=RunCommand, epilog=EPILOG)
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--format", "format_", default="", metavar="FORMAT", help="Response format (e.g. json).")
@click.option("--keepalive", default=None, metavar="DURATION", help="Duration to keep a model loaded (e.g. 5m).")
@click.option("--think", default=None, metavar="[=true|false|high|medium|low]",
              help="Enable thinking mode: true/false or high/medium/low for supported models.")
@click.option("--hidethinking", is_flag=True, help="Hide thinking output (if provided).")
@click.option("--verbose", is_flag=True, help="Show timings for response.")
@click.option("--nowordwrap", is_flag=True, help="Don't wrap words to the next line automatically.")
@click.option("--insecure", is_flag=True, help="Use an insecure registry.")
@click.option("--truncate/--no-truncate", default=None,
              help="For embedding models: truncate inputs exceeding the context length (default: truncate).")
@click.option("--dimensions", type=int, default=0, help="Truncate output embeddings to this dimension (embedding models only).")
@click.pass_obj
def run_command(state: Any, model: str, prompt: tuple[str, ...], format_: str, keepalive: str | None,
                think: str | None, hidethinking: bool, verbose: bool, nowordwrap: bool, insecure: bool,
                truncate: bool | None, dimensions: int) -> None:
    """Run a model.

    With a PROMPT (or text on stdin), print the answer and exit; otherwise open a chat: type
    /? in it for its commands. The model is pulled first when the server does not have it.

    \b
    Example:
      corral run smollm2
      corral run smollm2 "Why is the sky blue?"
      echo "Summarise this:" | corral run smollm2 "$(cat notes.txt)"
      corral run smollm2 --verbose --format json "List three colours as JSON"
    """
    from corral import CorralError

    from .render import is_terminal

    opts = RunOptions(model=model, format=_checked_format(format_), think=_checked_think(think),
                      hide_thinking=hidethinking, verbose=verbose, insecure=insecure,
                      keep_alive=_checked_keep_alive(keepalive), word_wrap=not nowordwrap)
    interactive = True
    prompts = list(prompt)
    if not is_terminal(sys.stdin):
        text = sys.stdin.read()
        if text:
            prompts.insert(0, text)
        interactive = False
    opts.prompt = " ".join(prompts)
    if prompts:
        interactive = False
    if not is_terminal(sys.stdout):
        interactive = False
        opts.word_wrap = False  # a pipe or a file gets the text as the model wrote it

    with connect(state) as client:
        info = show_or_pull(client, model, insecure=insecure)
        capabilities = info.get("capabilities") or []
        if think is None and "thinking" in capabilities:
            opts.think = True
        apply_show_response(opts, info)
        if "embedding" in capabilities:
            if not opts.prompt:
                raise CorralError(f'embedding models require input text. Usage: corral run {model} "your text here"')
            embed(client, opts, truncate=truncate, dimensions=dimensions)
            return
        if interactive:
            load_model(client, opts)
            from .repl import replay_messages, run_interactive

            replay_messages(info.get("messages") or [], opts)
            run_interactive(client, opts)
            return
        generate(client, opts)


def _checked_format(value: str) -> str:
    from corral import InvalidRequest

    if value in ("", "json"):
        return value
    try:
        json.loads(value)
    except ValueError:
        raise InvalidRequest(f'invalid value for --format: "{value}" (use json or a JSON schema)') from None
    return value


def _checked_think(value: str | None) -> bool | str | None:
    from corral import InvalidRequest

    if value is None:
        return None
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in THINK_LEVELS:
        return value
    raise InvalidRequest(f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)')


def _checked_keep_alive(value: str | None) -> str | None:
    from corral import InvalidRequest, parse_go_duration

    if value is None or value == "":
        return None
    try:
        parse_go_duration(value)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    return value


def format_field(opts: RunOptions) -> Any:
    """The request's ``format``: ``"json"``, a JSON schema, or nothing."""
    if not opts.format:
        return None
    return "json" if opts.format == "json" else json.loads(opts.format)


def apply_show_response(opts: RunOptions, info: dict[str, Any]) -> None:
    opts.parent_model = str((info.get("details") or {}).get("parent_model") or "")
    opts.loaded_messages = list(info.get("messages") or [])


# Talking to the server


def show_or_pull(client: Any, name: str, *, insecure: bool) -> dict[str, Any]:
    """``POST /api/show``; when the server answers 404, pull the model with progress, then show."""
    from .client import ServerError

    try:
        return client.post("/api/show", {"model": name}) or {}
    except ServerError as error:
        if error.status != 404:
            raise
    pull_with_progress(client, name, insecure=insecure)
    return client.post("/api/show", {"model": name}) or {}


def pull_with_progress(client: Any, name: str, *, insecure: bool) -> None:
    """Pull through ``POST /api/pull`` with ``corral pull``'s progress, drawn on stderr as
    Ollama draws it there: stdout is kept for the answer."""
    from contextlib import redirect_stdout

    from .transfer_commands import show_progress

    with redirect_stdout(sys.stderr):
        show_progress(client.stream("POST", "/api/pull", {"model": name, "insecure": insecure}))


def load_model(client: Any, opts: RunOptions) -> None:
    """Ollama's ``loadOrUnloadModel``: an empty generate request that loads the model (and
    fails now, before the prompt, if it cannot run or think)."""
    from .render import Spinner

    body: dict[str, Any] = {"model": opts.model}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        body["think"] = opts.think
    with Spinner():
        for _ in client.stream("POST", "/api/generate", body):
            pass


def embed(client: Any, opts: RunOptions, *, truncate: bool | None, dimensions: int) -> None:
    from corral import CorralError

    body: dict[str, Any] = {"model": opts.model, "input": opts.prompt}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if truncate is not None:
        body["truncate"] = truncate
    if dimensions > 0:
        body["dimensions"] = dimensions
    embeddings = (client.post("/api/embed", body) or {}).get("embeddings") or []
    if not embeddings:
        raise CorralError("no embeddings returned")
    click.echo(json.dumps(embeddings[0], separators=(",", ":")))


def _flags(opts: RunOptions) -> dict[str, Any]:
    """The request fields the command line's flags set: format, keep_alive, think."""
    fields = {"format": format_field(opts), "keep_alive": opts.keep_alive, "think": opts.think}
    return {name: value for name, value in fields.items() if value is not None}


def generate(client: Any, opts: RunOptions) -> None:
    """A one-shot answer through ``/api/generate``, streamed to stdout."""
    body: dict[str, Any] = {"model": opts.model, "prompt": opts.prompt, "options": opts.options, **_flags(opts)}
    if opts.system:
        body["system"] = opts.system
    answer = stream_answer(client, "/api/generate", body, opts)
    if answer is None:
        return
    if opts.prompt:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if opts.verbose and answer.final.get("done"):
        sys.stderr.write(_summary(answer.final))


def chat(client: Any, opts: RunOptions) -> dict[str, Any] | None:
    """One chat turn through ``/api/chat``: the assistant's message, or None when Ctrl+C stopped
    it (then the answer so far is dropped from the conversation, as Ollama does)."""
    body: dict[str, Any] = {"model": opts.model, "messages": opts.messages, "options": opts.options, **_flags(opts)}
    answer = stream_answer(client, "/api/chat", body, opts)
    if answer is None:
        return None
    if opts.messages:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if opts.verbose:
        sys.stderr.write(_summary(answer.final))
    message: dict[str, Any] = {"role": answer.role, "content": answer.content}
    if answer.thinking:
        message["thinking"] = answer.thinking
    return message


def _summary(final: dict[str, Any]) -> str:
    from .render import summary

    return summary(final)


@attrs.define(kw_only=True)
class Answer:
    role: str = "assistant"
    content: str = ""
    thinking: str = ""
    final: dict[str, Any] = attrs.Factory(dict)


def stream_answer(client: Any, path: str, body: dict[str, Any], opts: RunOptions) -> Answer | None:
    """Stream a generate or chat answer to stdout: spinner until the first piece, thinking in
    grey, word wrap. Ctrl+C closes the stream (the server stops generating) and returns None."""
    from .render import DEFAULT, Spinner, WordWrapper, is_terminal, thinking_closing, thinking_opening

    out = sys.stdout
    plain = not is_terminal(out)
    wrapper = WordWrapper(out, opts.word_wrap)
    answer = Answer()
    thinking_open = False
    spinner = Spinner()
    spinner.start()
    stream = client.stream("POST", path, body)
    try:
        for item in stream:
            answer.final = item
            message = item.get("message") if path == "/api/chat" else item
            message = message if isinstance(message, dict) else {}
            content = str(message.get("content" if path == "/api/chat" else "response") or "")
            thinking = str(message.get("thinking") or "")
            tool_calls = message.get("tool_calls") or []
            if path == "/api/chat" and message.get("role"):
                answer.role = str(message["role"])
            if content or not opts.hide_thinking:
                spinner.stop()
            if thinking and not opts.hide_thinking:
                if not thinking_open:
                    out.write(thinking_opening(plain))
                    thinking_open = True
                wrapper.write(thinking)
            answer.thinking += thinking
            if thinking_open and (content or tool_calls):
                if not answer.thinking.endswith("\n"):
                    out.write("\n")
                out.write(thinking_closing(plain))
                thinking_open = False
                wrapper = WordWrapper(out, opts.word_wrap)
            answer.content += content
            wrapper.write(content)
            if tool_calls:
                out.write(render_tool_calls(tool_calls, plain))
                out.flush()
    except KeyboardInterrupt:
        stream.close()
        spinner.stop()
        if not plain:
            out.write((DEFAULT if thinking_open else "") + "\n")
            out.flush()
        return None
    finally:
        spinner.stop()
        stream.close()
    return answer


def render_tool_calls(tool_calls: list[Any], plain: bool) -> str:
    from .render import BOLD, DEFAULT, GREY

    explain, values = ("", "") if plain else (GREY + BOLD, DEFAULT)
    parts = []
    for call in tool_calls:
        function = (call.get("function") or {}) if isinstance(call, dict) else {}
        arguments = json.dumps(function.get("arguments") or {}, separators=(",", ":"))
        parts.append(f"  Model called a non-existent function '{values}{function.get('name', '')}{explain}()' "
                     f"with arguments: {values}{arguments}{explain}")
    text = "\n".join(parts)
    return text if plain else explain + text + DEFAULT
