"""The model commands: ``list``/``ls``, ``show``, ``cp``, ``rm``, ``ps`` and ``stop``.

Each is a client of the HTTP API at OLLAMA_HOST (see :mod:`.client`, which starts a local server
when none answers) and prints what Ollama's CLI prints, byte for byte (cmd/cmd.go).
"""

from __future__ import annotations

from typing import Any

import click

SHOW_FLAGS = ("license", "modelfile", "parameters", "system", "template")

EPILOG = """\b
Environment Variables:
  OLLAMA_HOST   the server to talk to (default 127.0.0.1:11434); when a local
                one does not answer, `corral serve` is started in the background"""


def connect(state: Any) -> Any:
    """A client of the server at OLLAMA_HOST, started in the background if it is local and down."""
    from .client import Client

    client = Client.for_state(state)
    client.ensure_server()
    return client


@click.command("list", epilog=EPILOG)
@click.argument("prefix", required=False)
@click.pass_obj
def list_command(state: Any, prefix: str | None) -> None:
    """List models.

    With PREFIX, only the models whose name starts with it (in any case). Also `corral ls`.

    \b
    Example:
      corral list
      OLLAMA_HOST=otherhost:11434 corral ls llama
    """
    from .human import human_bytes, human_time, table

    with connect(state) as client:
        models = (client.get("/api/tags") or {}).get("models") or []
    rows = []
    for model in models:
        name = model.get("name", "")
        if prefix is None or name.lower().startswith(prefix.lower()):
            size = "-" if model.get("remote_model") else human_bytes(int(model.get("size") or 0))
            rows.append([name, model.get("digest", "")[:12], size, human_time(model.get("modified_at"), "Never")])
    click.echo(table(rows, ["NAME", "ID", "SIZE", "MODIFIED"]), nl=False)


# `corral ls`: the same command under Ollama's alias, kept out of the command list.
ls_command = click.Command("ls", callback=list_command.callback, params=list_command.params, help=list_command.help,
                           epilog=list_command.epilog, hidden=True)


@click.command("ps", epilog=EPILOG)
@click.argument("prefix", required=False)
@click.pass_obj
def ps_command(state: Any, prefix: str | None) -> None:
    """List running models.

    With PREFIX, only the models whose name starts with it.

    \b
    Example:
      corral ps
    """
    from .human import go_round, human_bytes, human_time, parse_time, seconds_since, table

    with connect(state) as client:
        models = (client.get("/api/ps") or {}).get("models") or []
    rows = []
    for model in models:
        name = model.get("name", "")
        if prefix is not None and not name.startswith(prefix):
            continue
        size, vram = int(model.get("size") or 0), int(model.get("size_vram") or 0)
        if vram == 0:
            processor = "100% CPU"
        elif vram == size:
            processor = "100% GPU"
        elif vram > size or size == 0:
            processor = "Unknown"
        else:
            cpu = go_round((size - vram) / size * 100)
            processor = f"{cpu}%/{100 - cpu}% CPU/GPU"
        expires = parse_time(model.get("expires_at"))
        if expires is None or seconds_since(expires) > 0:
            until = "Stopping..."
        else:
            until = human_time(expires, "Never")
        rows.append([name, model.get("digest", "")[:12], human_bytes(size), processor,
                     str(model.get("context_length") or 0), until, model.get("node") or ""])
    headers = ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "NODE"]
    if not any(row[-1] for row in rows):  # one machine: Ollama's columns
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    click.echo(table(rows, headers), nl=False)


@click.command("show", epilog=EPILOG)
@click.argument("model")
@click.option("--license", "show_license", is_flag=True, help="Show license of a model.")
@click.option("--modelfile", "show_modelfile", is_flag=True, help="Show Modelfile of a model.")
@click.option("--parameters", "show_parameters", is_flag=True, help="Show parameters of a model.")
@click.option("--template", "show_template", is_flag=True, help="Show template of a model.")
@click.option("--system", "show_system", is_flag=True, help="Show system message of a model.")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information (metadata and tensors).")
@click.pass_obj
def show_command(state: Any, model: str, verbose: bool, **flags: bool) -> None:
    """Show information for a model.

    Its details, capabilities, parameters, system message and license; with -v also its metadata
    and tensors. With one of the other flags, only that part, as is.

    \b
    Example:
      corral show smollm2
      corral show smollm2 --modelfile
    """
    from corral import CorralError

    chosen = [name for name in SHOW_FLAGS if flags[f"show_{name}"]]
    if len(chosen) > 1:
        raise CorralError("only one of '--license', '--modelfile', '--parameters', '--system', "
                          "or '--template' can be specified")
    with connect(state) as client:
        response = client.post("/api/show", {"model": model, "verbose": verbose}) or {}
    if chosen:
        value = response.get(chosen[0]) or ""
        if isinstance(value, list):  # a license of several layers, if a server sends them apart
            value = "\n".join(map(str, value))
        # Ollama prints the first three with Println, system and template with Print.
        click.echo(value, nl=chosen[0] in ("license", "modelfile", "parameters"))
        return
    click.echo(show_info(response, verbose), nl=False)


