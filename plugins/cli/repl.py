"""The interactive chat of ``corral run``: Ollama's ``generateInteractive`` (cmd/interactive.go).

Line editing is prompt_toolkit's (Emacs keys, Ctrl+L, a grey placeholder, bracketed paste so that
pasted lines arrive as one message); history is kept between runs in ``~/.corral/history``
(``OLLAMA_NOHISTORY`` or ``/set nohistory`` stop recording). ``\"\"\"`` starts and ends a
multi-line message. Ctrl+C clears the line (or stops an answer, see
:func:`.run_command.stream_answer`); Ctrl+D on an empty line or ``/bye`` leaves.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from .run_command import RunOptions, apply_show_response, chat, load_model

PROMPT, ALT_PROMPT = ">>> ", "... "
PLACEHOLDER, ALT_PLACEHOLDER = "Send a message (/? for help)", "Press Enter to send"
TRIPLE = '"""'


def _err(text: str = "") -> None:
    sys.stderr.write(text + "\n")


def usage() -> None:
    _err("Available Commands:")
    _err("  /set            Set session variables")
    _err("  /show           Show model information")
    _err("  /load <model>   Load a session or model")
    _err("  /save <model>   Save your current session")
    _err("  /clear          Clear session context")
    _err("  /bye            Exit")
    _err("  /?, /help       Help for a command")
    _err("  /? shortcuts    Help for keyboard shortcuts")
    _err()
    _err('Use """ to begin a multi-line message.')
    _err()


def usage_set() -> None:
    _err("Available Commands:")
    _err("  /set parameter ...     Set a parameter")
    _err("  /set system <string>   Set system message")
    _err("  /set template <string> Set prompt template (kept by /save)")
    _err("  /set history           Enable history")
    _err("  /set nohistory         Disable history")
    _err("  /set wordwrap          Enable wordwrap")
    _err("  /set nowordwrap        Disable wordwrap")
    _err("  /set format json       Enable JSON mode")
    _err("  /set noformat          Disable formatting")
    _err("  /set verbose           Show LLM stats")
    _err("  /set quiet             Disable LLM stats")
    _err("  /set think             Enable thinking")
    _err("  /set nothink           Disable thinking")
    _err()


def usage_shortcuts() -> None:
    _err("Available keyboard shortcuts:")
    _err("  Ctrl + a            Move to the beginning of the line (Home)")
    _err("  Ctrl + e            Move to the end of the line (End)")
    _err("   Alt + b            Move back (left) one word")
    _err("   Alt + f            Move forward (right) one word")
    _err("  Ctrl + k            Delete the sentence after the cursor")
    _err("  Ctrl + u            Delete the sentence before the cursor")
    _err("  Ctrl + w            Delete the word before the cursor")
    _err()
    _err("  Ctrl + l            Clear the screen")
    _err("  Ctrl + c            Stop the model from responding")
    _err("  Ctrl + d            Exit corral (/bye)")
    _err()


def usage_show() -> None:
    _err("Available Commands:")
    _err("  /show info         Show details for this model")
    _err("  /show license      Show model license")
    _err("  /show modelfile    Show Modelfile for this model")
    _err("  /show parameters   Show parameters for this model")
    _err("  /show system       Show system message")
    _err("  /show template     Show prompt template")
    _err()


def usage_parameters() -> None:
    _err("Available Parameters:")
    _err("  /set parameter seed <int>             Random number seed")
    _err("  /set parameter num_predict <int>      Max number of tokens to predict")
    _err("  /set parameter top_k <int>            Pick from top k num of tokens")
    _err("  /set parameter top_p <float>          Pick token based on sum of probabilities")
    _err("  /set parameter min_p <float>          Pick token based on top token probability * min_p")
    _err("  /set parameter num_ctx <int>          Set the context size")
    _err("  /set parameter temperature <float>    Set creativity level")
    _err("  /set parameter repeat_penalty <float> How strongly to penalize repetitions")
    _err("  /set parameter repeat_last_n <int>    Set how far back to look for repetitions")
    _err("  /set parameter num_gpu <int>          The number of layers to send to the GPU")
    _err("  /set parameter stop <string> <string> ...   Set the stop parameters")
    _err()


# /set parameter: Ollama's api.FormatParams


