"""Settings: Ollama's environment variables, corral's config file, command-line overrides.

Precedence, highest first: a command-line flag, the environment, the config file
(``CORRAL_CONFIG``, default ``~/.corral/config.toml``), the default. Every setting records where
its value came from, for ``corral config``. A bad value is a ConfigError naming the variable or
key and the value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .durations import FOREVER, parse_go_duration, parse_keep_alive
from .errors import ConfigError

if TYPE_CHECKING:
    from .types import SettingSpec  # not imported at run time: `corral list` reads settings, not records

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


def is_loopback_host(host: str) -> bool:
    """Whether a listen address (OLLAMA_HOST's host part) is loopback: only this machine can reach it.

    An IP literal (brackets allowed) is loopback for 127.0.0.0/8 and ::1 (IPv4-mapped too);
    ``localhost`` and ``*.localhost`` are; ``""`` (every interface) is not. Any other name is
    resolved, and judged by the address Go's ``net.Listen`` would take (the first IPv4 one, else
    the first); a name that does not resolve counts as not loopback.
    """
    host = host.strip()
    if len(host) > 1 and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return False
    try:
        return _loopback(ipaddress.ip_address(host))
    except ValueError:
        pass
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    resolved = []
    for info in infos:
        try:
            resolved.append(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        except ValueError:
            continue
    if not resolved:
        return False
    return _loopback(next((ip for ip in resolved if ip.version == 4), resolved[0]))


def _loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


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


def _seconds(value: Any) -> float:
    """A number of seconds, or a Go duration (``30s``, ``1.5m``, ``1h30m``), as Ollama's variables
    take them; may be negative."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s or 5m")
    if isinstance(value, (int, float)):
        return float(value)
    text = _unquote(value)
    try:
        return float(text) if text.lstrip("+-").replace(".", "", 1).isdigit() else parse_go_duration(text)
    except ValueError:
        raise ValueError("expected a duration such as 30s or 5m") from None


def parse_duration(value: Any) -> float:
    """Seconds, from a number or a Go duration (``30``, ``30s``, ``1.5m``, ``1h30m``); never negative."""
    seconds = _seconds(value)
    if not seconds >= 0:  # also refuses NaN
        raise ValueError("must be 0 or more")
    return seconds


