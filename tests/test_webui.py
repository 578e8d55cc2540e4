"""The web UI, driven in a real browser (Debian's chromium through Playwright) against a real
``corral serve`` with the SmolLM2 model. Screenshots of each state go to
``$CORRAL_TEST_ARTIFACTS/webui`` (default ``test-artifacts/webui`` in the repo, ignored by git)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollama_store import ollama_model
from servers import SMOL_PARAMS, SMOL_TEMPLATE, free_port, running_server, store_with_smollm2
from support import REPO, clean_environ

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("CORRAL_TEST_ARTIFACTS") or REPO / "test-artifacts") / "webui"
LONG = 120_000  # milliseconds: a loaded 2-core machine can be slow to load and answer
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = (f"the web UI tests need Chromium at {CHROMIUM}: install Debian's package "
                   "(apt-get install chromium) or set CORRAL_CHROMIUM")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui_env(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> dict[str, str]:
    root = tmp_path_factory.mktemp("webui")
    # Answers of a few seconds at most; 400 tokens still leave Stop time to act.
    store = store_with_smollm2(root / "models", smollm2_gguf, params={**SMOL_PARAMS, "num_predict": 400})
    return {**clean_environ(root / "home"), "OLLAMA_MODELS": str(store)}


@pytest.fixture(scope="module")
def server(ui_env: dict[str, str]) -> Iterator[str]:
    with running_server(ui_env) as url:
        yield url


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=120) as client:
        yield client


def new_page(browser: Any, url: str, **context: Any) -> Any:
    context = browser.new_context(viewport=context.pop("viewport", DESKTOP), **context)
    page = context.new_page()
    page.set_default_timeout(LONG)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.goto(f"{url}/ui/")
    page.wait_for_selector("html[data-ready='true']")
    return page


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    page = new_page(browser, server)
    yield page
    assert page.errors == [], "the page threw JavaScript errors"
    page.context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_models(page: Any, *names: str) -> None:
    for name in names:
        page.wait_for_selector(f"#model-select option[value='{name}']", state="attached")


def send(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_for_answer(page: Any, count: int = 1) -> None:
    """Until ``count`` finished answers are on the page and Send is back."""
    page.wait_for_function(
        "n => document.querySelectorAll('.message.assistant:not(.streaming)').length >= n"
        " && !document.getElementById('send').hidden", arg=count)


def texts(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


WATCH_STREAMING = """() => {
  window.partials = [];
  new MutationObserver(() => {
    const content = document.querySelector('.message.assistant.streaming .content');
    if (content && !content.querySelector('.thinking')) window.partials.push(content.textContent.length);
  }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
}"""


# --- the page, with a browser -----------------------------------------------------------------


def test_the_model_list_loads_and_an_answer_streams(page: Any) -> None:
    wait_for_models(page, "smol:latest")
    assert page.input_value("#model-select") == "smol:latest"
    shot(page, "01-empty-page")

    page.evaluate(WATCH_STREAMING)
    send(page, "Write three sentences about the sea.")
    page.wait_for_selector(".message.assistant.streaming")
    assert page.is_visible("#stop") and not page.is_visible("#send")
    wait_for_answer(page)

    answer = texts(page, ".message.assistant .content")[0]
    assert answer, "the answer is empty"
    partials = [length for length in page.evaluate("window.partials") if 0 < length]
    assert len(set(partials)) >= 2, f"the answer did not arrive in pieces: {partials}"
    assert texts(page, ".message.user .content") == ["Write three sentences about the sea."]
    assert page.input_value("#prompt") == ""
    # the conversation is listed, titled by its first message
    assert texts(page, ".conversation-title") == ["Write three sentences about the sea."]
    shot(page, "02-answer")


def test_copy_and_regenerate(page: Any) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    wait_for_models(page, "smol:latest")
    send(page, "Say hello.")
    wait_for_answer(page)
    first = texts(page, ".message.assistant .content")[0]

    page.click(".message.assistant .actions button:has-text('Copy')")
    page.wait_for_selector(".message.assistant .actions button:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == first

    page.click(".message.assistant .actions button:has-text('Regenerate')")
    page.wait_for_selector("#stop:visible, .message.assistant:not(.streaming)")
    wait_for_answer(page)
    assert page.locator(".message.assistant").count() == 1
    assert page.locator(".message.user").count() == 1
    stored = page.evaluate("JSON.parse(localStorage.getItem('corral.conversations'))")
    assert [m["role"] for m in stored[0]["messages"]] == ["user", "assistant"]


def test_stop_works_mid_answer(page: Any, api: httpx.Client) -> None:
    wait_for_models(page, "smol:latest")
    send(page, "Count from 1 to 1000, writing every number in words, one per line.")
    page.wait_for_function(
        "() => (document.querySelector('.message.assistant.streaming .content')?.textContent || '').length > 40")
    page.click("#stop")
    page.wait_for_selector(".message.assistant .note:has-text('stopped')")
    assert page.is_visible("#send") and not page.is_visible("#stop")
    stopped = texts(page, ".message.assistant .content")[0]
    assert stopped
    time.sleep(1.5)
    assert texts(page, ".message.assistant .content")[0] == stopped, "the answer kept growing after Stop"
    shot(page, "03-stopped")
    # the server is still fine and the page can go on
    assert api.get("/api/tags").status_code == 200
    send(page, "Say hi.")
    wait_for_answer(page, 2)


def test_a_second_conversation_keeps_the_first(page: Any, server: str, browser: Any) -> None:
    wait_for_models(page, "smol:latest")
    send(page, "My name is Ada. Greet me.")
    wait_for_answer(page)
    first_answer = texts(page, ".message.assistant .content")[0]

    page.click("#new-chat")
    assert page.locator(".message").count() == 0
    send(page, "What is two plus two?")
    wait_for_answer(page)
    assert texts(page, ".message.user .content") == ["What is two plus two?"]
    assert texts(page, ".conversation-title") == ["What is two plus two?", "My name is Ada. Greet me."]

    page.click(".conversation-open:has-text('My name is Ada')")
    assert texts(page, ".message.user .content") == ["My name is Ada. Greet me."]
    assert texts(page, ".message.assistant .content") == [first_answer]
    shot(page, "04-two-conversations")

    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    assert texts(page, ".conversation-title") == ["What is two plus two?", "My name is Ada. Greet me."]
    assert texts(page, ".message.user .content") == ["My name is Ada. Greet me."]


def test_an_unknown_model_is_explained_and_the_message_kept(page: Any, api: httpx.Client) -> None:
    assert api.post("/api/copy", json={"source": "smol", "destination": "ghost"}).status_code == 200
    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    wait_for_models(page, "ghost:latest")
    page.select_option("#model-select", "ghost:latest")
    # another client deletes the model while the page is open
    assert api.request("DELETE", "/api/delete", json={"model": "ghost"}).status_code == 200

    send(page, "Are you there?")
    error = page.wait_for_selector(".message.error")
    assert 'The model "ghost:latest" is not installed' in error.inner_text()
    assert page.input_value("#prompt") == "Are you there?"
    assert page.locator(".message.user").count() == 0
    shot(page, "05-unknown-model")


def test_a_model_that_fails_to_load_is_explained(page: Any, api: httpx.Client, ui_env: dict[str, str],
                                                  smollm2_gguf: Path) -> None:
    # SmolLM2 cut short: its header reads, its weights are missing
    ollama_model(Path(ui_env["OLLAMA_MODELS"]), ("registry.ollama.ai", "library", "broken", "latest"),
                 smollm2_gguf.read_bytes()[:2_000_000], template=SMOL_TEMPLATE)
    try:
        page.reload()
        page.wait_for_selector("html[data-ready='true']")
        wait_for_models(page, "broken:latest")
        page.select_option("#model-select", "broken:latest")
        send(page, "Tell me a joke.")
        error = page.wait_for_selector(".message.error")
        assert error.inner_text().startswith('The model "broken:latest" could not be loaded.'), error.inner_text()
        assert page.input_value("#prompt") == "Tell me a joke."
        shot(page, "06-load-failure")
    finally:
        api.request("DELETE", "/api/delete", json={"model": "broken"})


def test_a_stopped_server_is_explained_and_the_message_kept(browser: Any, ui_env: dict[str, str]) -> None:
    with running_server(ui_env) as url:
        page = new_page(browser, url)
        wait_for_models(page, "smol:latest")
    send(page, "Hello?")
    error = page.wait_for_selector(".message.error")
    assert "Cannot reach the corral server" in error.inner_text()
    assert page.input_value("#prompt") == "Hello?"
    assert texts(page, ".conversation-title") == ["New chat"], "the failed message still titles the conversation"
    shot(page, "06b-server-stopped")
    page.context.close()


def test_models_panel_lists_running_models_and_deletes(page: Any, api: httpx.Client) -> None:
    assert api.post("/api/copy", json={"source": "smol", "destination": "spare"}).status_code == 200
    assert api.post("/api/generate", json={"model": "smol", "prompt": "Hi", "stream": False,
                                           "options": {"num_predict": 2}}).status_code == 200
    page.click("#open-models")
    page.wait_for_selector("#installed .model-name:has-text('spare:latest')")
    page.wait_for_selector("#running .model-name:has-text('smol:latest')")
    shot(page, "07-models")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#installed .model-row:has-text('spare:latest') button:has-text('Delete')")
    page.wait_for_selector("#installed .model-name:has-text('spare:latest')", state="detached")
    assert "spare:latest" not in [m["name"] for m in api.get("/api/tags").json()["models"]]
    assert "smol:latest" in texts(page, "#installed .model-name")


def test_pulling_shows_progress_and_a_missing_model_is_explained(browser: Any, tmp_path: Path,
                                                                 smollm2_gguf: Path) -> None:
    from fake_registry import Fault
    from registry_support import model_layer, publish_smollm2

    registry, manifest = publish_smollm2(tmp_path, smollm2_gguf)
    # a pause mid-download, so that the page is seen part way
    registry.faults.append(Fault(kind="stall", after=5_000_000, seconds=4, digest=model_layer(manifest)["digest"]))
    name = f"{registry.host}/library/smol"
    env = {**clean_environ(tmp_path / "home"), "OLLAMA_MODELS": str(tmp_path / "empty-store")}
    try:
        with running_server(env) as url:
            page = new_page(browser, url)
            page.click("#open-models")
            page.fill("#pull-name", name)
            page.check("#pull-insecure")
            page.click("#pull-start")
            page.wait_for_function("() => { const bar = document.getElementById('pull-bar');"
                                   " return bar.position > 0 && bar.position < 1; }")
            assert "Downloading" in page.inner_text("#pull-status")
            shot(page, "11-pulling")
            page.wait_for_selector("#pull-status:has-text('is ready')")
            assert page.evaluate("document.getElementById('pull-bar').position") == 1
            page.wait_for_selector(f"#installed .model-name:has-text('{name}:latest')")
            assert page.input_value("#pull-name") == ""
            assert page.input_value("#model-select") == f"{name}:latest"

            page.fill("#pull-name", f"{registry.host}/library/nothing")
            page.click("#pull-start")
            page.wait_for_selector("#pull-progress.failed")
            assert "The registry has no model" in page.inner_text("#pull-status")
            shot(page, "12-pull-missing")
            assert page.errors == []
            page.context.close()
    finally:
        registry.stop()


def test_conversation_settings_reach_the_server(page: Any) -> None:
    wait_for_models(page, "smol:latest")
    page.click("#open-settings")
    page.fill("#system-prompt", "Answer only with the word PINEAPPLE.")
    page.fill("#temperature", "0")
    page.fill("#num-ctx", "1024")
    page.click("#settings-dialog button:has-text('Done')")

    with page.expect_request("**/api/chat") as request:
        send(page, "What fruit?")
    body = json.loads(request.value.post_data)
    assert body["messages"][0] == {"role": "system", "content": "Answer only with the word PINEAPPLE."}
    assert body["options"] == {"temperature": 0, "num_ctx": 1024}
    wait_for_answer(page)


def test_markdown_is_rendered_highlighted_and_sanitized(browser: Any, server: str) -> None:
    text = ("# Title\n\nSome **bold** text and `code`.\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
            "<img src=x onerror=\"window.pwned=1\"> <script>window.pwned=2</script>\n\n"
            "[a link](javascript:window.pwned=3)")
    conversation = {"id": "c1", "title": "Markdown", "model": "smol:latest", "system": "", "temperature": None,
                    "numCtx": None, "updated": 1, "messages": [{"role": "user", "content": "Show me"},
                                                               {"role": "assistant", "content": text}]}
    context = browser.new_context(viewport=DESKTOP)
    context.add_init_script(
        f"localStorage.setItem('corral.conversations', {json.dumps(json.dumps([conversation]))});")
    page = context.new_page()
    page.goto(f"{server}/ui/")
    page.wait_for_selector("html[data-ready='true']")
    content = page.locator(".message.assistant .content")
    assert content.locator("h1").inner_text() == "Title"
    assert content.locator("strong").inner_text() == "bold"
    assert content.locator("pre code .hljs-keyword").first.inner_text() == "def"
    assert content.locator("img, script").count() == 0
    assert '<img src=x onerror="window.pwned=1">' in content.inner_text()
    assert content.locator("a[href^='javascript' i]").count() == 0
    assert page.evaluate("window.pwned") is None
    shot(page, "08-markdown")
    context.close()


def test_dark_and_light_themes_on_a_phone(browser: Any, server: str) -> None:
    page = new_page(browser, server, viewport=PHONE, color_scheme="dark", is_mobile=True, has_touch=True)
    wait_for_models(page, "smol:latest")
    background = "getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(background) == "rgb(23, 25, 28)"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert not page.is_visible("#sidebar .conversation-open") and page.is_visible("#open-sidebar")
    send(page, "Hi!")
    wait_for_answer(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "09-phone-dark")

    page.click("#theme-toggle")
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    assert page.evaluate(background) == "rgb(255, 255, 255)", "the chosen theme is not kept"
    page.click("#open-sidebar")
    page.wait_for_selector(".conversation-open:has-text('Hi!')")
    page.wait_for_function("getComputedStyle(document.getElementById('sidebar')).transform === 'none'")
    shot(page, "10-phone-light-list")
    assert page.errors == []
    page.context.close()


# --- the server side, without a browser -------------------------------------------------------


def test_root_still_says_ollama_is_running_and_ui_files_stay_inside(api: httpx.Client) -> None:
    assert api.get("/").text == "Ollama is running"
    assert api.get("/ui").headers["location"].endswith("/ui/")
    page = api.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert api.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    for path in ("/ui/../pyproject.toml", "/ui/%2e%2e/__init__.py", "/ui/%2e%2e/blueprint.py", "/ui/missing.js"):
        assert api.get(path).status_code == 404, path


def test_webui_port_serves_the_page_and_the_log_names_both_addresses(tmp_path: Path) -> None:
    api_port, ui_port = free_port(), free_port()
    env = {**clean_environ(tmp_path / "home"), "OLLAMA_MODELS": str(tmp_path / "models"),
           "OLLAMA_HOST": f"127.0.0.1:{api_port}", "CORRAL_WEBUI_PORT": str(ui_port)}
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"],
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "web UI also at" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with httpx.Client(timeout=120) as client:
            for _ in range(100):
                try:
                    root = client.get(f"http://127.0.0.1:{ui_port}/")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert root.status_code == 302 and root.headers["location"] == "/ui/"
            assert client.get(f"http://127.0.0.1:{ui_port}/ui/").status_code == 200
            assert client.get(f"http://127.0.0.1:{ui_port}/api/tags").json() == {"models": []}
            assert client.get(f"http://127.0.0.1:{api_port}/").text == "Ollama is running"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    text = log.read_text()
    assert f"web UI at http://127.0.0.1:{api_port}/ui/" in text
    assert f"web UI also at http://127.0.0.1:{ui_port}/" in text


def test_a_bad_webui_port_is_a_config_error(tmp_path: Path) -> None:
    from support import run_corral

    env = {**clean_environ(tmp_path / "home"), "CORRAL_WEBUI_PORT": "70000"}
    result = run_corral("serve", env=env)
    assert result.returncode != 0
    assert "CORRAL_WEBUI_PORT" in result.stderr and "70000" in result.stderr


# --- a server with API keys -------------------------------------------------------------------

FULL_KEY = "webui-full-key-0123456789"
INFERENCE_KEY = "webui-inference-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server(ui_env: dict[str, str]) -> Iterator[str]:
    with running_server({**ui_env, "CORRAL_API_KEYS": FULL_KEY, "CORRAL_INFERENCE_KEYS": INFERENCE_KEY}) as url:
        yield url


def enter_key(page: Any, key: str, message: str) -> None:
    page.wait_for_selector("#key-dialog[open]")
    assert page.inner_text("#key-message") == message
    page.fill("#key-input", key)
    page.press("#key-input", "Enter")


def test_the_page_asks_for_a_key_and_keeps_it_for_the_tab(browser: Any, keyed_server: str) -> None:
    page = new_page(browser, keyed_server)
    shot(page, "12-key-asked")
    enter_key(page, "not-the-key-0123456789", "This server needs an API key. Ask its operator for one.")
    enter_key(page, INFERENCE_KEY, "The server did not accept that API key. Check it and enter it again.")
    wait_for_models(page, "smol:latest")
    assert not page.is_visible("#key-dialog")
    send(page, "Say hello.")
    wait_for_answer(page)
    assert texts(page, ".message.assistant .content")[0]
    assert page.evaluate("sessionStorage.getItem('corral.apiKey')") == INFERENCE_KEY
    assert INFERENCE_KEY not in json.dumps(page.evaluate("Object.entries(localStorage)"))

    # A reload keeps it; an inference key may not delete, and the page says why.
    page.reload()
    wait_for_models(page, "smol:latest")
    assert not page.is_visible("#key-dialog")
    page.click("#open-models")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#installed .model-row:has-text('smol:latest') button:has-text('Delete')")
    refusal = page.wait_for_selector("#models-error:not([hidden])")
    assert refusal.inner_text() == ("Your API key may only chat with models and list them: pulling and "
                                    "deleting need a full key.")
    assert "smol:latest" in texts(page, "#installed .model-name")
    shot(page, "13-key-forbidden")
    assert page.errors == []
    page.context.close()

    # Another browser session starts without it.
    other = new_page(browser, keyed_server)
    other.wait_for_selector("#key-dialog[open]")
    other.click("#key-dialog button:has-text('Cancel')")
    banner = other.wait_for_selector("#banner:not([hidden])")
    assert "This server needs an API key" in banner.inner_text()
    assert other.errors == []
    other.context.close()