class ParameterError(ValueError):
    pass


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_parameter(name: str, values: list[str]) -> Any:
    """One parameter's value from its words, typed as Ollama's ``FormatParams`` types it."""
    from corral.sdk.options import BOOL, FLOAT, INT, OPTION_TYPES

    kind = OPTION_TYPES.get(name)
    shown = "[" + " ".join(values) + "]"
    if kind is None:
        raise ParameterError(f"unknown parameter '{name}'")
    if kind == INT:
        if not re.fullmatch(r"[+-]?\d+", values[0]) or not -(2**63) <= int(values[0]) < 2**63:
            raise ParameterError(f"invalid int value {shown}")
        return int(values[0])
    if kind == FLOAT:
        text = values[0]
        if "_" in text or text != text.strip():
            raise ParameterError(f"invalid float value {shown}")
        try:
            return float(text)
        except ValueError:
            raise ParameterError(f"invalid float value {shown}") from None
    if kind == BOOL:
        if values[0] in _GO_TRUE:
            return True
        if values[0] in _GO_FALSE:
            return False
        raise ParameterError(f"invalid bool value {shown}")
    return list(values)


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string (the characters a parameter error can hold)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def show_value(value: Any) -> str:
    from .human import go_value

    return go_value(value)


# Line input


class LineInterrupted(Exception):
    """Ctrl+C at the prompt; ``text`` is what the line held."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def history_path() -> Path:
    home = Path(os.environ["HOME"]) if os.environ.get("HOME") else Path.home()
    return home / ".corral" / "history"


class LineReader:
    """prompt_toolkit's prompt with Ollama's prompts, placeholders and history switch."""

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.formatted_text import FormattedText
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        reader = self
        self.record = os.environ.get("OLLAMA_NOHISTORY", "").strip().lower() not in ("1", "true", "t", "yes")
        self.use_alt = False

        def stored(base: type) -> type:
            class Switchable(base):  # type: ignore[misc, valid-type]
                def append_string(self, string: str) -> None:
                    if reader.record:
                        super().append_string(string)
            return Switchable

        history: Any
        try:
            path = history_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            history = stored(FileHistory)(str(path))
        except OSError:
            history = stored(InMemoryHistory)()

        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event: Any) -> None:
            event.app.exit(exception=LineInterrupted(event.app.current_buffer.text))

        def placeholder(text: str) -> Any:
            from prompt_toolkit.application import get_app

            # Not in the line left on the screen once it is accepted or abandoned.
            return lambda: FormattedText([] if get_app().is_done else [("fg:#8a8a8a", text)])

        self._placeholder = placeholder(PLACEHOLDER)
        self._alt_placeholder = placeholder(ALT_PLACEHOLDER)
        self.session: Any = PromptSession(history=history, key_bindings=bindings, enable_history_search=False)

    def read(self) -> str:
        """The next line; EOFError on Ctrl+D, LineInterrupted on Ctrl+C."""
        if self.use_alt:
            return self.session.prompt(ALT_PROMPT, placeholder=self._alt_placeholder)
        return self.session.prompt(PROMPT, placeholder=self._placeholder)


# The loop


def replay_messages(messages: list[dict[str, Any]], opts: RunOptions) -> None:
    """A saved model's conversation, shown as the chat would have shown it."""
    from .render import WordWrapper

    for message in messages:
        if message.get("role") == "user":
            sys.stdout.write(f"{PROMPT}{message.get('content', '')}\n")
        elif message.get("role") == "assistant":
            WordWrapper(sys.stdout, opts.word_wrap).write(str(message.get("content", "")))
            sys.stdout.write("\n\n")
    sys.stdout.flush()


def run_interactive(client: Any, opts: RunOptions) -> None:
    Session(client, opts, LineReader()).loop()


