"""``corral run MODEL [PROMPT]``: a one-shot answer, or the interactive chat (see :mod:`.repl`; what both
share is in :mod:`.conversation`).

Follows Ollama's ``RunHandler`` (cmd/cmd.go): show the model and pull it when the server does not
have it; read a prompt from the arguments and from stdin when stdin is not a terminal; answer it
with ``/api/generate`` and exit; or, when both stdin and stdout are terminals and no prompt was
given, load the model and open the chat, which talks ``/api/chat``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .conversation import RunOptions, apply_show_response, embed, generate, load_model, show_or_pull
from .model_commands import EPILOG, connect

THINK_LEVELS = ("high", "medium", "low", "max")


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
