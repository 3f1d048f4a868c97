"""Where results live: a local path or an object-store URL (gs://, s3://), behind one small API.

Local paths go through ``os``; URLs through fsspec (gcsfs for ``gs://``, s3fs for ``s3://``,
``memory://`` for tests), which the ``cloud`` extra installs. Every write is atomic, so a reader
sees a whole file or none: locally a temporary is fsynced and renamed over the final name; on an
object store a single upload is already all-or-nothing, so the final name is written directly.

Credentials and endpoints come from the environment, as each client library reads them:
``GOOGLE_APPLICATION_CREDENTIALS`` / ``gcloud auth application-default login`` and
``STORAGE_EMULATOR_HOST`` for Cloud Storage; ``AWS_PROFILE`` / ``AWS_ACCESS_KEY_ID`` ... and
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3 and S3-compatible stores.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from grokjax.errors import StorageError

if TYPE_CHECKING:  # fsspec comes with the cloud extra
    from fsspec import AbstractFileSystem

URL = re.compile(r"^(?P<protocol>[A-Za-z][A-Za-z0-9+.-]*)://")
# pathlib.Path("gs://bucket/x") is "gs:/bucket/x": the bug that made a local "gs:" folder.
COLLAPSED_URL = re.compile(r"^(gs|gcs|s3|s3a|memory):/(?!/)")
CLOUD_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs"}
GCS_ADVICE = ("check the bucket name and your Google credentials (gcloud auth "
              "application-default login, or GOOGLE_APPLICATION_CREDENTIALS)")
S3_ADVICE = ("check the bucket name and your AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID "
             "and AWS_SECRET_ACCESS_KEY; AWS_ENDPOINT_URL for an S3-compatible store)")
ADVICE = {None: "choose a directory you can write", "gs": GCS_ADVICE, "gcs": GCS_ADVICE,
          "s3": S3_ADVICE, "s3a": S3_ADVICE}
TEMPORARY_SUFFIX = ".tmp"
# Bytes: a file name on most filesystems; an object key on GCS and S3, less room for the names
# grokjax writes under a sweep directory.
NAME_MAX, KEY_MAX, OWN_NAMES = 255, 1024, 128


@dataclass(frozen=True, init=False)
class Location:
    """A local path (kept as given) or a URL ``protocol://bucket/prefix``; ``file://`` is local.

    ``str()`` gives the path or the URL back.
    """

    protocol: str | None  # None: a local path
    path: str  # the local path, or the URL without its protocol and trailing '/'

    def __init__(self, where: str | os.PathLike | Location) -> None:
        if isinstance(where, Location):
            protocol, path = where.protocol, where.path
        else:
            text = os.fspath(where)
            if COLLAPSED_URL.match(text):
                raise StorageError(f"{text!r} is a URL whose '//' was collapsed by pathlib.Path; "
                                   "pass the URL as a str")
            match = URL.match(text)
            protocol = match["protocol"].lower() if match else None
            path = text[match.end():] if match else text
            if protocol == "file":
                protocol, path = None, "/" + path.lstrip("/")
            elif protocol is not None:
                path = path.rstrip("/")
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "path", path)

    @property
    def is_local(self) -> bool:
        return self.protocol is None

    def join(self, *parts: str) -> Location:
        if self.is_local:
            return Location(os.path.join(self.path, *parts))
        return Location(f"{self.protocol}://{posixpath.join(self.path, *parts)}")

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    def __fspath__(self) -> str:
        """A local path for ``open``, ``pathlib`` and friends; a URL has none."""
        if not self.is_local:
            raise StorageError(f"{self} is not a local path")
        return self.path

    @property
    def parent(self) -> Location:
        """The directory holding this path (the prefix above it, on an object store)."""
        if self.is_local:
            return Location(os.path.dirname(self.path) or ".")
        return Location(f"{self.protocol}://{posixpath.dirname(self.path)}")

    @property
    def name(self) -> str:
        return os.path.basename(self.path) if self.is_local else posixpath.basename(self.path)

    def __str__(self) -> str:
        return self.path if self.is_local else f"{self.protocol}://{self.path}"

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"


Where = Location | str | os.PathLike


def fsspec_filesystem(where: Where) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of a URL and the path inside it (``bucket/prefix``).

    Listings are never cached: other processes add parts while this one polls.
    """
    location = Location(where)
    try:
        from fsspec.core import url_to_fs

        return url_to_fs(str(location), use_listings_cache=False)
    except ImportError as err:
        package = CLOUD_PACKAGES.get(location.protocol)
        if package is None:  # fsspec's own message names the package
            raise StorageError(f"{location}: {err}") from err
        raise StorageError(f"{location} needs {package}: pip install 'grokjax[cloud]'") from err
    except ValueError as err:  # fsspec: "Protocol not known"
        raise StorageError(f"{location}: {err}; use a local path, gs:// or s3://") from err


