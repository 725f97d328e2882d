"""Helpers shared by the CLI command groups.

The client commands (actions, approve, deny, the offline policy tools) work on the
light install; whatever opens the database or serves imports the server stack only
inside the command, through `require_server`, so `pip install faramesh` can run them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from faramesh.cli.exitcodes import ExitCode, for_status
from faramesh.config import DEFAULT_DATABASE_URL, count_range, parse_count, parse_seconds, shown_database_url
from faramesh.sdk.client import ExecutionGovernorClient
from faramesh.sdk.errors import FarameshAPIError, FarameshClientError, FarameshConnectionError

if TYPE_CHECKING:
    from faramesh.storage import Store

T = TypeVar("T")
N = TypeVar("N", int, float)

# What `pip install "faramesh[server]"` adds; a command that needs one of them says so.
SERVER_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus_client")
SERVER_INSTALL = 'pip install "faramesh[server]"'


class _Checked(click.ParamType[N]):
    """An option read by one of config's parsers, whose ValueError says what is wrong."""

    def parse(self, value: Any) -> N:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> N:
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Seconds(_Checked[float]):
    """A number of seconds, finite and at least `minimum` (`config.parse_seconds`).
    click's FloatRange lets 'nan' and 'inf' through its bounds."""

    name = "seconds"

    def __init__(self, minimum: float) -> None:
        self.minimum = minimum

    def parse(self, value: Any) -> float:
        return parse_seconds(value, self.minimum)


class Count(_Checked[int]):
    """A whole-number setting of `faramesh serve`, in the SETTINGS table's range
    (`config.parse_count`), so the option and its environment variable agree."""

    name = "integer"

    def __init__(self, setting: str) -> None:
        self.minimum, self.maximum = count_range(setting)

    def parse(self, value: Any) -> int:
        return parse_count(value, self.minimum, self.maximum)


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


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn SDK errors into a clear message and the exit code for what went wrong."""
    try:
        yield
    except FarameshAPIError as exc:
        status = f" (action is {exc.current_status})" if exc.current_status else ""
        fail(f"{exc.message}{status} [HTTP {exc.status_code}]", for_status(exc.status_code))
    except FarameshConnectionError as exc:
        fail(str(exc), ExitCode.UNREACHABLE)
    except FarameshClientError as exc:
        fail(str(exc))


@contextmanager
def service_errors() -> Iterator[None]:
    """Errors of the service called directly (keys on the database): the same codes as over HTTP."""
    from faramesh.errors import FarameshError

    try:
        yield
    except FarameshError as exc:
        fail(exc.message, for_status(exc.status_code))


def require_server(command: str) -> None:
    """Exit with the install command when this install lacks the server stack."""
    missing = [name for name in SERVER_MODULES if not _installed(name)]
    if missing:
        fail(
            f"`faramesh {command}` needs the server components, which this install does not have "
            f"(missing: {', '.join(missing)}). Install them with:\n\n    {SERVER_INSTALL}\n",
            ExitCode.USAGE,
        )


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def describe_database(database_url: str) -> str:
    """The database URL as a person should read it: a SQLite file as its absolute path."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and database_url[len(prefix) :] not in ("", ":memory:"):
        return prefix + str(Path(database_url[len(prefix) :]).expanduser().absolute())
    return shown_database_url(database_url)


@contextmanager
def open_store(
    database_url: str, *, command: str, migrate: bool = True, create: bool = True, hint: str = ""
) -> Iterator[Store]:
    """A store on the database, migrated unless told not to. With `create=False` a SQLite
    file that does not exist is refused (exit 2, with `hint`) instead of being created empty."""
    require_server(command)
    from faramesh.storage import Store

    if not create:
        from faramesh.storage.existing import DatabaseUnusable, check_exists

        try:
            check_exists(database_url)
        except DatabaseUnusable as exc:
            fail(f"{exc}{hint}", ExitCode.USAGE)
    from faramesh.storage.errors import DatabaseError, reason

    shown = describe_database(database_url)
    try:
        store = Store(database_url)
    except ValueError as exc:  # a scheme other than sqlite:// or postgresql:// (it says which)
        fail(str(exc), ExitCode.USAGE)
    except DatabaseError as exc:  # a URL that cannot be parsed
        fail(f"cannot use the database URL {shown}: {reason(exc)}", ExitCode.USAGE)
    except OSError as exc:  # the SQLite file's folder cannot be made (a file in the way, no permission)
        fail(f"the database {shown} cannot be used: {exc.strerror or exc}: {exc.filename}", ExitCode.USAGE)
    try:
        if migrate:
            store.upgrade()
        yield store
    except DatabaseError as exc:  # unreachable, refused, unreadable: said in a line, not a traceback
        fail(f"the database {shown} cannot be used: {reason(exc)}", ExitCode.USAGE)
    finally:
        store.close()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows under a header row, each column as wide as its widest cell; the last column is free."""
    cells = [[str(h) for h in headers], *([("" if c is None else str(c)) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers) - 1)]
    for row in cells:
        click.echo("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip())


def with_progress(items: Iterable[T], label: str, total: int | None) -> Iterator[T]:
    """`items`, with a progress bar on standard error while they are consumed, only when
    standard error is a terminal (never in pipes, files or CI logs). Without `total` the
    bar counts without a percentage."""
    if not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(
        items, length=total, label=label, file=sys.stderr, show_pos=True, show_percent=total is not None
    ) as bar:
        yield from bar
