"""API keys: full and inference scopes, refusals in Ollama's and OpenAI's shapes, keyless binds,
third-party routes, CORS, keys files, secrecy, and kept-alive connections after refusals."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import hookimpl
from corral.errors import ConfigError
from corral.kernel import Kernel
from corral.plugins.server.api_keys import INFERENCE_ONLY, INVALID, MISSING, KeyRing, load_keys
from corral.plugins.server.app import create_app
from corral.sdk.http import FULL, INFERENCE, Bind, access
from corral.settings import Settings
from support import run_corral

FULL_KEY = "full-key-0123456789abcdef"
INFERENCE_KEY = "inference-key-0123456789"
WRONG_KEY = "wrong-key-0123456789abcdef"
KEYS = {"CORRAL_API_KEYS": FULL_KEY, "CORRAL_INFERENCE_KEYS": INFERENCE_KEY}
BASE = "http://127.0.0.1:11434"


class ExtraRoutes:
    """A third-party plugin: one view with no declaration, one declared for inference keys, one that
    shows the headers it got, and a bind served without a key."""

    @hookimpl
    def register_blueprints(self, kernel):
        from quart import Blueprint, request

        blueprint = Blueprint("extra", __name__)

        @blueprint.route("/extra/admin", methods=["POST"])
        async def admin():
            return "admin"

        @blueprint.route("/extra/run")
        @access(INFERENCE)
        async def run():
            return "run"

        @blueprint.route("/extra/headers")
        @access(INFERENCE)
        async def headers():
            return {name.lower(): value for name, value in request.headers.items()}

        return [blueprint]

    @hookimpl
    def register_binds(self, kernel):
        return [Bind("127.0.0.1:9090", requires_key=False)]


def app_for(tmp_path: Path, *plugins: object, **env: str) -> Any:
    environ = {"HOME": str(tmp_path / "home"), "OLLAMA_MODELS": str(tmp_path / "models"), **env}
    return create_app(Kernel.create(environ, plugins=plugins, load_entry_points=False))


def ask(app: Any, method: str, path: str, key: str | None = None, *, base: str = BASE,
        headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client:
            return await client.request(method, path, headers=sent, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return app_for(tmp_path, ExtraRoutes(), **KEYS)


INFERENCE_ROUTES = [
    ("POST", "/api/generate", {"model": "missing"}), ("POST", "/api/chat", {"model": "missing"}),
    ("POST", "/api/embed", {"model": "missing", "input": "x"}),
    ("POST", "/api/embeddings", {"model": "missing", "prompt": "x"}), ("GET", "/api/tags", None),
    ("POST", "/api/show", {"model": "missing"}), ("GET", "/api/ps", None), ("GET", "/api/version", None),
    ("GET", "/v1/models", None), ("POST", "/v1/chat/completions", {"model": "missing", "messages": []}),
    ("POST", "/v1/completions", {"model": "missing", "prompt": "x"}),
    ("POST", "/v1/embeddings", {"model": "missing", "input": "x"}), ("GET", "/v1/models/missing", None),
]
STORE_ROUTES = [
    ("POST", "/api/pull", {"model": "not a name"}), ("POST", "/api/push", {"model": "missing"}),
    ("POST", "/api/create", {"model": "missing"}), ("POST", "/api/copy", {"source": "a", "destination": "b"}),
    ("DELETE", "/api/delete", {"model": "missing"}), ("HEAD", "/api/blobs/sha256:" + "0" * 64, None),
    ("POST", "/api/blobs/sha256:" + "0" * 64, None),
]


def test_without_keys_nothing_asks_for_one(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    assert ask(app, "GET", "/api/tags").json() == {"models": []}
    assert ask(app, "DELETE", "/api/delete", json={"model": "missing"}).status_code == 404


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_health_check_needs_no_key(app: Any, method: str) -> None:
    response = ask(app, method, "/")
    assert response.status_code == 200
    assert method == "HEAD" or response.text == "Ollama is running"


@pytest.mark.parametrize(("method", "path", "body"), INFERENCE_ROUTES + STORE_ROUTES)
def test_every_route_refuses_a_missing_or_wrong_key_with_401(app: Any, method: str, path: str, body: Any) -> None:
    for key, message in ((None, MISSING), (WRONG_KEY, INVALID), ("", MISSING)):
        response = ask(app, method, path, key, json=body)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        if method == "HEAD":
            continue
        if path.startswith("/v1/"):
            assert response.json() == {"error": {"message": message, "type": "invalid_request_error",
                                                 "param": None, "code": "invalid_api_key"}}
        else:
            assert response.json() == {"error": message}


@pytest.mark.parametrize(("method", "path", "body"), INFERENCE_ROUTES)
def test_inference_keys_reach_inference_routes(app: Any, method: str, path: str, body: Any) -> None:
    for key in (INFERENCE_KEY, FULL_KEY):
        response = ask(app, method, path, key, json=body)
        assert response.status_code not in (401, 403), response.text  # 200, or the route's own 4xx


@pytest.mark.parametrize(("method", "path", "body"), STORE_ROUTES)
def test_store_changes_need_a_full_key(app: Any, method: str, path: str, body: Any) -> None:
    response = ask(app, method, path, INFERENCE_KEY, json=body)
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    if method != "HEAD":
        assert response.json() == {"error": INFERENCE_ONLY}
    assert ask(app, method, path, FULL_KEY, json=body).status_code not in (401, 403)


def test_a_full_key_changes_the_store(tmp_path: Path) -> None:
    app = app_for(tmp_path, **KEYS)
    digest = "sha256:" + hashlib.sha256(b"blob").hexdigest()
    assert ask(app, "POST", f"/api/blobs/{digest}", INFERENCE_KEY, content=b"blob").status_code == 403
    assert ask(app, "POST", f"/api/blobs/{digest}", FULL_KEY, content=b"blob").status_code == 201
    assert ask(app, "HEAD", f"/api/blobs/{digest}", FULL_KEY).status_code == 200


def test_v1_answers_403_in_openais_shape(app: Any) -> None:
    # No /v1 route changes the store today; a path no view serves needs a full key.
    response = ask(app, "POST", "/v1/files", INFERENCE_KEY)
    assert response.status_code == 403
    assert response.json() == {"error": {"message": INFERENCE_ONLY, "type": "permission_error", "param": None,
                                         "code": "insufficient_permissions"}}


def test_unknown_paths_need_a_full_key(app: Any) -> None:
    assert ask(app, "GET", "/nowhere").status_code == 401
    assert ask(app, "GET", "/nowhere", INFERENCE_KEY).status_code == 403
    response = ask(app, "GET", "/nowhere", FULL_KEY)
    assert (response.status_code, response.text) == (404, "404 page not found")
    assert ask(app, "GET", "/api/generate", FULL_KEY).status_code == 405


def test_third_party_routes_need_a_full_key_unless_declared(app: Any) -> None:
    assert ask(app, "POST", "/extra/admin", INFERENCE_KEY).status_code == 403
    assert ask(app, "POST", "/extra/admin", FULL_KEY).text == "admin"
    assert ask(app, "GET", "/extra/run").status_code == 401
    assert ask(app, "GET", "/extra/run", INFERENCE_KEY).text == "run"


def test_the_key_never_reaches_the_app(app: Any) -> None:
    headers = ask(app, "GET", "/extra/headers", FULL_KEY, headers={"X-Other": "kept"}).json()
    assert "authorization" not in headers and headers["x-other"] == "kept"


def test_the_scheme_is_case_insensitive_and_other_schemes_are_refused(app: Any) -> None:
    assert ask(app, "GET", "/api/tags", headers={"Authorization": f"bearer {FULL_KEY}"}).status_code == 200
    basic = ask(app, "GET", "/api/tags", headers={"Authorization": f"Basic {FULL_KEY}"})
    assert (basic.status_code, basic.json()) == (401, {"error": MISSING})


def test_a_keyless_bind_skips_the_check(app: Any) -> None:
    assert ask(app, "GET", "/api/tags", base="http://127.0.0.1:9090").status_code == 200
    assert ask(app, "GET", "/api/tags", base="http://127.0.0.1:3000").status_code == 401


def test_the_web_ui_files_need_no_key(app: Any) -> None:
    for path in ("/ui/", "/ui/app.js", "/ui/api.js", "/ui/style.css"):
        assert ask(app, "GET", path).status_code == 200, path
    assert ask(app, "GET", "/ui").status_code == 301


def test_preflights_need_no_key_and_allow_the_authorization_header(app: Any) -> None:
    origin = "http://localhost:5173"
    preflight = ask(app, "OPTIONS", "/api/chat", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"].split(",")
    # The 401 carries CORS headers, so a page on an allowed origin can read it and ask for a key.
    refused = ask(app, "GET", "/api/tags", headers={"Origin": origin})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == origin
    assert ask(app, "GET", "/api/tags", INFERENCE_KEY, headers={"Origin": origin}).status_code == 200


# -- keys: where they come from ----------------------------------------------------------------


def test_keys_are_compared_by_digest() -> None:
    ring = KeyRing(full=(hashlib.sha256(b"a" * 16).digest(),), inference=(hashlib.sha256(b"b" * 16).digest(),))
    assert ring.grant(b"a" * 16) == FULL and ring.grant(b"b" * 16) == INFERENCE
    assert ring.grant(b"a" * 15) is None and ring.grant(b"") is None


def settings(tmp_path: Path, config: str = "", **env: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(config)
    return Settings.load({"HOME": str(tmp_path), **env}, path)


def test_keys_from_the_config_file_the_environment_and_keys_files(tmp_path: Path) -> None:
    hashed = "sha256:" + hashlib.sha256(b"from-a-file-0123456789").hexdigest().upper()
    (tmp_path / "full.keys").write_text(f"# operators\n\n{hashed}\n  plain-file-key-0123456789  \n")
    (tmp_path / "inference.keys").write_text("inference-file-key-0123456789\n")
    ring = load_keys(settings(
        tmp_path, f'[server]\napi_keys = ["{FULL_KEY}"]\napi_keys_file = "{tmp_path}/full.keys"\n'
                  f'inference_keys_file = "{tmp_path}/inference.keys"\n',
        CORRAL_INFERENCE_KEYS=f"{INFERENCE_KEY}, other-inference-key-0123"))
    assert ring is not None
    for key in (FULL_KEY, "from-a-file-0123456789", "plain-file-key-0123456789"):
        assert ring.grant(key.encode()) == FULL, key
    for key in (INFERENCE_KEY, "other-inference-key-0123", "inference-file-key-0123456789"):
        assert ring.grant(key.encode()) == INFERENCE, key
    assert load_keys(settings(tmp_path)) is None


@pytest.mark.parametrize(("value", "message"), [
    ("short-secret", "CORRAL_API_KEYS: key 1: a key must be at least 16 characters long"),
    (f"{FULL_KEY},with space in-it-0123456", "CORRAL_API_KEYS: key 2: a key may hold only visible ASCII"),
    ("sha256:abc", "CORRAL_API_KEYS: key 1: a hashed key is sha256: followed by 64 hex digits"),
])
def test_bad_keys_are_config_errors_that_never_repeat_the_key(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, CORRAL_API_KEYS=value)
    assert str(caught.value).startswith(message)
    assert "short-secret" not in str(caught.value) and "with space" not in str(caught.value)


def test_a_key_in_the_config_file_may_not_hold_a_comma(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, '[server]\napi_keys = ["has,comma-0123456789"]\n')
    assert str(caught.value) == (f"[server] api_keys in {tmp_path / 'config.toml'}: key 1: a key may hold only "
                                 "visible ASCII characters, no spaces or commas")


def test_bad_keys_files_are_config_errors(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for text, message in (("# only a comment\n", "holds no key"), (f"{FULL_KEY}\nshort-secret\n", "line 2: a key must"),
                          ("x" * (1024 * 1024 + 1), "is larger than")):
        keys.write_text(text)
        with pytest.raises(ConfigError, match=f"server.api_keys_file: {keys}.*{message}") as caught:
            load_keys(settings(tmp_path, CORRAL_API_KEYS_FILE=str(keys)))
        assert "short-secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read .*missing"):
        load_keys(settings(tmp_path, CORRAL_API_KEYS_FILE=str(tmp_path / "missing")))


def test_a_key_in_both_scopes_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both a full key and an inference key") as caught:
        load_keys(settings(tmp_path, CORRAL_API_KEYS=FULL_KEY, CORRAL_INFERENCE_KEYS=FULL_KEY))
    assert FULL_KEY not in str(caught.value)


def test_a_readable_file_of_plain_keys_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = tmp_path / "keys"
    keys.write_text(FULL_KEY + "\n")
    keys.chmod(0o644)
    load_keys(settings(tmp_path, CORRAL_API_KEYS_FILE=str(keys)))
    assert "holds plain keys and other users may read it" in caplog.text
    caplog.clear()
    keys.chmod(0o600)
    load_keys(settings(tmp_path, CORRAL_API_KEYS_FILE=str(keys)))
    assert caplog.text == ""


def test_corral_config_hides_keys_and_names_where_they_come_from(tmp_path: Path, clean_env: dict[str, str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\ninference_keys = ["{INFERENCE_KEY}", "other-inference-key-0123"]\n')
    env = {**clean_env, "CORRAL_CONFIG": str(config), "CORRAL_API_KEYS": FULL_KEY, "CORRAL_API_KEY": FULL_KEY}
    result = run_corral("config", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["settings"]
    assert shown["server.api_keys"] == {"value": "(1 hidden)", "from": "env CORRAL_API_KEYS"}
    assert shown["server.inference_keys"] == {"value": "(2 hidden)", "from": f"config {config}"}
    assert shown["client.api_key"] == {"value": "(hidden)", "from": "env CORRAL_API_KEY"}
    table = run_corral("config", env=env)
    for output in (result.stdout, table.stdout, table.stderr):
        assert FULL_KEY not in output and INFERENCE_KEY not in output


# -- exposure ------------------------------------------------------------------------------------


def test_exposure_warnings(tmp_path: Path) -> None:
    assert settings(tmp_path).exposure_warnings() == ()
    assert settings(tmp_path, OLLAMA_HOST="localhost:8080").exposure_warnings() == ()
    (open_warning,) = settings(tmp_path, OLLAMA_HOST="0.0.0.0").exposure_warnings()
    assert open_warning.startswith("corral listens on 0.0.0.0:11434, which other machines can reach, and no "
                                   "API key is set: anyone who reaches it can run, pull, push, create and "
                                   "delete models. Set server.api_keys (CORRAL_API_KEYS)")
    (clear_warning,) = settings(tmp_path, OLLAMA_HOST="0.0.0.0", CORRAL_API_KEYS=FULL_KEY).exposure_warnings()
    assert "over plain HTTP" in clear_warning and "server.tls_cert" in clear_warning
    assert settings(tmp_path, OLLAMA_HOST="0.0.0.0", CORRAL_API_KEYS=FULL_KEY, CORRAL_TLS_CERT="c",
                    CORRAL_TLS_KEY="k").exposure_warnings() == ()


def test_corral_config_shows_the_exposure_warning(clean_env: dict[str, str]) -> None:
    result = run_corral("config", env={**clean_env, "OLLAMA_HOST": "0.0.0.0:8080"})
    assert result.returncode == 0, result.stderr
    assert "\nWarning: corral listens on 0.0.0.0:8080, which other machines can reach, and no API key" in result.stdout
    assert json.loads(run_corral("config", "--json", env={**clean_env, "OLLAMA_HOST": "0.0.0.0:8080"}).stdout)["warnings"]
    assert "Warning" not in run_corral("config", env=clean_env).stdout


def test_require_keys_refuses_to_start_beyond_loopback_without_a_key(clean_env: dict[str, str]) -> None:
    env = {**clean_env, "OLLAMA_HOST": "0.0.0.0:0", "CORRAL_REQUIRE_KEYS": "1"}
    result = run_corral("serve", env=env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(
        "Error: server.require_keys is on and no API key is set: refusing to listen on 0.0.0.0:0, which other "
        "machines can reach. Set server.api_keys (CORRAL_API_KEYS), or listen on 127.0.0.1")


def test_serve_warns_at_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from corral.plugins.server.serve import check_exposure

    check_exposure(settings(tmp_path, OLLAMA_HOST="0.0.0.0:8080"))
    assert "corral listens on 0.0.0.0:8080, which other machines can reach, and no API key is set" in caplog.text
    caplog.clear()
    check_exposure(settings(tmp_path, OLLAMA_HOST="127.0.0.1:8080", CORRAL_REQUIRE_KEYS="1"))
    assert caplog.text == ""
    with pytest.raises(ConfigError, match="server.require_keys is on and no API key is set"):
        check_exposure(settings(tmp_path, OLLAMA_HOST="0.0.0.0:8080", CORRAL_REQUIRE_KEYS="1"))
    check_exposure(settings(tmp_path, OLLAMA_HOST="0.0.0.0:8080", CORRAL_REQUIRE_KEYS="1", CORRAL_API_KEYS=FULL_KEY))


def test_the_command_line_sends_the_servers_own_key_only_to_this_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.plugins.cli import CliState
    from corral.plugins.cli.client import Client

    config = tmp_path / "config.toml"
    config.write_text(f'[server]\napi_keys = ["sha256:{"0" * 64}", "{FULL_KEY}"]\n')
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    for name in ("CORRAL_API_KEY", "CORRAL_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    for host, key in (("127.0.0.1:11434", FULL_KEY), ("localhost:8080", FULL_KEY), ("10.1.2.3:11434", ""),
                      ("https://models.example.com", "")):
        monkeypatch.setenv("OLLAMA_HOST", host)
        assert Client.for_state(CliState()).api_key == key, host
    monkeypatch.setenv("CORRAL_API_KEY", INFERENCE_KEY)
    assert Client.for_state(CliState()).api_key == INFERENCE_KEY


def test_a_websocket_without_a_key_is_refused_at_the_handshake(app: Any) -> None:
    def handshake(extensions: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        incoming = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/extra/socket", "headers": [(b"host", b"127.0.0.1:11434"), *headers],
                 "server": ("127.0.0.1", 11434), "extensions": extensions, "asgi": {"version": "3.0"},
                 "scheme": "ws", "query_string": b"", "root_path": "", "http_version": "1.1", "subprotocols": []}
        asyncio.run(app(scope, receive, send))
        return sent

    refused = handshake({"websocket.http.response": {}})
    assert [message["type"] for message in refused] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert refused[0]["status"] == 401 and json.loads(refused[1]["body"]) == {"error": MISSING}
    assert handshake({}) == [{"type": "websocket.close", "code": 1008}]
    forbidden = handshake({"websocket.http.response": {}}, ((b"authorization", f"Bearer {INFERENCE_KEY}".encode()),))
    assert forbidden[0]["status"] == 403
