"""``corral run``, driven as a user drives it: the chat in a real terminal (tmux: send-keys to
type, capture-pane to read the screen), the one-shot and stdin forms as subprocesses, all against
a real ``corral serve`` running the real SmolLM2 model at OLLAMA_HOST.

Answers are checked against the server's own answer to the same request, with greedy sampling
(a model ``smol0`` whose parameters set temperature 0), so they are deterministic.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollama_store import ollama_model
from servers import SMOL_PARAMS, SMOL_TEMPLATE, THINKING_TEMPLATE, running_server, store_with_smollm2
from support import clean_environ, run_corral

pytestmark = pytest.mark.slow  # and the chat tests need tmux (.ci/run installs it)

GREEDY = {**SMOL_PARAMS, "temperature": 0, "seed": 7, "num_predict": 24}
WAIT = 180.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    root = store_with_smollm2(tmp_path_factory.mktemp("models"), smollm2_gguf)
    ollama_model(root, ("registry.ollama.ai", "library", "smol0", "latest"), smollm2_gguf.read_bytes(),
                 template=SMOL_TEMPLATE, params=GREEDY, system="You are a helpful assistant.",
                 model_type="134.52M", file_type="Q4_1")
    ollama_model(root, ("registry.ollama.ai", "library", "smol-think", "latest"), smollm2_gguf.read_bytes(),
                 template=THINKING_TEMPLATE, params=GREEDY, model_type="134.52M", file_type="Q4_1")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Iterator[str]:
    env = {**clean_environ(tmp_path_factory.mktemp("server-home")), "OLLAMA_MODELS": str(store)}
    with running_server(env) as url:
        yield url


@pytest.fixture
def env(server: str, tmp_path: Path) -> dict[str, str]:
    """A user's environment: OLLAMA_HOST is the test server, HOME is private."""
    return {**clean_environ(tmp_path / "home"), "OLLAMA_HOST": server.removeprefix("http://")}


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=300) as client:
        yield client


def answer_of(api: httpx.Client, messages: list[dict[str, str]], **options: object) -> str:
    """What the server answers to this conversation with smol0's greedy settings, asked just
    before the chat asks it.

    Greedy decoding is deterministic only for the same computation: llama.cpp reuses the cached
    prefix of the previous prompt, and a prompt evaluated in one batch gives slightly different
    logits than one evaluated in parts. Asked twice, the second answer comes from a fully cached
    prompt, as the chat's identical request that follows will.
    """
    body = {"model": "smol0", "messages": messages, "stream": False, "options": options}
    for _ in range(2):
        response = api.post("/api/chat", json=body)
        assert response.status_code == 200, response.text
    return response.json()["message"]["content"]


def generated(api: httpx.Client, prompt: str, model: str = "smol0", **fields: object) -> str:
    """``/api/generate``'s answer, asked twice for the reason given in :func:`answer_of`."""
    for _ in range(2):
        response = api.post("/api/generate", json={"model": model, "prompt": prompt, "stream": False, **fields})
        assert response.status_code == 200, response.text
    return response.json()["thinking" if fields.get("think") else "response"]


def words(text: str) -> str:
    """Text with every run of white space made one space: word-wrapped screen text compares
    equal to the answer it shows."""
    return " ".join(text.split())


# A real terminal

_sessions = itertools.count()


class Terminal:
    """``corral run`` in a tmux session of its own (a private tmux server), 100x40."""

    def __init__(self, args: list[str], env: dict[str, str], tmp_path: Path) -> None:
        self.socket = f"corral-test-{os.getpid()}-{next(_sessions)}"
        self.env = {**env, "TERM": "xterm-256color"}
        corral = [sys.executable, "-c", "from corral.plugins.cli import main; main()"]
        command = " ".join(map(_quote, [*corral, *args]))
        # The shell reports the exit code and keeps the pane open so the screen can be read. Its
        # trap keeps it alive through a Ctrl+C (corral, started from it, gets the default handler).
        script = tmp_path / f"{self.socket}.sh"
        script.write_text(f"trap true INT\n{command}\necho \"[corral exited $?]\"\nsleep 600\n")
        self._tmux("new-session", "-d", "-x", "100", "-y", "40", "sh", str(script))

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def type(self, *keys: str) -> None:
        """Type text literally (``-l``), or press named keys such as Enter or C-c."""
        for key in keys:
            if key in ("Enter", "C-c", "C-d", "Up", "Down"):
                self._tmux("send-keys", key)
            else:
                self._tmux("send-keys", "-l", key)

    def line(self, text: str) -> None:
        self.type(text, "Enter")

    def screen(self) -> str:
        """Everything the terminal shows, scrollback included, trailing white space dropped."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-1000").rstrip()

    def wait_for(self, check: str | Callable[[str], bool], timeout: float = WAIT) -> str:
        """Poll the screen until it contains ``check`` (or ``check(screen)`` is true)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if (check in screen) if isinstance(check, str) else check(screen):
                return screen
            if "[corral exited" in screen or time.monotonic() > deadline:
                pytest.fail(f"waited for {check!r}; the screen:\n{screen}")
            time.sleep(0.1)

    def ready(self) -> str:
        """Wait for the first prompt, showing its placeholder."""
        return self.wait_for(lambda screen: screen.endswith(EMPTY_PROMPT))

    def send(self, text: str, prompt: str = ">>> ") -> str:
        """Type a line at the prompt; wait for the next empty prompt; return what was printed
        in between."""
        self.line(text)
        return self.output_after(prompt + text)

    def output_after(self, marker: str) -> str:
        """Wait until the line ``marker`` is followed by an empty prompt; the text in between."""
        def done(screen: str) -> bool:
            return _between(screen, marker) is not None
        return _between(self.wait_for(done), marker) or ""

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)