def parse_positive_duration(value: Any) -> float:
    """As :func:`parse_duration`, and more than zero (a timeout, an interval)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0")
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


def parse_choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _unquote(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return convert


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


MIN_KEY_LENGTH = 16
_KEY_DIGEST = re.compile(r"sha256:[0-9a-fA-F]{64}")


def parse_key(value: Any) -> str:
    """One API key: a plain key (at least 16 visible ASCII characters, no commas) or
    ``sha256:<64 hex>``, the SHA-256 of the key. Errors never repeat the key."""
    if not isinstance(value, str):
        raise ValueError("a key must be a string")
    text = value.strip()
    if text.startswith("sha256:"):
        if not _KEY_DIGEST.fullmatch(text):
            raise ValueError("a hashed key is sha256: followed by 64 hex digits")
        return text.lower()
    if any(not "!" <= char <= "~" or char == "," for char in text):
        raise ValueError("a key may hold only visible ASCII characters, no spaces or commas")
    if len(text) < MIN_KEY_LENGTH:
        raise ValueError(f"a key must be at least {MIN_KEY_LENGTH} characters long "
                         "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))' makes a good one)")
    return text


def parse_keys(value: Any) -> tuple[str, ...]:
    """A list of API keys (comma-separated in the environment), each checked by :func:`parse_key`."""
    keys = []
    for number, item in enumerate(parse_list(value), 1):
        try:
            keys.append(parse_key(item))
        except ValueError as error:
            raise ValueError(f"key {number}: {error}") from None
    return tuple(keys)


def parse_path(value: Any) -> Path:
    text = _unquote(value)
    if not text:
        raise ValueError("the path is empty")
    return Path(text).expanduser()


def parse_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return _unquote(value)


def _load_timeout(value: Any) -> float:
    """OLLAMA_LOAD_TIMEOUT as Ollama reads it; zero or negative means no limit (``FOREVER``)."""
    seconds = _seconds(value)
    return FOREVER if not seconds > 0 else seconds


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
    secret: bool = False
    """Its value is never shown: not by ``corral config``, not in error messages."""


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
    CoreSetting(key="server.load_timeout", env="OLLAMA_LOAD_TIMEOUT", default=300.0, converter=_load_timeout,
                help="how long a model may take to load before the request fails (5m; 0 or negative = no limit)"),
    CoreSetting(key="server.context_length", env="OLLAMA_CONTEXT_LENGTH", default=4096,
                converter=parse_count(4), help="default num_ctx"),
    CoreSetting(key="server.debug", env="OLLAMA_DEBUG", default=0, converter=parse_debug,
                help="log detail: 0 info, 1 debug, 2 trace"),
    CoreSetting(key="server.log_format", env="CORRAL_LOG_FORMAT", default="logfmt",
                converter=parse_choice("logfmt", "json"),
                help="log lines as logfmt (key=value) or json (one object per line)"),
    CoreSetting(key="server.noprune", env="OLLAMA_NOPRUNE", default=False, converter=parse_bool,
                help="keep unreferenced blobs instead of removing them"),
    CoreSetting(key="server.max_body_size", env=None, default=32 * 1024 * 1024, converter=parse_count(1),
                help="bytes a JSON request body may have (POST /api/blobs streams, bounded by free disk)"),
    CoreSetting(key="server.max_json_values", env=None, default=1_000_000, converter=parse_count(1),
                help="values a JSON request body may hold (counted as its commas and opening brackets)"),
    CoreSetting(key="server.body_timeout", env=None, default=30.0, converter=parse_positive_duration,
                help="seconds a request body may stall (no byte arriving) before the server gives up"),
    CoreSetting(key="server.max_connections", env=None, default=1024, converter=parse_count(1),
                help="open connections in total; more are refused with 503"),
    CoreSetting(key="server.max_client_connections", env=None, default=256, converter=parse_count(1),
                help="open connections from one client address; more are refused with 503"),
    CoreSetting(key="server.template_timeout", env=None, default=2.0, converter=parse_positive_duration,
                help="seconds one prompt template render (or parse) may take"),
    CoreSetting(key="server.template_max_iterations", env=None, default=1_000_000, converter=parse_count(1),
                help="loop iterations and template calls one render may make"),
    CoreSetting(key="server.template_max_output", env=None, default=32 * 1024 * 1024, converter=parse_count(1),
                help="characters one render may write or build"),
    CoreSetting(key="server.max_embed_values", env=None, default=8 * 1024 * 1024, converter=parse_count(1),
                help="numbers one embedding answer may hold (inputs times the model's embedding length)"),
    CoreSetting(key="server.store", env="CORRAL_STORE", default="fs", converter=parse_string,
                help="the storage backend (a name from register_stores)"),
    CoreSetting(key="server.api_keys", env="CORRAL_API_KEYS", default=(), converter=parse_keys, secret=True,
                help="API keys with full access (comma-separated; a key or sha256:<hex> of it)"),
    CoreSetting(key="server.inference_keys", env="CORRAL_INFERENCE_KEYS", default=(), converter=parse_keys,
                secret=True, help="API keys that may only run models (generate, chat, embed, /v1, list, show)"),
    CoreSetting(key="server.api_keys_file", env="CORRAL_API_KEYS_FILE", default=None, converter=parse_path,
                help="a file of full-access keys, one per line (a key or sha256:<hex> of it)"),
    CoreSetting(key="server.inference_keys_file", env="CORRAL_INFERENCE_KEYS_FILE", default=None,
                converter=parse_path, help="a file of inference-only keys, one per line"),
    CoreSetting(key="server.tls_cert", env="CORRAL_TLS_CERT", default=None, converter=parse_path,
                help="serve HTTPS with this certificate chain (PEM), on every address"),
    CoreSetting(key="server.tls_key", env="CORRAL_TLS_KEY", default=None, converter=parse_path,
                help="the private key (PEM) of server.tls_cert"),
    CoreSetting(key="server.require_keys", env="CORRAL_REQUIRE_KEYS", default=False, converter=parse_bool,
                help="refuse to start on an address beyond this machine when no API key is set"),
    CoreSetting(key="client.api_key", env="CORRAL_API_KEY", default="", converter=parse_string, secret=True,
                help="the key the command line sends (default, to this machine: the first plain server.api_keys)"),
    CoreSetting(key="plugins.enable", env=None, default=(), converter=parse_list,
                help="plugins that are off by default (corral.contrib) to turn on"),
    CoreSetting(key="plugins.disable", env=None, default=(), converter=parse_list,
                help="plugins to turn off, bundled or installed"),
)
_CORE_BY_KEY = {setting.key: setting for setting in CORE_SETTINGS}
_CORE_TABLES = ("server", "client", "plugins")
SECRET_SETTINGS = frozenset(setting.key for setting in CORE_SETTINGS if setting.secret)


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
    load_timeout: float
    context_length: int
    debug: int
    log_format: str
    noprune: bool
    max_body_size: int
    max_json_values: int
    body_timeout: float
    max_connections: int
    max_client_connections: int
    template_timeout: float
    template_max_iterations: int
    template_max_output: int
    max_embed_values: int
    store: str
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    inference_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    api_keys_file: Path | None = None
    inference_keys_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_keys: bool = False
    client_api_key: str = attrs.field(default="", repr=False)
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

    @staticmethod
    def config_file(environ: Mapping[str, str] | None = None) -> Path:
        """The config file the settings are read from, which may not exist: ``CORRAL_CONFIG``, else
        ``~/.corral/config.toml``."""
        environ = os.environ if environ is None else environ
        explicit = environ.get("CORRAL_CONFIG")
        return Path(explicit).expanduser() if explicit else default_config_path(environ)

    @property
    def has_keys(self) -> bool:
        """Whether any API key is configured, so that the server asks for one."""
        return bool(self.api_keys or self.inference_keys or self.api_keys_file or self.inference_keys_file)

    def exposure_warnings(self) -> tuple[str, ...]:
        """What is risky about where the server listens (OLLAMA_HOST), in words for an operator."""
        if is_loopback_host(self.host.host):
            return ()
        if not self.has_keys:
            return (f"corral listens on {self.host.bind}, which other machines can reach, and no API key is "
                    "set: anyone who reaches it can run, pull, push, create and delete models. Set "
                    "server.api_keys (CORRAL_API_KEYS); server.require_keys=true refuses to start this way.",)
        if self.tls_cert is None:
            return (f"corral listens on {self.host.bind}, which other machines can reach, over plain HTTP: "
                    "API keys and prompts cross the network readable. Set server.tls_cert and "
                    "server.tls_key (CORRAL_TLS_CERT, CORRAL_TLS_KEY), or serve behind a TLS proxy.",)
        return ()

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
            if table in _CORE_TABLES and key not in _CORE_BY_KEY:
                raise ConfigError(f'--set {key}: unknown setting (known: {", ".join(_CORE_BY_KEY)})')
        for table in _CORE_TABLES:
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
                                     environ, tables, path, overrides, secret=setting.secret)
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
            load_timeout=values["server.load_timeout"],
            context_length=values["server.context_length"],
            debug=values["server.debug"],
            log_format=values["server.log_format"],
            noprune=values["server.noprune"],
            max_body_size=values["server.max_body_size"],
            max_json_values=values["server.max_json_values"],
            body_timeout=values["server.body_timeout"],
            max_connections=values["server.max_connections"],
            max_client_connections=values["server.max_client_connections"],
            template_timeout=values["server.template_timeout"],
            template_max_iterations=values["server.template_max_iterations"],
            template_max_output=values["server.template_max_output"],
            max_embed_values=values["server.max_embed_values"],
            store=values["server.store"],
            enable=values["plugins.enable"],
            disable=values["plugins.disable"],
            api_keys=values["server.api_keys"],
            inference_keys=values["server.inference_keys"],
            api_keys_file=values["server.api_keys_file"],
            inference_keys_file=values["server.inference_keys_file"],
            tls_cert=values["server.tls_cert"],
            tls_key=values["server.tls_key"],
            require_keys=values["server.require_keys"],
            client_api_key=values["client.api_key"],
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
            if table in _CORE_TABLES:
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

    @staticmethod
    def is_secret(key: str) -> bool:
        """Whether a setting holds secrets (API keys) that must never be printed."""
        return key in SECRET_SETTINGS

    @staticmethod
    def env_of(key: str) -> str | None:
        """The environment variable of a core setting (None for a plugin's or one without)."""
        return next((setting.env for setting in CORE_SETTINGS if setting.key == key), None)

    def value_of(self, key: str) -> Any:
        """The effective value of a core or plugin setting, by key."""
        if key in self.plugin:
            return self.plugin[key]
        field = {"server.port": None, "plugins.enable": "enable", "plugins.disable": "disable",
                 "client.api_key": "client_api_key"}.get(key, key.partition(".")[2])
        if field is None:
            return self.host.port
        return getattr(self, field)


def _read_config(environ: Mapping[str, str], config_path: str | Path | None) -> tuple[Path | None, dict[str, Any]]:
    explicit = config_path or environ.get("CORRAL_CONFIG")
    path = Path(config_path).expanduser() if config_path else Settings.config_file(environ)
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
    *,
    secret: bool = False,
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
        raise ConfigError(f"{label}: {error}" if secret else f"{label}={raw!r}: {error}") from None
