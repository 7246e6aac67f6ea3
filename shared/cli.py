"""`onecheck`: run the services, migrate the schema, load the demo, manage clients, sources and the outbox.

Commands that print a secret key print it alone on the last line, so scripts can take it with `tail -n 1`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn

from shared.db.embedded import resolve_database_url
from shared.db.engine import Database
from shared.logging import configure_logging
from shared.settings import Settings

app = typer.Typer(
    help="OneCheck: one-click credit checks for joint reward and punishment (信用奖惩、一键搞定).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data (DOMAIN.md §7).", no_args_is_help=True)
clients_app = typer.Typer(help="API clients and their keys.", no_args_is_help=True)
catalogue_app = typer.Typer(help="The measure catalogue and item mapping.", no_args_is_help=True)
sync_app = typer.Typer(help="List sources.", no_args_is_help=True)
outbox_app = typer.Typer(
    help="The outbox (feedback forwarding, subscription callbacks).", no_args_is_help=True
)
for sub, name in (
    (db_app, "db"),
    (demo_app, "demo"),
    (clients_app, "clients"),
    (catalogue_app, "catalogue"),
    (sync_app, "sync"),
    (outbox_app, "outbox"),
):
    app.add_typer(sub, name=name)

SERVICES = {
    "check-api": "services.check_api.app:app",
    "list-sync": "services.list_sync.app:app",
    "feedback": "services.feedback.app:app",
}

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, json=False)
    return settings


def _url(settings: Settings) -> str:
    return resolve_database_url(settings)


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def runner() -> T:
        db = Database(_url(settings), settings, application_name="onecheck-cli")
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(runner())


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------------- serve


@app.command()
def serve(
    service: Annotated[
        str | None, typer.Argument(help="check-api, list-sync or feedback; omit for all three")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Run all services in one process, or one service alone."""
    settings = _settings()
    if service is not None and service not in SERVICES:
        _fail(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}", 2)
    _url(settings)  # starts the embedded database here, in the parent, shared by every worker
    typer.echo(f"OneCheck {service or 'all services'}: docs at http://{host}:{port}/docs")
    configure_logging(settings.log_level, json=settings.log_json)
    if service is None:
        uvicorn.run(
            "shared.api.combined:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
        )
    else:
        uvicorn.run(
            SERVICES[service], host=host, port=port, workers=workers, log_config=None, access_log=False
        )


# ---------------------------------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "heads") -> None:
    """Migrate the schema to the newest revision (or REVISION)."""
    from shared.db import migrate

    settings = _settings()
    migrate.upgrade(_url(settings), revision)
    typer.echo(
        "schema upgraded to " + ", ".join(sorted(migrate.code_heads())) if revision == "heads" else revision
    )


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")]) -> None:
    """Migrate the schema down to REVISION."""
    from shared.db import migrate

    settings = _settings()
    migrate.downgrade(_url(settings), revision)
    typer.echo(f"schema downgraded to {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is current."""
    from shared.db.migrate import schema_state

    async def work(db: Database) -> None:
        async with db.connection() as conn:
            state = await schema_state(conn)
        typer.echo(
            f"database: {sorted(state.current) or 'empty'}; code: {sorted(state.heads)}; "
            f"{'current' if state.is_current else 'NOT current: run `onecheck db upgrade`'}"
        )

    _with_db(_settings(), work)


# ---------------------------------------------------------------------------------------------------- demo


def _load_demo(settings: Settings) -> str:
    from shared.demo import load_demo

    async def work(db: Database) -> str:
        async with db.session() as session:
            version, made, key = await load_demo(session)
        typer.echo(
            f"demo catalogue: {'version ' + str(version) if version else 'unchanged'}; "
            f"demo entries created: {made}; demo client (all scopes, any department) has a new key:"
        )
        return key

    return _with_db(settings, work)


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo catalogue and subjects and (re)create the demo client; its new key is the last line."""
    settings = _settings()
    key = _load_demo(settings)
    typer.echo(key)


@demo_app.command("run")
def demo_run(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
) -> None:
    """Upgrade the schema, load the demo, print the docs URL and the demo key, and serve everything."""
    from shared.db import migrate

    settings = _settings()
    url = _url(settings)
    migrate.upgrade(url)
    key = _load_demo(settings)
    typer.secho(
        f"\nOneCheck is starting: open http://{host}:{port}/docs and click Authorize with the demo key:",
        bold=True,
    )
    typer.echo(f"  curl -H 'Authorization: Bearer {key}' http://{host}:{port}/v1/items\n")
    typer.echo(key)
    sys.stdout.flush()
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(
        "shared.api.combined:app_factory",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


# ---------------------------------------------------------------------------------------------------- clients


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Option(help="The business system's name (unique)")],
    department: Annotated[str, typer.Option(help="The department's name, as items and entries spell it")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: check,feedback,lists:read,…")],
    any_department: Annotated[
        bool, typer.Option("--any-department", help="May check any department's items")
    ] = False,
) -> None:
    """Create an API client; its key, shown once, is the last line."""
    from shared.clients import ClientError, create_client, parse_scopes

    settings = _settings()
    try:
        scope_list = parse_scopes(scopes)
    except ClientError as exc:
        _fail(str(exc), 2)
        return

    async def work(db: Database) -> str:
        async with db.session() as session:
            client_id, key = await create_client(
                session, name=name, department=department, scopes=scope_list, any_department=any_department
            )
        typer.echo(
            f"client {name} ({client_id}) of {department}, scopes {','.join(scope_list)}"
            f"{', any department' if any_department else ''}. Its key (shown once):"
        )
        return key

    try:
        key = _with_db(settings, work)
    except ClientError as exc:
        _fail(str(exc), 2)
        return
    typer.echo(key)


# ---------------------------------------------------------------------------------------------------- catalogue


@catalogue_app.command("import")
def catalogue_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or XLSX")],
) -> None:
    """Import a measure catalogue and item mapping (Chinese headers); bad rows refuse the whole import."""
    from services.check_api.catalogue_import import CatalogueImportError, import_catalogue_file

    settings = _settings()

    async def work(db: Database) -> None:
        async with db.session() as session:
            result = await import_catalogue_file(session, file.name, file.read_bytes())
        typer.echo(result.summary())

    try:
        _with_db(settings, work)
    except CatalogueImportError as exc:
        typer.secho(f"import refused: {exc}", fg=typer.colors.RED, err=True)
        for problem in exc.problems:
            typer.echo(f"  line {problem['line']}: {problem['msg']}", err=True)
        raise typer.Exit(1) from None


# ---------------------------------------------------------------------------------------------------- sync


@sync_app.command("run")
def sync_run(name: Annotated[str, typer.Argument(help="The source's name")]) -> None:
    """Run one sync of a source in the foreground, with progress; prints the counts."""
    from services.list_sync.runner import run_in_foreground

    settings = _settings()
    ok = _with_db(settings, lambda db: run_in_foreground(db, settings, name))
    if not ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------- outbox


@outbox_app.command("replay")
def outbox_replay() -> None:
    """Re-queue dead letters for delivery."""
    from shared.outbox.relay import replay_dead_letters

    settings = _settings()

    async def work(db: Database) -> int:
        async with db.session() as session:
            count = await replay_dead_letters(session)
            await session.commit()
        return count

    count = _with_db(settings, work)
    typer.echo(f"re-queued {count} dead letter(s)")


def main() -> None:
    logging.captureWarnings(True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