EMPTY_PROMPT = ">>> Send a message (/? for help)"


def _between(screen: str, marker: str) -> str | None:
    """The text between the last line ``marker`` and the empty prompt that ends the screen."""
    start = screen.rfind(marker + "\n")
    if start < 0 or not screen.endswith(EMPTY_PROMPT):
        return None
    tail = screen[start + len(marker) + 1:]
    return tail[: -len(EMPTY_PROMPT)] if tail.endswith(EMPTY_PROMPT) else None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture
def terminal(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_terminal(*args: str, environ: dict[str, str] | None = None) -> Terminal:
        term = Terminal(["run", *args], environ or env, tmp_path)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


# The chat


def test_chat_commands_settings_and_bye(terminal: Callable[..., Terminal]) -> None:
    term = terminal("smol0")
    term.ready()
    assert term.send("/set parameter num_ctx 4096") == "Set parameter 'num_ctx' to '4096'\n"
    shown = term.send("/show parameters")
    assert re.fullmatch(r"Model defined parameters:\n(  .*\n)*  temperature +0\n(  .*\n)*\n"
                        r"User defined parameters:\n  num_ctx {24}4096\n\n", shown), shown
    info = term.send("/show info")
    assert re.search(r"^  Model\n +architecture +llama *\n +parameters +134\.52M", info, re.M), info
    assert term.send("/show system") == "You are a helpful assistant.\n\n"
    assert "{{- range .Messages }}" in term.send("/show template")
    assert term.send("/show license") == "No license was specified for this model.\n"
    assert "FROM " in term.send("/show modelfile")

    # Unknown commands and bad values: a one-line hint, and the chat goes on.
    for line, hint in [
        ("/frobnicate now", "Unknown command '/frobnicate'. Type /? for help"),
        ("/set colour blue", "Unknown command '/set colour'. Type /? for help"),
        ("/show everything", "Unknown command '/show everything'. Type /? for help"),
        ("/set parameter num_ctx lots", 'Couldn\'t set parameter: "invalid int value [lots]"'),
        ("/set parameter flux 1", 'Couldn\'t set parameter: "unknown parameter \'flux\'"'),
        ("/set format yaml", "Invalid or missing format. For 'json' mode use '/set format json'"),
        ("/load", "Usage:\n  /load <modelname>"),
        ("/save", "Usage:\n  /save <modelname>"),
        ("/set format json", "Set format to 'json' mode."),
        ("/set noformat", "Disabled format."),
        ("/set verbose", "Set 'verbose' mode."),
        ("/set quiet", "Set 'quiet' mode."),
        ("/set nowordwrap", "Set 'nowordwrap' mode."),
        ("/set wordwrap", "Set 'wordwrap' mode."),
    ]:
        assert term.send(line) == hint + "\n", line
    assert term.send("/load no-such-model") == "Loading model 'no-such-model'\nCouldn't find model 'no-such-model'\n"
    assert "/? shortcuts    Help for keyboard shortcuts" in term.send("/?")
    assert "/set parameter ...     Set a parameter" in term.send("/? set")
    assert "/set parameter num_ctx <int>" in term.send("/set parameter")
    think = term.send("/set think")
    assert 'warning: model "smol0" does not support thinking output' in think, think
    term.line("/bye")
    screen = term.wait_for("[corral exited 0]")
    assert "Traceback" not in screen


def test_multiline_message_and_clear(terminal: Callable[..., Terminal], api: httpx.Client) -> None:
    term = terminal("smol0")
    term.ready()
    term.line('"""Name one colour.')
    term.wait_for("... Press Enter to send")  # the continuation prompt: nothing is sent yet
    term.line("Answer in one word.")
    first = [{"role": "user", "content": "Name one colour.\nAnswer in one word.\n"}]
    expected = answer_of(api, first)
    shown = term.send('"""', prompt="... ")
    assert words(shown) == words(expected), shown

    # The second question is asked with the first exchange as context...
    second = answer_of(api, [*first, {"role": "assistant", "content": expected}, {"role": "user", "content": "Why?"}])
    shown = term.send("Why?")
    assert words(shown) == words(second), shown

    # ... and after /clear without it.
    assert term.send("/clear") == "Cleared session context\n"
    alone = answer_of(api, [{"role": "user", "content": "Why is the sky blue?"}])
    shown = term.send("Why is the sky blue?")
    assert words(shown) == words(alone), shown
    term.type("C-d")
    term.wait_for("[corral exited 0]")


def test_set_system_and_wrapping_to_the_terminal(terminal: Callable[..., Terminal], api: httpx.Client) -> None:
    term = terminal("smol0")
    term.ready()
    assert term.send("/set system You are a pirate. Answer at length.") == "Set system message.\n"
    term.send("/set parameter num_predict 80")
    expected = answer_of(api, [{"role": "system", "content": "You are a pirate. Answer at length."},
                               {"role": "user", "content": "Describe the sea."}], num_predict=80)
    shown = term.send("Describe the sea.")
    assert words(shown) == words(expected), shown
    lines = [line for line in shown.splitlines() if line]
    assert len(lines) >= 2 and all(len(line) <= 95 for line in lines), shown  # wrapped at width - 5
    for upper, lower in itertools.pairwise(lines):  # no word cut in two at a wrap
        if len(upper) > 80 and lower[:1].isalpha():
            assert f"{upper.split()[-1]} {lower.split()[0]}" in words(expected)
    assert term.send("/show system") == "You are a pirate. Answer at length.\n\n"
    assert term.send("/set verbose") == "Set 'verbose' mode.\n"
    timed = term.send("Thanks.")
    assert re.search(r"\n\ntotal duration: +\S+\n(.*\n)*eval rate: +[\d.]+ tokens/s\n$", timed), timed
    term.line("/bye")
    term.wait_for("[corral exited 0]")


def test_ctrl_c_stops_an_answer_and_keeps_the_chat(terminal: Callable[..., Terminal]) -> None:
    term = terminal("smol0")
    term.ready()
    term.send("/set parameter num_predict 100000")
    term.send("/set parameter temperature 1")
    question = "Tell me a very long story about a dragon."
    term.line(question)
    # Some words of the answer, then Ctrl+C: the prompt comes back.
    marker = f">>> {question}\n"
    term.wait_for(lambda screen: marker in screen and len(screen[screen.rindex(marker):].split()) >= 10)
    term.type("C-c")
    term.output_after(">>> " + question)
    # Ctrl+C on an empty line only reminds how to leave.
    term.type("C-c")
    term.wait_for("Use Ctrl + d or /bye to exit.")
    assert term.send("/show system") == "You are a helpful assistant.\n\n"
    term.type("C-d")
    screen = term.wait_for("[corral exited 0]")
    assert "Traceback" not in screen


def test_history_is_kept_between_runs(terminal: Callable[..., Terminal], env: dict[str, str]) -> None:
    term = terminal("smol0")
    term.ready()
    term.send("/show license")
    term.line("/bye")
    term.wait_for("[corral exited 0]")
    assert "/show license" in (Path(env["HOME"]) / ".corral" / "history").read_text()

    again = terminal("smol0")
    again.ready()
    again.type("Up", "Up")  # /bye, then the line before it
    again.wait_for(lambda screen: screen.endswith(">>> /show license"))
    again.type("Enter")
    assert again.output_after(">>> /show license") == "No license was specified for this model.\n"
    again.line("/bye")
    again.wait_for("[corral exited 0]")


# One-shot and piped forms


def test_one_shot_prompt_prints_the_answer(env: dict[str, str], api: httpx.Client) -> None:
    expected = generated(api, "Name a fruit.")
    result = run_corral("run", "smol0", "Name a fruit.", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n\n"
    assert "\x1b" not in result.stdout + result.stderr  # a pipe gets no colours and no spinner
    assert result.stderr == ""


def test_stdin_comes_before_the_prompt_arguments(env: dict[str, str], api: httpx.Client) -> None:
    expected = generated(api, "Say hello\n in French")
    result = run_corral("run", "smol0", "--verbose", "in", "French", input="Say hello\n", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n\n"
    assert re.search(r"^total duration: +\d", result.stderr, re.M), result.stderr
    assert re.search(r"^eval count: +\d+ token\(s\)\neval duration: +[\d.]+m?s\neval rate: +[\d.]+ tokens/s$",
                     result.stderr, re.M), result.stderr


def test_thinking_is_shown_hidden_or_off(env: dict[str, str], api: httpx.Client) -> None:
    thinking = generated(api, "Why is the sky blue?", "smol-think", think=True)
    assert thinking
    # A model that can think thinks by default; a pipe gets the plain markers.
    result = run_corral("run", "smol-think", "Why is the sky blue?", env=env, timeout=300)
    assert (result.returncode, result.stdout) == (0, "Thinking...\n" + thinking + "\n\n"), result.stderr
    hidden = run_corral("run", "smol-think", "--hidethinking", "Why is the sky blue?", env=env, timeout=300)
    assert (hidden.returncode, hidden.stdout) == (0, "\n\n"), hidden.stderr
    plain = generated(api, "Why is the sky blue?", "smol-think", think=False)
    off = run_corral("run", "smol-think", "--think=false", "Why is the sky blue?", env=env, timeout=300)
    assert (off.returncode, off.stdout) == (0, plain + "\n\n"), off.stderr


def test_run_errors(env: dict[str, str]) -> None:
    for args, message in [
        (("smol0", "--think=loudly", "hi"), 'Error: invalid value for --think: "loudly" '
                                               "(must be true, false, high, medium, low, or max)"),
        (("smol0", "--keepalive", "5", "hi"), 'Error: time: missing unit in duration "5"'),
        (("smol0", "--format", "xml", "hi"), 'Error: invalid value for --format: "xml" (use json or a JSON schema)'),
        (("smol0", "--think", "hi"), 'Error: "smol0" does not support thinking'),
    ]:
        result = run_corral("run", *args, env=env)
        assert (result.returncode, result.stderr.strip()) == (1, message), result.stderr
    result = run_corral("run", "no-such-model", "hi", env=env, timeout=120)
    assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_run_against_a_remote_host_that_does_not_answer(clean_env: dict[str, str]) -> None:
    result = run_corral("run", "smol0", "hi", env={**clean_env, "OLLAMA_HOST": "http://192.0.2.1:9"})
    assert result.returncode == 1
    assert result.stderr.startswith("Error: could not connect to corral server at http://192.0.2.1:9"), result.stderr


# A model the server does not have is pulled first


@pytest.fixture
def registry(tmp_path: Path, smollm2_gguf: Path) -> Iterator[Any]:
    from registry_support import publish_smollm2

    registry, _manifest = publish_smollm2(tmp_path, smollm2_gguf)
    yield registry
    registry.stop()


@pytest.fixture
def empty_server_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user's environment whose OLLAMA_HOST is a server with an empty store."""
    from registry_support import corral_env

    env = corral_env(clean_environ(tmp_path / "home"), tmp_path / "empty-models")
    with running_server(env) as url:
        yield {**env, "OLLAMA_HOST": url.removeprefix("http://")}


def test_run_pulls_a_missing_model_then_answers(empty_server_env: dict[str, str], registry: Any) -> None:
    name = f"{registry.host}/library/smol"
    result = run_corral("run", "--insecure", name, "Say hi.", env=empty_server_env, timeout=300)
    assert result.returncode == 0, result.stderr
    progress = result.stderr.splitlines()
    assert progress[0] == "pulling manifest" and progress[-1] == "success", result.stderr
    assert result.stdout.strip() and result.stdout.endswith("\n\n")  # the answer, on stdout alone
    assert run_corral("list", env=empty_server_env).stdout.count(name) == 1

    missing = run_corral("run", "--insecure", f"{registry.host}/library/nothing", "hi", env=empty_server_env,
                         timeout=120)
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1] == "Error: pull model manifest: file does not exist", missing.stderr


def test_chat_pulls_a_missing_model_with_progress_bars(terminal: Callable[..., Terminal],
                                                       empty_server_env: dict[str, str], registry: Any) -> None:
    term = terminal("--insecure", f"{registry.host}/library/smol", environ=empty_server_env)
    screen = term.ready()
    assert "pulling manifest" in screen and "success" in screen, screen
    assert re.search(r"98\.\d/98\.\d MB", screen), screen  # rich's bar for the model layer
    term.line("/bye")
    term.wait_for("[corral exited 0]")


# /save


def test_save_keeps_the_session_in_a_new_model(terminal: Callable[..., Terminal], env: dict[str, str]) -> None:
    term = terminal("smol0")
    term.ready()
    term.send("/set system You are terse.")
    term.send("/set parameter num_ctx 2048")
    term.send("/set parameter stop END STOP")
    answer = term.send("Hello!")
    assert term.send("/save smol-saved") == "Created new model 'smol-saved'\n"
    assert term.send("/save bad:name:here") == "error: The model name 'bad:name:here' is invalid\n"
    term.line("/bye")
    term.wait_for("[corral exited 0]")

    modelfile = run_corral("show", "smol-saved", "--modelfile", env=env)
    assert modelfile.returncode == 0, modelfile.stderr
    assert "\nSYSTEM You are terse.\n" in modelfile.stdout or '\nSYSTEM """You are terse."""\n' in modelfile.stdout
    assert "\nPARAMETER num_ctx 2048\n" in modelfile.stdout
    assert '\nPARAMETER stop END\nPARAMETER stop STOP\n' in modelfile.stdout or \
        '\nPARAMETER stop "END"\nPARAMETER stop "STOP"\n' in modelfile.stdout, modelfile.stdout
    assert "\nMESSAGE user Hello!\n" in modelfile.stdout or '\nMESSAGE user "Hello!"\n' in modelfile.stdout
    assert "MESSAGE assistant" in modelfile.stdout
    assert "num_ctx" in run_corral("show", "smol-saved", "--parameters", env=env).stdout

    # `corral run` of the saved model replays its conversation before the prompt.
    again = terminal("smol-saved")
    screen = again.ready()
    assert ">>> Hello!\n" in screen and words(answer) in words(screen), screen
    again.line("/bye")
    again.wait_for("[corral exited 0]")


# Embedding models


def test_run_of_an_embedding_model_prints_the_vector(env: dict[str, str], store: Path, api: httpx.Client,
                                                     minilm_folder: Path, tmp_path: Path) -> None:
    import json

    from corral.convert import convert_checkpoint

    gguf = tmp_path / "minilm.gguf"
    convert_checkpoint(minilm_folder, gguf)
    ollama_model(store, ("registry.ollama.ai", "library", "minilm", "latest"), gguf.read_bytes(),
                 family="bert", model_type="22.57M", file_type="F16")
    result = run_corral("run", "minilm", "hello world", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = api.post("/api/embed", json={"model": "minilm", "input": "hello world"}).json()["embeddings"][0]
    assert json.loads(result.stdout) == pytest.approx(expected, abs=1e-6) and len(expected) == 384
    short = run_corral("run", "minilm", "--dimensions", "8", "hello world", env=env, timeout=300)
    assert len(json.loads(short.stdout)) == 8, short.stderr
    empty = run_corral("run", "minilm", env=env, input="", timeout=300)
    assert (empty.returncode, empty.stderr) == (
        1, 'Error: embedding models require input text. Usage: corral run minilm "your text here"\n')


# Pieces that match Ollama's Go exactly


def test_durations_print_as_go_prints_them() -> None:
    from corral.plugins.cli.render import go_duration

    assert [go_duration(ns) for ns in (0, 999, 1500, 500_000, 12_345_678, 1_500_000_000, 61_000_000_000,
                                       3_661_500_000_000, 3_600_000_000_000)] == \
        ["0s", "999ns", "1.5µs", "500µs", "12.345678ms", "1.5s", "1m1s", "1h1m1.5s", "1h0m0s"]


def test_parameters_are_typed_as_ollama_types_them() -> None:
    from corral.plugins.cli.repl import ParameterError, parse_parameter

    assert parse_parameter("num_ctx", ["4096"]) == 4096
    assert parse_parameter("temperature", ["0.5"]) == 0.5
    assert parse_parameter("use_mmap", ["F"]) is False
    assert parse_parameter("stop", ["<|im_end|>", "###"]) == ["<|im_end|>", "###"]
    for name, values, message in [("num_ctx", ["4k"], "invalid int value [4k]"),
                                  ("top_p", ["high"], "invalid float value [high]"),
                                  ("use_mmap", ["yes"], "invalid bool value [yes]"),
                                  ("colour", ["red"], "unknown parameter 'colour'")]:
        with pytest.raises(ParameterError, match=re.escape(message)):
            parse_parameter(name, values)
