"""The command-line skeleton, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from corral import __version__
from support import run_corral


def test_help_lists_commands(clean_env: dict[str, str]) -> None:
    result = run_corral("--help", env=clean_env)
    assert result.returncode == 0
    assert "Usage: corral" in result.stdout
    assert "config" in result.stdout and "plugins" in result.stdout


def test_version(clean_env: dict[str, str]) -> None:
    for flag in ("--version", "-v"):
        result = run_corral(flag, env=clean_env)
        assert (result.returncode, result.stdout) == (0, f"corral version is {__version__}\n")


def test_config_shows_values_and_where_they_came_from(tmp_path: Path, clean_env: dict[str, str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[server]\nkeep_alive = "10m"\nmax_queue = 20\n')
    clean_env.update(CORRAL_CONFIG=str(config), OLLAMA_HOST="0.0.0.0:8080", OLLAMA_MAX_QUEUE="30")
    result = run_corral("--set", "server.num_parallel=3", "config", "--json", env=clean_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config_file"] == str(config)
    settings = report["settings"]
    assert settings["server.host"] == {"value": "http://127.0.0.1:8080", "from": "env OLLAMA_HOST"}
    assert settings["server.keep_alive"] == {"value": "10m0s", "from": f"config {config}"}
    assert settings["server.max_queue"] == {"value": 30, "from": "env OLLAMA_MAX_QUEUE"}
    assert settings["server.num_parallel"] == {"value": 3, "from": "flag"}
    assert settings["server.models"]["value"] == str(Path(clean_env["HOME"]) / ".ollama" / "models")
    assert settings["echo.prefix"] == {"value": "", "from": "default"}


def test_config_table(clean_env: dict[str, str]) -> None:
    clean_env["OLLAMA_KEEP_ALIVE"] = "-1"
    result = run_corral("config", env=clean_env)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["KEY", "VALUE", "FROM"]
    assert ["server.keep_alive", "-1", "env", "OLLAMA_KEEP_ALIVE"] in [line.split() for line in lines]
    assert ["server.load_timeout", "5m0s", "default"] in [line.split() for line in lines]
    assert ["llamacpp.stream_interval_ms", "20.0", "default"] in [line.split() for line in lines]  # not "20s"


def test_bad_settings_are_one_line_errors(tmp_path: Path, clean_env: dict[str, str]) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[server\n")
    cases = [
        ({"OLLAMA_KEEP_ALIVE": "forever"}, (), "Error: OLLAMA_KEEP_ALIVE='forever': time: invalid duration"),
        ({"OLLAMA_HOST": "localhost:70000"}, (), "Error: OLLAMA_HOST='localhost:70000': port out of range"),
        ({"CORRAL_CONFIG": str(bad_toml)}, (), f"Error: config file {bad_toml} is not valid TOML"),
        ({}, ("--set", "server.max_queue=many"), "Error: --set server.max_queue='many': expected a whole number"),
    ]
    for env, flags, message in cases:
        result = run_corral(*flags, "config", env={**clean_env, **env})
        assert result.returncode == 2, (env, result.stderr)
        assert result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_unknown_plugin_in_config_is_an_error(tmp_path: Path, clean_env: dict[str, str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[plugins]\nenable = ["metrix"]\n')
    clean_env["CORRAL_CONFIG"] = str(config)
    result = run_corral("config", env=clean_env)
    assert result.returncode == 2
    assert result.stderr.startswith('Error: plugins.enable: unknown plugin "metrix" (known: ')


def test_broken_config_does_not_hide_help(tmp_path: Path, clean_env: dict[str, str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("not toml at all [")
    clean_env["CORRAL_CONFIG"] = str(config)
    result = run_corral("--help", env=clean_env)
    assert result.returncode == 0 and "Usage: corral" in result.stdout


def test_unknown_command_and_bad_set_syntax(clean_env: dict[str, str]) -> None:
    result = run_corral("frobnicate", env=clean_env)
    assert result.returncode == 2 and "No such command 'frobnicate'" in result.stderr
    result = run_corral("--set", "novalue", "config", env=clean_env)
    assert result.returncode == 2 and "expected KEY=VALUE" in result.stderr
