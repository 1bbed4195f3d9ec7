"""Data roots as local paths or URIs (`s3://bucket/prefix`, `gs://...`, any `pyarrow.fs` scheme).

`root_path(root)` gives a `pathlib.Path` for a local root (everything local works as before) and an
`ObjectPath` for a URI: the part of `Path`'s interface the data code uses (`/`, `name`, `parent`,
`is_file`, `read_bytes`, `glob`, `unlink`, ...), backed by the filesystem `pyarrow.fs` opens for
the URI. Credentials and endpoints come from the standard variables and files of each store
(for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, ~/.aws/config), read by the store's own client: an
`ObjectPath` holds and pickles only its URI, so no secret travels to Ray workers or into a log.

Object stores have no rename: an object appears only once its upload completes, so `write_bytes`
is atomic by itself, and `replace` (a staged part moved to its final key) is a server-side copy
followed by deleting the staged object.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from ray_macaw.errors import DataError

_FILESYSTEMS: dict[str, pafs.FileSystem] = {}  # per process, keyed by 'scheme://bucket'
_CREDENTIALS_FIX = (
    "check the URI and the store's credentials and endpoint (for S3: AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL) on every node"
)


class StorageError(DataError):
    """A data root URI that cannot be opened, or an object that cannot be read or written."""


def is_uri(root: object) -> bool:
    """Whether `root` names a non-local location (`scheme://...` other than `file://`)."""
    if isinstance(root, ObjectPath):
        return True
    text = str(root)
    return "://" in text and not text.startswith("file://")


def root_path(root: str | Path | ObjectPath) -> Path | ObjectPath:
    """A local `Path` (also for `file://` URIs), or an `ObjectPath` for any other URI."""
    if isinstance(root, ObjectPath | Path):
        return root
    text = str(root)
    if text.startswith("file://"):
        return Path(urlsplit(text).path)
    return ObjectPath(text) if is_uri(text) else Path(text)


def location(root: str | Path | ObjectPath) -> str:
    """How a root is named in settings and records: a URI as given, a local path absolute."""
    path = root_path(root)
    return str(path) if isinstance(path, ObjectPath) else str(path.expanduser().resolve())


class ObjectPath:
    """A file or directory named by a URI on a `pyarrow.fs` filesystem.

    Args:
        uri: `scheme://bucket/key...`; trailing slashes are dropped.
    """

    __slots__ = ("_key", "_scheme")

    def __init__(self, uri: str) -> None:
        scheme, sep, rest = str(uri).partition("://")
        if not sep or not scheme or not rest.strip("/"):
            raise StorageError(
                f"'{uri}' is not a storage URI",
                "write it as scheme://bucket/prefix, e.g. s3://my-bucket/data",
            )
        self._scheme = scheme.lower()
        self._key = posixpath.normpath(rest.strip("/"))

    # -- naming ------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The path inside the filesystem: 'bucket/prefix/...'."""
        return self._key

    @property
    def name(self) -> str:
        """The last component."""
        return posixpath.basename(self._key)

    @property
    def stem(self) -> str:
        """The last component without its suffix."""
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        """The last component's suffix ('.parquet')."""
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ObjectPath:
        """The containing prefix (the bucket is its own parent)."""
        head = posixpath.dirname(self._key)
        return ObjectPath(f"{self._scheme}://{head or self._key}")

    def __truediv__(self, other: str | Path) -> ObjectPath:
        return ObjectPath(f"{self}/{str(other).strip('/')}")

    def with_name(self, name: str) -> ObjectPath:
        """The sibling called `name`."""
        return self.parent / name

    def with_suffix(self, suffix: str) -> ObjectPath:
        """The same name with another suffix."""
        return self.parent / f"{self.stem}{suffix}"

    def resolve(self) -> ObjectPath:
        """A URI is already absolute."""
        return self

    def expanduser(self) -> ObjectPath:
        """A URI has no home directory."""
        return self

    def __str__(self) -> str:
        return f"{self._scheme}://{self._key}"

    def __repr__(self) -> str:
        return f"ObjectPath('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (str(self),)

    # -- the filesystem ----------------------------------------------------------------------

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The `pyarrow.fs` filesystem of this URI (opened once per process and bucket)."""
        bucket = self._key.split("/", 1)[0]
        cache_key = f"{self._scheme}://{bucket}"
        if cache_key not in _FILESYSTEMS:
            try:
                _FILESYSTEMS[cache_key], _ = pafs.FileSystem.from_uri(cache_key)
            except (OSError, ValueError, TypeError) as e:
                raise StorageError(f"cannot open the storage ({e})", _CREDENTIALS_FIX, self) from e
        return _FILESYSTEMS[cache_key]

    def _info(self) -> pafs.FileInfo:
        try:
            return self.filesystem.get_file_info(self._key)
        except OSError as e:
            raise StorageError(f"cannot reach the object ({e})", _CREDENTIALS_FIX, self) from e

    def exists(self) -> bool:
        """A file or a non-empty prefix is there."""
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        """An object is stored under this key."""
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        """Objects are stored under this prefix (or it is a bucket)."""
        return self._info().type == pafs.FileType.Directory

    def size(self) -> int:
        """The object's size in bytes."""
        return int(self._info().size)

    def read_bytes(self) -> bytes:
        """The object's bytes.

        Raises:
            FileNotFoundError: No object under this key (callers check `is_file` first).
            StorageError: The store refused or could not be reached.
        """
        try:
            with self.filesystem.open_input_stream(self._key) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise
        except OSError as e:
            raise StorageError(f"cannot read the object ({e})", _CREDENTIALS_FIX, self) from e

    def read_text(self, encoding: str = "utf-8") -> str:
        """The object's bytes, decoded."""
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """Store `data` under this key; the object appears only once complete.

        Raises:
            StorageError: The store refused the write; no object was left half written.
        """
        try:
            with self.filesystem.open_output_stream(self._key) as stream:
                stream.write(data)
        except OSError as e:
            raise StorageError(
                f"could not write {self.name} ({e})",
                _CREDENTIALS_FIX + "; objects written before this one are intact",
                self,
            ) from e
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        """Store `text`, encoded."""
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Prefixes need not be made: an object's key creates them."""

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object."""
        try:
            self.filesystem.delete_file(self._key)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as e:
            raise StorageError(f"cannot delete the object ({e})", _CREDENTIALS_FIX, self) from e

    def iterdir(self) -> Iterator[ObjectPath]:
        """The files and prefixes directly under this prefix."""
        selector = pafs.FileSelector(self._key, allow_not_found=True, recursive=False)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as e:
            raise StorageError(f"cannot list the prefix ({e})", _CREDENTIALS_FIX, self) from e
        for info in sorted(infos, key=lambda i: i.path):
            yield ObjectPath(f"{self._scheme}://{info.path}")

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Paths under this prefix matching a relative `pattern` ('*/manifest.json'), one
        listing per pattern component."""
        found = [self]
        for part in pattern.split("/"):
            if any(c in part for c in "*?["):
                found = [p for d in found for p in d.iterdir() if fnmatch.fnmatchcase(p.name, part)]
            else:
                found = [p for d in found if (p := d / part).exists()]
        yield from found


