"""Settings: Ollama's variables and defaults, the config file, precedence, and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.durations import FOREVER
from corral.errors import ConfigError
from corral.settings import DEFAULT_ORIGINS, HostSpec, Settings, parse_duration, parse_host, parse_positive_duration
from corral.types import SettingSpec


def load(tmp_path: Path, env: dict[str, str] | None = None, config: str | None = None,
         overrides: dict[str, str] | None = None) -> Settings:
    environ = {"HOME": str(tmp_path)}
    environ.update(env or {})
    path = None
    if config is not None:
        path = tmp_path / "config.toml"
        path.write_text(config)
    return Settings.load(environ, path, overrides)


def test_defaults_are_ollamas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.load({"HOME": str(tmp_path)})
    assert settings.host == HostSpec(scheme="http", host="127.0.0.1", port=11434)
    assert settings.models == tmp_path / ".ollama" / "models"
    assert settings.keep_alive == 300
    assert (settings.num_parallel, settings.max_queue, settings.max_loaded_models) == (1, 512, 1)
    assert settings.context_length == 4096
    assert settings.load_timeout == 300
    assert (settings.debug, settings.noprune, settings.store) == (0, False, "fs")
    assert settings.allowed_origins == DEFAULT_ORIGINS
    assert set(settings.origin_of.values()) == {"default"}


@pytest.mark.parametrize(("value", "url", "bind"), [
    ("", "http://127.0.0.1:11434", "127.0.0.1:11434"),
    ("0.0.0.0", "http://127.0.0.1:11434", "0.0.0.0:11434"),
    (":8080", "http://127.0.0.1:8080", "0.0.0.0:8080"),
    ("1.2.3.4", "http://1.2.3.4:11434", "1.2.3.4:11434"),
    ("example.com", "http://example.com:11434", "example.com:11434"),
    ("example.com:1234", "http://example.com:1234", "example.com:1234"),
    ("http://1.2.3.4", "http://1.2.3.4:80", "1.2.3.4:80"),
    ("https://example.com/ollama", "https://example.com:443/ollama", "example.com:443"),
    ("http://localhost:9999", "http://localhost:9999", "localhost:9999"),
    ("[::1]:11434", "http://[::1]:11434", "[::1]:11434"),
    ("::1", "http://[::1]:11434", "[::1]:11434"),
    ("[::]:5000", "http://[::1]:5000", "[::]:5000"),
    ('"127.0.0.1:7000"', "http://127.0.0.1:7000", "127.0.0.1:7000"),
    ("  ollama.com ", "https://ollama.com:443", "ollama.com:443"),
])
def test_ollama_host(value: str, url: str, bind: str) -> None:
    host = parse_host(value)
    assert (host.url, host.bind) == (url, bind)


def test_ollama_port_overrides_only_the_port(tmp_path: Path) -> None:
    settings = load(tmp_path, {"OLLAMA_HOST": "0.0.0.0:8080", "OLLAMA_PORT": "9090"})
    assert (settings.host.host, settings.host.port) == ("0.0.0.0", 9090)
    assert load(tmp_path, {"OLLAMA_PORT": "11500"}).host.url == "http://127.0.0.1:11500"


def test_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, {
        "OLLAMA_MODELS": str(tmp_path / "models"), "OLLAMA_ORIGINS": "http://a.example, chrome-extension://*",
        "OLLAMA_KEEP_ALIVE": "1h30m", "OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_QUEUE": "10",
        "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_DEBUG": "1",
        "OLLAMA_NOPRUNE": "true",
    })
    assert settings.models == tmp_path / "models"
    assert settings.origins == ("http://a.example", "chrome-extension://*")
    assert settings.allowed_origins[:2] == settings.origins
    assert settings.keep_alive == 5400
    assert (settings.num_parallel, settings.max_queue, settings.max_loaded_models) == (4, 10, 2)
    assert (settings.context_length, settings.debug, settings.noprune) == (8192, 1, True)
    assert settings.origin_of["server.keep_alive"] == "env OLLAMA_KEEP_ALIVE"


@pytest.mark.parametrize(("value", "seconds"), [("0", 0), ("-1", FOREVER), ("-5m", FOREVER), ("600", 600), ("24h", 86400)])
def test_keep_alive_forms(tmp_path: Path, value: str, seconds: float) -> None:
    assert load(tmp_path, {"OLLAMA_KEEP_ALIVE": value}).keep_alive == seconds


@pytest.mark.parametrize(("value", "seconds"), [("5m", 300), ("90", 90), ("1.5s", 1.5), ("0", FOREVER), ("-1s", FOREVER)])
def test_load_timeout_forms_as_ollama_reads_them(tmp_path: Path, value: str, seconds: float) -> None:
    assert load(tmp_path, {"OLLAMA_LOAD_TIMEOUT": value}).load_timeout == seconds


@pytest.mark.parametrize(("value", "seconds"), [("30", 30), ("30s", 30), ('"1.5m"', 90), (0.25, 0.25), (2, 2)])
def test_the_duration_converter_for_plugin_settings(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds
    for bad, message in (("soon", "expected a duration such as 30s or 5m"), ("-1", "must be 0 or more"),
                         (True, "expected a duration")):
        with pytest.raises(ValueError, match=message):
            parse_duration(bad)
    with pytest.raises(ValueError, match="must be more than 0"):
        parse_positive_duration("0s")


@pytest.mark.parametrize(("value", "level"), [("0", 0), ("false", 0), ("1", 1), ("true", 1), ("2", 2)])
def test_debug_levels(tmp_path: Path, value: str, level: int) -> None:
    assert load(tmp_path, {"OLLAMA_DEBUG": value}).debug == level


@pytest.mark.parametrize(("env", "message"), [
    ({"OLLAMA_HOST": ":66000"}, "OLLAMA_HOST=':66000': port out of range 0-65535"),
    ({"OLLAMA_HOST": "1.2.3.4:http"}, "OLLAMA_HOST='1.2.3.4:http': port is not a number"),
    ({"OLLAMA_HOST": "ftp://x"}, "OLLAMA_HOST='ftp://x': unsupported scheme 'ftp'"),
    ({"OLLAMA_PORT": "70000"}, "OLLAMA_PORT='70000': port out of range 0-65535"),
    ({"OLLAMA_PORT": "abc"}, "OLLAMA_PORT='abc': port is not a number"),
    ({"OLLAMA_KEEP_ALIVE": "5 minutes"}, "OLLAMA_KEEP_ALIVE='5 minutes': time: unknown unit \" minutes\" in duration \"5 minutes\""),
    ({"OLLAMA_KEEP_ALIVE": "10x"}, "OLLAMA_KEEP_ALIVE='10x'"),
    ({"OLLAMA_NUM_PARALLEL": "two"}, "OLLAMA_NUM_PARALLEL='two': expected a whole number"),
    ({"OLLAMA_NUM_PARALLEL": "0"}, "OLLAMA_NUM_PARALLEL='0': must be at least 1"),
    ({"OLLAMA_MAX_QUEUE": "-3"}, "OLLAMA_MAX_QUEUE='-3': must be at least 1"),
    ({"OLLAMA_CONTEXT_LENGTH": "1.5"}, "OLLAMA_CONTEXT_LENGTH='1.5': expected a whole number"),
    ({"OLLAMA_DEBUG": "loud"}, "OLLAMA_DEBUG='loud': expected 0, 1, 2, true or false"),
    ({"OLLAMA_LOAD_TIMEOUT": "a while"}, "OLLAMA_LOAD_TIMEOUT='a while': expected a duration such as 30s or 5m"),
])
def test_bad_environment_values_name_variable_and_value(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, env)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_config_file(tmp_path: Path) -> None:
    settings = load(tmp_path, config="""
