"""``corral prune``: list and remove partial downloads and abandoned temporary files.

It works on the model store itself (OLLAMA_MODELS), not through a server: what a running pull,
create or upload is working on is locked by that process and kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click


@click.command("prune")
@click.option("--dry-run", "-n", is_flag=True, help="Only list what would be removed.")
@click.pass_obj
def prune_command(state: Any, dry_run: bool) -> None:
    """Remove partial downloads and abandoned temporary files.

    Lists each leftover in the model store with its size and age, and removes those that no
    running pull, create or upload is working on. A removed partial download starts again from
    zero the next time it is pulled. At start-up the server removes abandoned temporary files
    itself, and partial downloads older than store.partial_max_age (168h).

    \b
    Example:
      corral prune --dry-run
      corral prune
    """
    import anyio

    from .human import human_bytes, human_duration
    from .table import columns

    store = state.kernel().store

    async def run() -> None:
        leftovers = await store.leftovers()
        if not leftovers:
            click.echo(f"nothing to remove in {store.location}")
            return
        now = dt.datetime.now(dt.timezone.utc)
        rows, freed, removed = [], 0, 0
        for leftover in leftovers:
            if leftover.in_use:
                status = "in use, kept"
            elif dry_run:
                status = "would remove"
            elif await store.remove_leftover(leftover):
                status = "removed"
                freed += leftover.size
                removed += 1
            else:
                status = "in use, kept"
            age = human_duration(max(0.0, (now - leftover.modified).total_seconds())) + " old"
            rows.append([status, human_bytes(leftover.size), age, leftover.kind, leftover.name])
        click.echo(columns(["STATUS", "SIZE", "AGE", "KIND", "PATH"], rows))
        if not dry_run:
            click.echo(f"\nremoved {removed} of {len(leftovers)}, freed {human_bytes(freed)} in {store.location}")

    anyio.run(run)