@click.command("cp", epilog=EPILOG)
@click.argument("source")
@click.argument("destination")
@click.pass_obj
def cp_command(state: Any, source: str, destination: str) -> None:
    """Copy a model.

    DESTINATION becomes a new name for SOURCE's manifest; the blobs are shared, not copied.

    \b
    Example:
      corral cp smollm2 my-smollm2
    """
    with connect(state) as client:
        client.post("/api/copy", {"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


@click.command("rm", epilog=EPILOG)
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.pass_obj
def rm_command(state: Any, models: tuple[str, ...]) -> None:
    """Remove a model.

    Removes each MODEL in turn, unloading it first if it is running, and stops at the first error.

    \b
    Example:
      corral rm my-smollm2 old-model:7b
    """
    from corral import CorralError

    with connect(state) as client:
        for model in models:
            try:
                unload(client, model)
            except CorralError as error:
                if "not found" not in str(error).lower():
                    click.echo(f"Warning: unable to stop model '{model}'", err=True)
            client.delete("/api/delete", {"model": model})
            click.echo(f"deleted '{model}'")


@click.command("stop", epilog=EPILOG)
@click.argument("model")
@click.pass_obj
def stop_command(state: Any, model: str) -> None:
    """Stop a running model.

    Unloads MODEL from memory now, whatever its keep_alive.

    \b
    Example:
      corral stop smollm2
    """
    from corral import CorralError

    with connect(state) as client:
        try:
            unload(client, model)
        except CorralError as error:
            if "not found" in str(error):
                raise CorralError(f'couldn\'t find model "{model}" to stop') from None
            raise


def unload(client: Any, model: str) -> None:
    """What Ollama's CLI does to unload: check the model exists, then an empty generate request
    with ``keep_alive: 0``."""
    client.post("/api/show", {"model": model})
    for _ in client.stream("POST", "/api/generate", {"model": model, "keep_alive": 0}):
        pass


# `ollama show` without flags (cmd.go showInfo)


def show_info(response: dict[str, Any], verbose: bool) -> str:
    """The sections ``corral show MODEL`` prints, exactly as Ollama's ``showInfo`` lays them out."""
    from corral.sdk.gguf import human_number

    from .human import go_float_f, go_float_g, go_value, table

    out: list[str] = []

    def section(header: str, rows: list[list[str]], col_width: int = 30) -> None:
        out.append(f"  {header}\n")
        out.append(table(rows, col_width=col_width))
        out.append("\n")

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    details = response.get("details") or {}
    model_info = response.get("model_info")
    rows: list[list[str]] = []
    if response.get("remote_host"):
        rows.append(["", "Remote model", str(response.get("remote_model") or "")])
        rows.append(["", "Remote URL", str(response["remote_host"])])
    if isinstance(model_info, dict):
        arch = model_info.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        parameters = details.get("parameter_size") or ""
        count = number(model_info.get("general.parameter_count"))
        if not parameters and count is not None:
            parameters = human_number(max(0, int(count)))
        if parameters:
            rows.append(["", "parameters", parameters])
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = number(model_info.get(f"{arch}.{key}"))
            if value is not None:
                rows.append(["", label, go_float_f(value)])
    else:
        rows.append(["", "architecture", details.get("family") or ""])
        rows.append(["", "parameters", details.get("parameter_size") or ""])
    rows.append(["", "quantization", details.get("quantization_level") or ""])
    if response.get("requires"):
        rows.append(["", "requires", str(response["requires"])])
    section("Model", rows)

    capabilities = response.get("capabilities") or []
    if capabilities:
        section("Capabilities", [["", str(capability)] for capability in capabilities])

    projector = response.get("projector_info")
    if isinstance(projector, dict):
        rows = []
        arch = projector.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        count = number(projector.get("general.parameter_count"))
        if count is not None:
            rows.append(["", "parameters", human_number(max(0, int(count)))])
        for suffix, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
            for modality in ("vision", "audio"):
                value = number(projector.get(f"{arch}.{modality}.{suffix}"))
                if value is not None:
                    rows.append(["", label, go_float_f(value)])
                    break
        section("Projector", rows)

    if response.get("parameters"):
        section("Parameters", [["", *line.split()] for line in _lines(response["parameters"]) if line])

    if isinstance(model_info, dict) and verbose:
        section("Metadata", [["", key, _metadata_value(model_info[key], go_float_g, go_value)]
                             for key in sorted(model_info)])

    tensors = response.get("tensors") or []
    if tensors and verbose:
        section("Tensors", [["", str(tensor.get("name", "")), str(tensor.get("type", "")),
                             "[" + " ".join(str(int(n)) for n in tensor.get("shape") or []) + "]"]
                            for tensor in tensors])

    if response.get("system"):
        section("System", _head(response["system"], 2), col_width=100)
    if response.get("license"):
        license_text = response["license"]
        if isinstance(license_text, list):
            license_text = "\n".join(map(str, license_text))
        section("License", _head(license_text, 2), col_width=100)
    return "".join(out)


def _lines(text: str) -> list[str]:
    """Go's bufio.Scanner lines: split on newlines, a trailing carriage return dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _head(text: str, count: int) -> list[list[str]]:
    rows, seen = [], 0
    for line in _lines(text):
        line = line.strip()
        if not line:
            continue
        seen += 1
        if seen <= count:
            rows.append(["", line])
    if seen > count:
        rows.append(["", "..."])
    return rows


def _metadata_value(value: Any, go_float_g: Any, go_value: Any) -> str:
    from .human import display_width

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return go_float_g(float(value))
    if isinstance(value, list):
        # Fit the first few items in about ten columns, then say how many more there are.
        shown, total_width = 0, 1
        for index, item in enumerate(value):
            width = display_width(go_value(item)) + (2 if index > 0 else 0)
            if total_width + width > 10 and index > 0:
                break
            total_width += width
            shown += 1
        if shown < len(value):
            return go_value(value[:shown])[:-1] + f" ...+{len(value) - shown} more]"
        return go_value(value)
    if value is None:
        return "<nil>"
    return "map[string]interface {}"
