"""``corral pull`` and ``corral push``: stream /api/pull and /api/push and draw the progress.

On a terminal, rich draws one bar per layer (size, speed, time left) and a spinner for the other
steps; otherwise each step is one plain line, so logs and pipes stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click

from .model_commands import EPILOG, connect


@click.command("pull", epilog=EPILOG)
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http, as for a local one).")
@click.pass_obj
def pull_command(state: Any, model: str, insecure: bool) -> None:
    """Pull a model from a registry.

    The download resumes where an interrupted one stopped, and only the layers the store lacks
    are fetched.

    \b
    Example:
      corral pull llama3.2
      corral pull --insecure localhost:5000/library/smollm2:135m
    """
    with connect(state) as client:
        show_progress(client.stream("POST", "/api/pull", {"model": model, "insecure": insecure}))


@click.command("push", epilog=EPILOG)
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http, as for a local one).")
@click.pass_obj
def push_command(state: Any, model: str, insecure: bool) -> None:
    """Push a model to a registry.

    The model's name says where: copy it under the registry's name first (`corral cp`). Layers the
    registry already has are not sent again.

    \b
    Example:
      corral cp smollm2 localhost:5000/me/smollm2
      corral push --insecure localhost:5000/me/smollm2
    """
    from corral import DEFAULT_HOST, CorralError, parse_reference

    with connect(state) as client:
        try:
            show_progress(client.stream("POST", "/api/push", {"model": model, "insecure": insecure}))
        except CorralError as error:
            if "access denied" in error.message or "unauthorized" in error.message:
                raise CorralError("you are not authorized to push to this namespace, "
                                  "create the model under a namespace you own") from None
            raise
    ref = parse_reference(model)
    if ref.host.lower() in (DEFAULT_HOST, "ollama.com"):
        click.echo(f"\nYou can find your model at:\n\n\thttps://ollama.com/{ref.namespace}/{ref.model}")


def show_progress(lines: Iterator[dict[str, Any]]) -> None:
    if sys.stdout.isatty():
        _rich_progress(lines)
    else:
        _plain_progress(lines)


def _plain_progress(lines: Iterator[dict[str, Any]]) -> None:
    from .human import human_bytes

    last_status = None
    finished: set[str] = set()
    for line in lines:
        status, digest = line.get("status", ""), line.get("digest")
        total, completed = int(line.get("total") or 0), int(line.get("completed") or 0)
        if digest:
            if digest not in finished and total and completed >= total:
                finished.add(digest)
                click.echo(f"{status}: 100% {human_bytes(total)}")
        elif status and status != last_status:
            click.echo(status)
        last_status = status


def _rich_progress(lines: Iterator[dict[str, Any]]) -> None:
    from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    columns = (SpinnerColumn(finished_text=" "), TextColumn("{task.description}"), BarColumn(),
               DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    tasks: dict[str, Any] = {}
    with Progress(*columns, transient=False) as progress:
        step = None
        for line in lines:
            status, digest = line.get("status", ""), line.get("digest")
            if digest:
                total, completed = int(line.get("total") or 0), int(line.get("completed") or 0)
                if digest not in tasks:
                    tasks[digest] = progress.add_task(status, total=total or None, completed=completed)
                progress.update(tasks[digest], total=total or None, completed=completed)
                continue
            if step is not None:
                progress.update(step, total=1, completed=1)
            step = progress.add_task(status, total=None) if status != "success" else None
            if status == "success":
                progress.console.print("success")
        if step is not None:
            progress.update(step, total=1, completed=1)
