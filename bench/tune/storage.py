"""Where a search lives: an Optuna RDB storage, by default an SQLite file in the results directory.

A killed search resumes from it, and several workers (``bench sweep --tune``) share it. A URL is
checked before anything is written: an unreachable database is one line, not a stack of SQL errors.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import sqlalchemy
from filelock import FileLock
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bench.store.results import check_writable_directory
from registry import ConfigError

SCHEMES = ("sqlite", "postgresql", "mysql")
SQLITE_TIMEOUT_S = 600  # several workers write one file: wait for its lock rather than fail


def tuning_directory(results_dir: Path, dataset: str) -> Path:
    """The trials' own results store (their rows and configs) and the default storage live here."""
    return Path(results_dir) / "tuning" / dataset


def storage_url(given: str | None, results_dir: Path, dataset: str) -> str:
    """``--storage`` as given (``postgresql://`` through psycopg 3), else the search file of the results directory."""
    if given is None:
        return f"sqlite:///{(tuning_directory(results_dir, dataset) / 'study.db').resolve()}"
    try:
        url = make_url(given)
    except ArgumentError:
        url = None
    if url is None or url.get_backend_name() not in SCHEMES:
        raise ConfigError(f"--storage {given!r} is not a database URL; expected sqlite:///FILE or "
                          f"postgresql://USER@HOST/DB")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def check_storage(url: str) -> None:
    """Refuse, before anything is written, a storage that cannot be reached or created."""
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database:
            raise ConfigError(f"--storage {shown}: an SQLite storage needs a file, e.g. sqlite:///study.db")
        check_writable_directory(Path(parsed.database).parent, "--storage")
        return
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args={"connect_timeout": 10})
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--storage {shown} needs the database driver {exc.name}; expected it installed "
                          f"(pip install 'psycopg[binary]' for PostgreSQL)") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise ConfigError(f"cannot reach --storage {shown} ({reason})") from None
    finally:
        engine.dispose()


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage, its tables created on first use by one worker at a time (two workers creating them at once
    collide); SQLite waits for a busy file instead of failing."""
    if make_url(url).get_backend_name() != "sqlite":
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError:  # another worker created the tables meanwhile: they are there now
            time.sleep(1)
            return optuna.storages.RDBStorage(url)
    database = Path(make_url(url).database)
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(database.with_name(f".{database.name}.lock")):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