class Session:
    """One chat: the options it changes, the multi-line state, the commands."""

    def __init__(self, client: Any, opts: RunOptions, reader: LineReader) -> None:
        self.client = client
        self.opts = opts
        self.reader = reader
        self.multiline: str | None = None  # "prompt", "system" or "template" while a """ block is open
        self.buffer = ""

    def loop(self) -> None:
        while True:
            try:
                line = self.reader.read()
            except EOFError:
                print()
                return
            except LineInterrupted as interrupted:
                if not interrupted.text:
                    print("\nUse Ctrl + d or /bye to exit.")
                self.reader.use_alt = False
                self.multiline = None
                self.buffer = ""
                continue
            if self.handle(line) == "exit":
                return
            if self.buffer and self.multiline is None:
                self.send(self.buffer)
                self.buffer = ""

    def handle(self, line: str) -> str | None:
        """One line: part of a message, or a command. Returns "exit" to leave."""
        if self.multiline is not None:
            before, ended = (line[: -len(TRIPLE)], True) if line.endswith(TRIPLE) else (line, False)
            self.buffer += before
            if not ended:
                self.buffer += "\n"
                self.reader.use_alt = True
                return None
            kind, self.multiline = self.multiline, None
            self.reader.use_alt = False
            if kind == "system":
                self.set_system(self.buffer, replace=False)
                self.buffer = ""
            elif kind == "template":
                self.set_template(self.buffer)
                self.buffer = ""
            return None
        if line.startswith(TRIPLE):
            rest = line[len(TRIPLE):]
            if rest.endswith(TRIPLE):
                self.buffer += rest[: -len(TRIPLE)]
            else:
                self.buffer += rest + "\n"
                self.multiline = "prompt"
                self.reader.use_alt = True
            return None
        if "\n" in line or not line.startswith("/"):  # pasted text is never a command
            self.buffer += line
            return None
        args = line.split()
        command = args[0]
        if command in ("/bye", "/exit"):
            return "exit"
        handler = {
            "/set": self.command_set, "/show": self.command_show, "/load": self.command_load,
            "/save": self.command_save, "/clear": self.command_clear, "/help": self.command_help,
            "/?": self.command_help,
        }.get(command)
        if handler is None:
            print(f"Unknown command '{command}'. Type /? for help")
            return None
        handler(args, line)
        return None

    # Sending

    def send(self, text: str) -> None:
        from .client import ServerError

        self.opts.messages.append({"role": "user", "content": text})
        try:
            message = chat(self.client, self.opts)
        except ServerError as error:
            self.opts.messages.pop()
            print(f"error: {error}")
            return
        if message is not None:
            self.opts.messages.append(message)

    # Commands

    def command_help(self, args: list[str], _line: str) -> None:
        topic = args[1] if len(args) > 1 else ""
        if topic in ("set", "/set"):
            usage_set()
        elif topic in ("show", "/show"):
            usage_show()
        elif topic in ("shortcut", "shortcuts"):
            usage_shortcuts()
        else:
            usage()

    def command_clear(self, _args: list[str], _line: str) -> None:
        self.opts.messages = []
        if self.opts.system:
            self.opts.messages.append({"role": "system", "content": self.opts.system})
        print("Cleared session context")

    def command_set(self, args: list[str], line: str) -> None:
        opts = self.opts
        if len(args) < 2:
            usage_set()
            return
        what = args[1]
        if what == "history":
            self.reader.record = True
        elif what == "nohistory":
            self.reader.record = False
        elif what == "wordwrap":
            opts.word_wrap = True
            print("Set 'wordwrap' mode.")
        elif what == "nowordwrap":
            opts.word_wrap = False
            print("Set 'nowordwrap' mode.")
        elif what == "verbose":
            opts.verbose = True
            print("Set 'verbose' mode.")
        elif what == "quiet":
            opts.verbose = False
            print("Set 'quiet' mode.")
        elif what == "think":
            level = args[2] if len(args) > 2 else ""
            opts.think = level or True
            self.warn_without_thinking()
            print(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")
        elif what == "nothink":
            opts.think = False
            self.warn_without_thinking()
            print("Set 'nothink' mode.")
        elif what == "format":
            if len(args) < 3 or args[2] != "json":
                print("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                opts.format = "json"
                print("Set format to 'json' mode.")
        elif what == "noformat":
            opts.format = ""
            print("Disabled format.")
        elif what == "parameter":
            if len(args) < 4:
                usage_parameters()
                return
            name, values = args[2], args[3:]
            try:
                value = parse_parameter(name, values)
            except ParameterError as error:
                print(f"Couldn't set parameter: {go_quote(str(error))}")
                return
            print(f"Set parameter '{name}' to '{', '.join(values)}'")
            opts.options[name] = value
        elif what in ("system", "template"):
            if len(args) < 3:
                usage_set()
                return
            text = " ".join(args[2:])
            if text.startswith(TRIPLE):
                text = text[len(TRIPLE):]
                if text.endswith(TRIPLE):
                    text = text[: -len(TRIPLE)]
                else:
                    self.buffer += text + "\n"
                    self.multiline = what
                    self.reader.use_alt = True
                    return
            if what == "system":
                self.set_system(text, replace=True)
            else:
                self.set_template(text)
        else:
            print(f"Unknown command '/set {what}'. Type /? for help")

    def set_system(self, text: str, *, replace: bool) -> None:
        self.opts.system = text
        message = {"role": "system", "content": text}
        if replace and self.opts.messages and self.opts.messages[-1].get("role") == "system":
            self.opts.messages[-1] = message
        else:
            self.opts.messages.append(message)
        print("Set system message.")

    def set_template(self, text: str) -> None:
        self.opts.template = text
        print("Set prompt template.")

    def warn_without_thinking(self) -> None:
        from corral import CorralError

        try:
            info = self.client.post("/api/show", {"model": self.opts.model}) or {}
        except CorralError:
            return
        if "thinking" not in (info.get("capabilities") or []):
            sys.stderr.write(f'warning: model "{self.opts.model}" does not support thinking output\n')

    def command_show(self, args: list[str], _line: str) -> None:
        from corral import CorralError

        from .model_commands import show_info

        opts = self.opts
        if len(args) < 2:
            usage_show()
            return
        request: dict[str, Any] = {"model": opts.model, "options": opts.options}
        if opts.system:
            request["system"] = opts.system
        try:
            info = self.client.post("/api/show", request) or {}
        except CorralError as error:
            print(f"error: couldn't get model: {error}")
            return
        what = args[1]
        if what == "info":
            sys.stderr.write(show_info(info, False))
        elif what == "license":
            print(info.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            print(info.get("modelfile") or "")
        elif what == "parameters":
            print("Model defined parameters:")
            if not info.get("parameters"):
                print("  No additional parameters were specified for this model.")
            else:
                for parameter_line in str(info["parameters"]).split("\n"):
                    print(f"  {parameter_line}")
            print()
            if opts.options:
                print("User defined parameters:")
                for name, value in opts.options.items():
                    print(f"  {name:<30} {show_value(value)}")
                print()
        elif what == "system":
            if opts.system:
                print(opts.system + "\n")
            elif info.get("system"):
                print(str(info["system"]) + "\n")
            else:
                print("No system message was specified for this model.")
        elif what == "template":
            template = opts.template or info.get("template")
            print(template if template else "No prompt template was specified for this model.")
        else:
            print(f"Unknown command '/show {what}'. Type /? for help")

    def command_load(self, args: list[str], _line: str) -> None:
        from .client import ServerError

        if len(args) != 2:
            print("Usage:\n  /load <modelname>")
            return
        original = self.opts.copy()
        opts = self.opts
        opts.model = args[1]
        opts.messages = []
        opts.loaded_messages = []
        print(f"Loading model '{opts.model}'")
        try:
            info = self.client.post("/api/show", {"model": opts.model}) or {}
            apply_show_response(opts, info)
            if "thinking" in (info.get("capabilities") or []) and opts.think is None:
                opts.think = True
            load_model(self.client, opts)
        except ServerError as error:
            if "not found" in str(error):
                print(f"Couldn't find model '{opts.model}'")
            else:
                print(f"error: {error}")
            self.opts = original
            return

    def command_save(self, args: list[str], _line: str) -> None:
        from .client import ServerError

        if len(args) != 2:
            print("Usage:\n  /save <modelname>")
            return
        name = args[1]
        opts = self.opts
        request: dict[str, Any] = {"model": name, "from": opts.parent_model or opts.model}
        if opts.system:
            request["system"] = opts.system
        if opts.template:
            request["template"] = opts.template
        if opts.options:
            request["parameters"] = opts.options
        messages = [*opts.loaded_messages, *opts.messages]
        if messages:
            request["messages"] = messages
        try:
            for _ in self.client.stream("POST", "/api/create", request):
                pass
        except ServerError as error:
            if "invalid model name" in str(error):
                print(f"error: The model name '{name}' is invalid")
            else:
                print(f"error: {error}")
            return
        print(f"Created new model '{name}'")
