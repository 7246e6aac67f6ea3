"""`onecheck sync run NAME`: one run of a source in the foreground, with a progress bar, then its counts."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from shared.db.engine import Database
from shared.errors import OneCheckError
from shared.settings import Settings

from services.list_sync.runs import Progress as RunProgress
from services.list_sync.runs import execute_run


async def run_in_foreground(
    db: Database, settings: Settings, name: str, *, console: Console | None = None
) -> bool:
    """Run source `name` now; print its counts. False if the run could not start or failed."""
    console = console or Console()
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[pages]} page(s), {task.fields[records]:,} record(s)"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{name}: starting", total=None, pages=0, records=0)

        def report(progress: RunProgress) -> None:
            verb = "fetching" if progress.phase == "fetch" else "applying"
            bar.update(task, description=f"{name}: {verb}", pages=progress.pages, records=progress.records)

        try:
            run = await execute_run(db, settings, name, progress=report)
        except OneCheckError as exc:
            console.print(f"[red]cannot run {name}: {exc.detail}[/red]")
            return False
    assert run is not None  # without `started`, errors raise
    colour = {"succeeded": "green", "held": "yellow"}.get(run["status"], "red")
    console.print(f"run {run['run_id']} of {name}: [{colour}]{run['status']}[/{colour}]")
    table = Table()
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in run["counts"].items():
        table.add_row(key, f"{value:,}")
    console.print(table)
    if run["status"] == "held":
        console.print(
            "[yellow]held: it would end more than ONECHECK_SNAPSHOT_MAX_END_SHARE of the source's entries in "
            f"effect; nothing changed. POST /v1/runs/{run['run_id']}/confirm to apply it, /discard to drop it.[/yellow]"
        )
    if run["error"]:
        console.print(f"[red]{run['error']}[/red]")
    return bool(run["status"] in ("succeeded", "held"))