[server]
host = "0.0.0.0:8080"
keep_alive = 60
origins = ["http://ui.example:3000"]
noprune = true

[plugins]
disable = ["cli"]
""")
    assert settings.host.bind == "0.0.0.0:8080"
    assert settings.keep_alive == 60
    assert settings.origins == ("http://ui.example:3000",)
    assert settings.noprune is True
    assert settings.disable == ("cli",)
    assert settings.origin_of["server.host"] == f"config {tmp_path / 'config.toml'}"


def test_precedence_flag_then_env_then_config_then_default(tmp_path: Path) -> None:
    config = '[server]\nhost = "10.0.0.1:1000"\nmax_queue = 7\nnum_parallel = 3\n'
    env = {"OLLAMA_HOST": "127.0.0.1:2000", "OLLAMA_MAX_QUEUE": "8"}
    settings = load(tmp_path, env, config, overrides={"server.host": "127.0.0.1:3000"})
    assert settings.host.port == 3000 and settings.origin_of["server.host"] == "flag"
    assert settings.max_queue == 8 and settings.origin_of["server.max_queue"] == "env OLLAMA_MAX_QUEUE"
    assert settings.num_parallel == 3 and settings.origin_of["server.num_parallel"].startswith("config ")
    assert settings.context_length == 4096 and settings.origin_of["server.context_length"] == "default"


def test_empty_environment_variable_means_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, {"OLLAMA_MAX_QUEUE": ""}, "[server]\nmax_queue = 9\n")
    assert settings.max_queue == 9


def test_config_file_from_corral_config(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text("[server]\ncontext_length = 2048\n")
    settings = Settings.load({"HOME": str(tmp_path), "CORRAL_CONFIG": str(path)})
    assert settings.context_length == 2048 and settings.config_path == path


def test_default_config_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".corral").mkdir()
    (tmp_path / ".corral" / "config.toml").write_text("[server]\nmax_loaded_models = 3\n")
    assert Settings.load({"HOME": str(tmp_path)}).max_loaded_models == 3


@pytest.mark.parametrize(("config", "message"), [
    ("[server\nhost=1", "is not valid TOML"),
    ("[server]\nhost = 5\n", "[server] host in"),
    ("[server]\nport = 123456\n", "port out of range"),
    ("[server]\nkeep_alive = \"soon\"\n", 'time: invalid duration "soon"'),
    ("[server]\nkeep_alive = true\n", "Unsupported type"),
    ("[server]\nhots = \"x\"\n", "unknown key 'hots' in [server]"),
    ("[plugins]\nenabled = [\"x\"]\n", "unknown key 'enabled' in [plugins]"),
    ("server = 3\n", "[server] must be a table"),
    ("[server]\norigins = [1, 2]\n", "expected a list of strings"),
    ("[server]\nnum_parallel = true\n", "expected a whole number"),
])
def test_bad_config_file(tmp_path: Path, config: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, config=config)
    assert message in str(error.value)
    assert "config.toml" in str(error.value)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load({"HOME": str(tmp_path), "CORRAL_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"server.hots": "x"}, "--set server.hots: unknown setting"),
    ({"nodot": "x"}, "--set nodot: expected TABLE.NAME=VALUE"),
    ({"server.port": "99999"}, "--set server.port='99999': port out of range"),
])
def test_bad_overrides(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, overrides=overrides)
    assert str(error.value).startswith(message)


def test_plugin_settings_follow_the_same_precedence(tmp_path: Path) -> None:
    specs = [
        SettingSpec(key="demo.size", default=1, converter=int, help="a number", env="DEMO_SIZE"),
        SettingSpec(key="demo.name", default="x", help="a name"),
        SettingSpec(key="demo.flag", default=False, help="a flag"),
    ]
    settings = load(tmp_path, {"DEMO_SIZE": "5"}, '[demo]\nsize = 2\nname = "from-file"\n',
                    overrides={"demo.flag": "true"}).with_plugin_settings(specs)
    assert settings.plugin == {"demo.size": 5, "demo.name": "from-file", "demo.flag": "true"}
    assert settings.origin_of["demo.size"] == "env DEMO_SIZE"
    assert settings.origin_of["demo.flag"] == "flag"


def test_plugin_setting_errors(tmp_path: Path) -> None:
    specs = [SettingSpec(key="demo.size", default=1, converter=int, help="a number")]
    with pytest.raises(ConfigError, match=r"\[demo\] size in .*config.toml='big'"):
        load(tmp_path, config='[demo]\nsize = "big"\n').with_plugin_settings(specs)
    with pytest.raises(ConfigError, match="unknown key 'colour' in \\[demo\\]"):
        load(tmp_path, config='[demo]\ncolour = "red"\n').with_plugin_settings(specs)
    with pytest.raises(ConfigError, match="--set demo.other: unknown setting"):
        load(tmp_path, overrides={"demo.other": "1"}).with_plugin_settings(specs)


def test_table_of_an_inactive_plugin_is_a_warning(tmp_path: Path) -> None:
    settings = load(tmp_path, config='[someplugin]\nx = 1\n').with_plugin_settings([])
    assert any("[someplugin]" in warning for warning in settings.warnings)
