"""Helpers shared by the CLI command groups."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from faramesh.config import DEFAULT_DATABASE_URL
from faramesh.sdk.client import ExecutionGovernorClient
from faramesh.sdk.errors import FarameshAPIError, FarameshClientError
from faramesh.storage import Store

T = TypeVar("T")

url_option = click.option(
    "--url",
    envvar=["FARAMESH_URL", "FARAMESH_BASE_URL"],
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Server URL.",
)
key_option = click.option(
    "--api-key", envvar=["FARAMESH_API_KEY", "FARAMESH_TOKEN"], default=None, help="API key (FARAMESH_API_KEY)."
)
database_option = click.option(
    "--database-url",
    envvar="FARAMESH_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="Database URL.",
)


def client(url: str, api_key: str | None) -> ExecutionGovernorClient:
    if not api_key:
        raise click.UsageError("no API key: set FARAMESH_API_KEY or pass --api-key")
    return ExecutionGovernorClient(base_url=url, api_key=api_key)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn SDK errors into a clear message and a non-zero exit code."""
    try:
        yield
    except FarameshAPIError as exc:
        status = f" (action is {exc.current_status})" if exc.current_status else ""
        click.echo(f"Error: {exc.message}{status} [HTTP {exc.status_code}]", err=True)
        sys.exit(1)
    except FarameshClientError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


@contextmanager
def open_store(database_url: str, *, migrate: bool = True) -> Iterator[Store]:
    store = Store(database_url)
    try:
        if migrate:
            store.upgrade()
        yield store
    finally:
        store.close()


def with_store(database_url: str, fn: Callable[[Store], T]) -> T:
    with open_store(database_url) as store:
        return fn(store)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