StoragePath = Path | ObjectPath  # a local file or directory, or one on object storage


def replace(source: Path | ObjectPath, target: Path | ObjectPath) -> None:
    """Move a complete file into place: `os.replace` locally; on object storage a server-side
    copy (the target appears whole or not at all), then the source is deleted."""
    if isinstance(source, ObjectPath) and isinstance(target, ObjectPath):
        try:
            source.filesystem.copy_file(source.key, target.key)
        except OSError as e:
            raise StorageError(f"cannot copy the object ({e})", _CREDENTIALS_FIX, target) from e
        source.unlink(missing_ok=True)
        return
    if isinstance(source, Path) and isinstance(target, Path):
        source.replace(target)
        return
    raise TypeError(f"cannot move {source} to {target}: not on the same storage")


def remove_tree(path: Path | ObjectPath) -> None:
    """Delete a directory (or prefix) and everything under it; nothing there is no error."""
    if isinstance(path, Path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.filesystem.delete_dir_contents(path.key, missing_dir_ok=True)
        if path.is_dir():
            path.filesystem.delete_dir(path.key)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StorageError(f"cannot delete the prefix ({e})", _CREDENTIALS_FIX, path) from e


def local_lock_dir(root: Path | ObjectPath) -> Path:
    """Where this machine keeps the lock files of a root: the root itself when local; for a URI
    (object stores have no locks) a directory of this machine's temporary space named after it."""
    if isinstance(root, Path):
        return root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "ray-macaw-locks" / digest


def download_tree(
    source: ObjectPath, target: Path, skip: Callable[[str], bool] = lambda name: False
) -> int:
    """Copy every object under `source` to the same relative path under `target`, leaving out
    those with a path component for which `skip` is true; returns the number of files."""
    selector = pafs.FileSelector(source.key, allow_not_found=True, recursive=True)
    try:
        infos = source.filesystem.get_file_info(selector)
    except OSError as e:
        raise StorageError(f"cannot list the prefix ({e})", _CREDENTIALS_FIX, source) from e
    copied = 0
    for info in infos:
        relative = posixpath.relpath(info.path, source.key)
        if info.type != pafs.FileType.File or any(skip(p) for p in relative.split("/")):
            continue
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes((source / relative).read_bytes())
        copied += 1
    return copied