def write_bytes(where: Where, data: bytes, *, temporary_dir: Where | None = None) -> None:
    """Write a whole file atomically: a reader sees the old content, the new one, or none.

    Locally the data go to a uniquely named temporary in ``temporary_dir`` (default: the target's
    own directory, under a hidden name), which must be on the same filesystem; the temporary is
    fsynced, renamed over the target and the directory fsynced. Object stores take one upload.
    """
    location = Location(where)
    if not location.is_local:
        fs, path = fsspec_filesystem(location)
        fs.pipe_file(path, data)
        return
    directory = os.path.dirname(location.path) or "."
    temporaries = Location(temporary_dir).path if temporary_dir is not None else directory
    os.makedirs(directory, exist_ok=True)
    os.makedirs(temporaries, exist_ok=True)
    temporary = os.path.join(
        temporaries, f".{location.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, location.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def create_bytes(where: Where, data: bytes, *, temporary_dir: Where | None = None) -> None:
    """Write a whole file that must not exist yet: FileExistsError if it does, so that of
    several writers racing to create it exactly one succeeds. Locally a fsynced temporary is
    hard-linked to the name (atomic, also on NFS); object stores take a conditional upload
    (GCS ifGenerationMatch=0, S3 If-None-Match)."""
    location = Location(where)
    if not location.is_local:
        fs, path = fsspec_filesystem(location)
        fs.pipe_file(path, data, mode="create")
        return
    temporary = Location(temporary_dir or location.parent) / (
        f".{location.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    write_bytes(temporary, data)
    os.makedirs(os.path.dirname(location.path) or ".", exist_ok=True)
    try:
        os.link(temporary.path, location.path)
    finally:
        os.unlink(temporary.path)
    _fsync_directory(os.path.dirname(location.path) or ".")


def _fsync_directory(directory: str) -> None:
    """Make a rename durable. POSIX needs the directory's own fsync; Windows cannot open a
    directory and some network/FUSE filesystems refuse the fsync, and those need none."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_text(where: Where, text: str, *, temporary_dir: Where | None = None) -> None:
    write_bytes(where, text.encode(), temporary_dir=temporary_dir)


def read_bytes(where: Where) -> bytes:
    """The file's content; raises FileNotFoundError when it is absent."""
    location = Location(where)
    if location.is_local:
        with open(location.path, "rb") as file:
            return file.read()
    fs, path = fsspec_filesystem(location)
    return fs.cat_file(path)


def read_text(where: Where) -> str:
    """The file's text; raises FileNotFoundError when it is absent."""
    return read_bytes(where).decode()


def exists(where: Where) -> bool:
    """A file or a directory (on an object store: any object under the prefix)."""
    location = Location(where)
    if location.is_local:
        return os.path.exists(location.path)
    fs, path = fsspec_filesystem(location)
    return fs.exists(path)


def listdir(where: Where) -> list[str]:
    """The sorted names directly under a directory (files and subdirectories); [] if absent."""
    location = Location(where)
    if location.is_local:
        try:
            return sorted(os.listdir(location.path))
        except (FileNotFoundError, NotADirectoryError):
            return []
    fs, path = fsspec_filesystem(location)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    # Listing an object's own name gives the object itself: it has no entries.
    names = [posixpath.basename(entry.rstrip("/")) for entry in entries
             if entry.rstrip("/") != path]
    return sorted(names)


def remove(where: Where, *, recursive: bool = False) -> None:
    """Delete one file, or with ``recursive`` a directory and everything under it (every object
    under the prefix). Nothing to do if it is already gone: another process may have won."""
    location = Location(where)
    with contextlib.suppress(FileNotFoundError):
        if location.is_local:
            (shutil.rmtree if recursive else os.unlink)(location.path)
        else:
            fs, path = fsspec_filesystem(location)
            fs.rm(path, recursive=recursive)


def move(source: Where, destination: Where, *, recursive: bool = False) -> None:
    """Rename a file, or with ``recursive`` a directory too (on an object store: copy every
    object, then delete the source)."""
    source, destination = Location(source), Location(destination)
    if source.is_local:
        os.makedirs(os.path.dirname(destination.path) or ".", exist_ok=True)
        os.replace(source.path, destination.path)
        return
    # A copy (within the store) then a delete is what fs.mv does; gcsfs's own mv hangs against
    # the Cloud Storage emulator the tests use.
    fs, path = fsspec_filesystem(source)
    fs.copy(path, fsspec_filesystem(destination)[1], recursive=recursive)
    fs.rm(path, recursive=recursive)


def makedirs(where: Where) -> None:
    """Create a local directory and its parents; object stores have no directories."""
    location = Location(where)
    if location.is_local:
        os.makedirs(location.path, exist_ok=True)


def check_writable(where: Where) -> None:
    """Write and delete a small probe under ``where``, so that a destination that cannot be
    written is refused before any compute. Creates a local directory. Raises StorageError."""
    location = Location(where)
    _check_name_lengths(location)
    probe = location.join(f"_probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        makedirs(location)
        write_bytes(probe, b"grokjax write probe\n")
        remove(probe)
    except StorageError:
        raise
    except Exception as err:
        lines = str(err).strip().splitlines()  # client errors can run to pages
        reason = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
        advice = ADVICE.get(location.protocol, "choose a location you can write")
        raise StorageError(f"cannot write to {location} ({reason}); {advice}") from err


def _check_name_lengths(location: Location) -> None:
    """Refuse a name the filesystem or store would refuse, before anything is created."""
    if location.is_local:
        too_long = [part for part in location.path.split(os.sep)
                    if len(part.encode()) > NAME_MAX]
        if too_long:
            raise StorageError(f"{location}: the name {too_long[0][:40]}... has "
                               f"{len(too_long[0].encode())} bytes, more than the {NAME_MAX} a "
                               "file name may have; choose a shorter name (--out, or the "
                               "sweep's name)")
    elif len(location.path.encode()) > KEY_MAX - OWN_NAMES:
        raise StorageError(f"{location}: the path has {len(location.path.encode())} bytes; an "
                           f"object key may have {KEY_MAX}, and grokjax needs {OWN_NAMES} of "
                           "them for its own names: choose a shorter one")


def pyarrow_filesystem(where: Where) -> tuple[pa.fs.FileSystem, str]:
    """A pyarrow filesystem and the path in it, for pyarrow/pandas readers of any location."""
    location = Location(where)
    if location.is_local:
        return pa.fs.LocalFileSystem(), os.path.abspath(location.path)
    fs, path = fsspec_filesystem(location)
    return pa.fs.PyFileSystem(pa.fs.FSSpecHandler(fs)), path


def read_parquet_dir(where: Where) -> pd.DataFrame:
    """Every ``*.parquet`` directly under a directory as one DataFrame, with the dtypes that
    ``pandas.read_parquet`` gives; names starting with '_' or '.' are skipped, as pandas does.
    Parts with other columns (a sweep that grew a grid with diagnostics) keep them all, null
    where absent, where ``pandas.read_parquet`` keeps only the first part's columns. Raises
    FileNotFoundError when there is no part."""
    location = Location(where)
    names = [name for name in listdir(location)
             if name.endswith(".parquet") and not name.startswith(("_", "."))]
    if not names:
        raise FileNotFoundError(f"no Parquet part files in {location}")
    fs, path = pyarrow_filesystem(location)
    join = os.path.join if location.is_local else posixpath.join
    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:  # a bucket's latency
        parts = list(pool.map(lambda name: pq.read_table(join(path, name), filesystem=fs),
                              names))
    if all(part.schema.equals(parts[0].schema) for part in parts):
        return pa.concat_tables(parts).to_pandas()
    return pd.concat([part.to_pandas() for part in parts], ignore_index=True)
