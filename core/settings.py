"""Settings: Ollama's environment variables, corral's config file, command-line overrides.

Precedence, highest first: a command-line flag, the environment, the config file
(``CORRAL_CONFIG``, default ``~/.corral/config.toml``), the default. Every setting records where
its value came from, for ``corral config``. A bad value is a ConfigError naming the variable or
key and the value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .durations import parse_keep_alive
from .errors import ConfigError
from .types import SettingSpec

DEFAULT_PORT = 11434
DEFAULT_ORIGINS = (
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)


@attrs.frozen(kw_only=True)
class HostSpec:
    """Where the server listens and clients connect, parsed as Ollama parses OLLAMA_HOST."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def url(self) -> str:
        """A URL a client can connect to (an unspecified bind address becomes loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def bind(self) -> str:
        host = self.host or "0.0.0.0"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def with_port(self, port: int) -> HostSpec:
        return attrs.evolve(self, port=port)


def parse_host(value: str) -> HostSpec:
    """OLLAMA_HOST: ``[scheme://]host[:port][/path]``, as Ollama's envconfig parses it.

    Unlike Ollama, a port that is not a number or is out of range is an error, not a silent
    fallback to 11434.
    """
    text = _unquote(value)
    if not text:
        return HostSpec()
    scheme, port = "http", DEFAULT_PORT
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r} (use http or https)")
        port = 443 if scheme == "https" else 80
    elif text == "ollama.com":
        scheme, port = "https", 443
    hostport, slash, path = text.partition("/")
    port_text = ""
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("malformed IPv6 address")
        port_text = rest[1:]
    elif hostport.count(":") > 1:
        host = hostport
    else:
        host, _, port_text = hostport.partition(":")
    if port_text:
        port = parse_port(port_text)
    return HostSpec(scheme=scheme, host=host, port=port, path=(slash + path).rstrip("/"))


def parse_port(value: Any) -> int:
    text = _unquote(str(value)) if not isinstance(value, int) else value
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise ValueError("port is not a number") from None
    if isinstance(value, bool) or not 0 <= port <= 65535:
        raise ValueError("port out of range 0-65535")
    return port


def parse_bool(value: Any) -> bool:
    """Go's strconv.ParseBool, and Ollama's rule that any other non-empty value counts as true."""
    if isinstance(value, bool):
        return value
    text = _unquote(str(value))
    if text in ("0", "f", "F", "false", "FALSE", "False", ""):
        return False
    return True


def parse_count(minimum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        try:
            number = int(_unquote(str(value)))
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number

    return convert


def parse_seconds(value: Any) -> float:
    """A positive number of seconds (``2``, ``0.5``)."""
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        seconds = float(_unquote(str(value)))
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise ValueError("must be more than 0 seconds")
    return seconds


def parse_debug(value: Any) -> int:
    """OLLAMA_DEBUG: 0/false info, 1/true debug, 2 trace (higher is more detail)."""
    if isinstance(value, bool):
        return int(value)
    text = _unquote(str(value))
    if text.lstrip("-").isdigit():
        return max(0, int(text))
    if text.lower() in ("true", "t", "false", "f", ""):
        return int(parse_bool(text))
    raise ValueError("expected 0, 1, 2, true or false")


def parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = _unquote(value).split(",")
    result = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("expected a list of strings")
        if item.strip():
            result.append(item.strip())
    return tuple(result)


def parse_path(value: Any) -> Path:
    text = _unquote(value)
    if not text:
        raise ValueError("the path is empty")
    return Path(text).expanduser()


def parse_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return _unquote(value)


def _keep_alive(value: Any) -> float:
    if isinstance(value, str):
        value = _unquote(value)
    return parse_keep_alive(value)


def _unquote(text: Any) -> str:
    if not isinstance(text, str):
        raise ValueError("expected a string")
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ["HOME"]) if environ.get("HOME") else Path.home()


def default_config_path(environ: Mapping[str, str]) -> Path:
    return _home(environ) / ".corral" / "config.toml"


@attrs.frozen(kw_only=True)
class CoreSetting:
    key: str
    env: str | None
    default: Any
    converter: Callable[[Any], Any]
    help: str


CORE_SETTINGS: tuple[CoreSetting, ...] = (
    CoreSetting(key="server.host", env="OLLAMA_HOST", default=HostSpec(), converter=parse_host,
                help="address to listen on and to connect to, [scheme://]host[:port]"),
    CoreSetting(key="server.port", env="OLLAMA_PORT", default=None, converter=parse_port,
                help="port only, overriding the one in server.host"),
    CoreSetting(key="server.models", env="OLLAMA_MODELS", default=None,
                converter=parse_path, help="the model store, in Ollama's layout"),
    CoreSetting(key="server.origins", env="OLLAMA_ORIGINS", default=(), converter=parse_list,
                help="extra allowed CORS origins, comma-separated, * wildcards"),
    CoreSetting(key="server.keep_alive", env="OLLAMA_KEEP_ALIVE", default=300.0, converter=_keep_alive,
                help="how long a model stays loaded after a request (5m, 1h30m, seconds; negative = forever)"),
    CoreSetting(key="server.num_parallel", env="OLLAMA_NUM_PARALLEL", default=1, converter=parse_count(1),
                help="requests served at the same time by one loaded model"),
    CoreSetting(key="server.max_queue", env="OLLAMA_MAX_QUEUE", default=512, converter=parse_count(1),
                help="requests waiting for a model before the server answers 503"),
    CoreSetting(key="server.max_loaded_models", env="OLLAMA_MAX_LOADED_MODELS", default=1,
                converter=parse_count(1), help="models loaded at the same time"),
    CoreSetting(key="server.context_length", env="OLLAMA_CONTEXT_LENGTH", default=4096,
                converter=parse_count(4), help="default num_ctx"),
    CoreSetting(key="server.debug", env="OLLAMA_DEBUG", default=0, converter=parse_debug,
                help="log detail: 0 info, 1 debug, 2 trace"),
    CoreSetting(key="server.noprune", env="OLLAMA_NOPRUNE", default=False, converter=parse_bool,
                help="keep unreferenced blobs instead of removing them"),
    CoreSetting(key="server.max_body_size", env=None, default=32 * 1024 * 1024, converter=parse_count(1),
                help="bytes a JSON request body may have (POST /api/blobs streams, bounded by free disk)"),
    CoreSetting(key="server.body_timeout", env=None, default=30.0, converter=parse_seconds,
                help="seconds a request body may stall (no byte arriving) before the server gives up"),
    CoreSetting(key="server.max_connections", env=None, default=1024, converter=parse_count(1),
                help="open connections in total; more are refused with 503"),
    CoreSetting(key="server.max_client_connections", env=None, default=256, converter=parse_count(1),
                help="open connections from one client address; more are refused with 503"),
    CoreSetting(key="server.template_timeout", env=None, default=2.0, converter=parse_seconds,
                help="seconds one prompt template render (or parse) may take"),
    CoreSetting(key="server.template_max_iterations", env=None, default=1_000_000, converter=parse_count(1),
                help="loop iterations and template calls one render may make"),
    CoreSetting(key="server.template_max_output", env=None, default=32 * 1024 * 1024, converter=parse_count(1),
                help="characters one render may write or build"),
    CoreSetting(key="server.store", env="CORRAL_STORE", default="fs", converter=parse_string,
                help="the storage backend (a name from register_stores)"),
    CoreSetting(key="plugins.enable", env=None, default=(), converter=parse_list,
                help="plugins that are off by default (corral.contrib) to turn on"),
    CoreSetting(key="plugins.disable", env=None, default=(), converter=parse_list,
                help="plugins to turn off, bundled or installed"),
)
_CORE_BY_KEY = {setting.key: setting for setting in CORE_SETTINGS}


@attrs.frozen(kw_only=True)
class Settings:
    """The effective settings. Build with :meth:`Settings.load`; never mutate."""

    host: HostSpec
    models: Path
    origins: tuple[str, ...]
    keep_alive: float
    num_parallel: int
    max_queue: int
    max_loaded_models: int
    context_length: int
    debug: int
    noprune: bool
    max_body_size: int
    body_timeout: float
    max_connections: int
    max_client_connections: int
    template_timeout: float
    template_max_iterations: int
    template_max_output: int
    store: str
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    config_path: Path | None = None
    origin_of: Mapping[str, str] = attrs.field(factory=dict)
    """key -> where its value came from: ``default``, ``env NAME``, ``config FILE``, ``flag``."""
    plugin: Mapping[str, Any] = attrs.field(factory=dict)
    """Plugin settings by key, once :meth:`with_plugin_settings` has run."""
    tables: Mapping[str, Any] = attrs.field(factory=dict)
    """The config file's contents, for plugin settings resolved later."""
    warnings: tuple[str, ...] = ()
    environ: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    overrides: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return self.origins + DEFAULT_ORIGINS

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        config_path: str | Path | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read the environment, the config file and ``overrides`` (``{"server.host": "..."}``)."""
        environ = dict(os.environ if environ is None else environ)
        overrides = dict(overrides or {})
        path, tables = _read_config(environ, config_path)
        for key in overrides:
            table, _, name = key.partition(".")
            if not name:
                raise ConfigError(f'--set {key}: expected TABLE.NAME=VALUE, e.g. server.host=0.0.0.0:8080')
            if table in ("server", "plugins") and key not in _CORE_BY_KEY:
                raise ConfigError(f'--set {key}: unknown setting (known: {", ".join(_CORE_BY_KEY)})')
        for table in ("server", "plugins"):
            section = tables.get(table, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{path}: [{table}] must be a table")
            for name in section:
                if f"{table}.{name}" not in _CORE_BY_KEY:
                    known = ", ".join(k.partition(".")[2] for k in _CORE_BY_KEY if k.startswith(table + "."))
                    raise ConfigError(f"{path}: unknown key {name!r} in [{table}] (known: {known})")
        values: dict[str, Any] = {}
        origin_of: dict[str, str] = {}
        for setting in CORE_SETTINGS:
            value, origin = _resolve(setting.key, setting.env, setting.default, setting.converter,
                                     environ, tables, path, overrides)
            values[setting.key] = value
            origin_of[setting.key] = origin
        host: HostSpec = values["server.host"]
        if values["server.port"] is not None:
            host = host.with_port(values["server.port"])
        return cls(
            host=host,
            models=values["server.models"] or _home(environ) / ".ollama" / "models",
            origins=values["server.origins"],
            keep_alive=values["server.keep_alive"],
            num_parallel=values["server.num_parallel"],
            max_queue=values["server.max_queue"],
            max_loaded_models=values["server.max_loaded_models"],
            context_length=values["server.context_length"],
            debug=values["server.debug"],
            noprune=values["server.noprune"],
            max_body_size=values["server.max_body_size"],
            body_timeout=values["server.body_timeout"],
            max_connections=values["server.max_connections"],
            max_client_connections=values["server.max_client_connections"],
            template_timeout=values["server.template_timeout"],
            template_max_iterations=values["server.template_max_iterations"],
            template_max_output=values["server.template_max_output"],
            store=values["server.store"],
            enable=values["plugins.enable"],
            disable=values["plugins.disable"],
            config_path=path,
            origin_of=origin_of,
            tables=tables,
            environ=environ,
            overrides=overrides,
        )

    def with_plugin_settings(self, specs: Iterable[SettingSpec]) -> Settings:
        """Resolve the settings plugins declared, with the same precedence as the core ones."""
        plugin: dict[str, Any] = {}
        origin_of = dict(self.origin_of)
        declared_tables: set[str] = set()
        for spec in specs:
            table = spec.key.partition(".")[0]
            declared_tables.add(table)
            value, origin = _resolve(spec.key, spec.env, spec.default, spec.converter,
                                     self.environ, self.tables, self.config_path, self.overrides)
            plugin[spec.key] = value
            origin_of[spec.key] = origin
        warnings = list(self.warnings)
        for table, section in self.tables.items():
            if table in ("server", "plugins"):
                continue
            if table not in declared_tables:
                warnings.append(f"{self.config_path}: [{table}] matches no setting of an active plugin")
                continue
            for name in section if isinstance(section, dict) else ():
                if f"{table}.{name}" not in plugin:
                    raise ConfigError(f"{self.config_path}: unknown key {name!r} in [{table}]")
        for key in self.overrides:
            if key not in _CORE_BY_KEY and key not in plugin:
                raise ConfigError(f"--set {key}: unknown setting")
        return attrs.evolve(self, plugin=plugin, origin_of=origin_of, warnings=tuple(warnings))

    def value_of(self, key: str) -> Any:
        """The effective value of a core or plugin setting, by key."""
        if key in self.plugin:
            return self.plugin[key]
        field = {"server.port": None, "plugins.enable": "enable", "plugins.disable": "disable"}.get(
            key, key.partition(".")[2]
        )
        if field is None:
            return self.host.port
        return getattr(self, field)


def _read_config(environ: Mapping[str, str], config_path: str | Path | None) -> tuple[Path | None, dict[str, Any]]:
    explicit = config_path or environ.get("CORRAL_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_path(environ)
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist (from {'CORRAL_CONFIG' if not config_path else '--config'})")
        return None, {}
    try:
        with path.open("rb") as handle:
            return path, tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None


def _resolve(
    key: str,
    env: str | None,
    default: Any,
    converter: Callable[[Any], Any],
    environ: Mapping[str, str],
    tables: Mapping[str, Any],
    path: Path | None,
    overrides: Mapping[str, str],
) -> tuple[Any, str]:
    table, _, name = key.partition(".")
    section = tables.get(table)
    if key in overrides:
        raw, origin, label = overrides[key], "flag", f"--set {key}"
    elif env and environ.get(env, "").strip():
        raw, origin, label = environ[env], f"env {env}", env
    elif isinstance(section, dict) and name in section:
        raw, origin, label = section[name], f"config {path}", f"[{table}] {name} in {path}"
    else:
        return default, "default"
    try:
        return converter(raw), origin
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{label}={raw!r}: {error}") from None
