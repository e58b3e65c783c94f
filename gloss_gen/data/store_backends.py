"""The store's two key-value backends over bytes: Redis and a jailed directory.

:class:`gloss_gen.data.store.Store` adds the typed operations on top; this module knows only
keys and bytes. Directory keys are encoded per part so no key can leave the root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

from gloss_gen.core.errors import InputError, UnavailableError


class StoreError(UnavailableError):
    """The store cannot be reached; the message says which store (never its password)."""

    code = "store_unavailable"


class KVBackend(ABC):
    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    def set_if_absent(self, key: str, value: bytes) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def keys(self, prefix: str) -> Iterator[str]: ...

    @abstractmethod
    def update(self, key: str, change: Callable[[bytes | None], bytes | None],
               claim: tuple[str, str, bytes] | None = None) -> bool:
        """Replace the value of ``key`` by ``change(current)`` atomically: no concurrent writer's
        update is lost. ``change`` may run more than once and returns ``None`` to write nothing.

        With ``claim=(hash_key, field, value)``: only while ``field`` is absent from that hash,
        and ``field`` is set in the same transaction. Whether anything was written.
        """

    @abstractmethod
    def hash_set(self, key: str, mapping: dict[str, bytes]) -> None: ...

    @abstractmethod
    def hash_get_all(self, key: str) -> dict[str, bytes]: ...

    @abstractmethod
    def hash_has(self, key: str, field: str) -> bool: ...

    @abstractmethod
    def hash_len(self, key: str) -> int: ...

    def ping(self) -> bool:
        return True

    def describe(self) -> str:
        return type(self).__name__


class RedisBackend(KVBackend):
    def __init__(self, url: str, client=None):
        import redis

        self.url = url
        self.client = client or redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)

    def _call(self, fn, *args):
        import redis

        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self.describe()} is unavailable: {exc}") from exc

    def get(self, key):
        return self._call(self.client.get, key)

    def set(self, key, value):
        self._call(self.client.set, key, value)

    def set_if_absent(self, key, value):
        return bool(self._call(lambda: self.client.set(key, value, nx=True)))

    def delete(self, key):
        self._call(self.client.delete, key)

    def keys(self, prefix):
        for key in self._call(lambda: list(self.client.scan_iter(match=_redis_glob(prefix) + "*", count=500))):
            yield key.decode() if isinstance(key, bytes) else key

    def update(self, key, change, claim=None):
        from redis.exceptions import WatchError

        def transaction() -> bool:
            with self.client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(key, *([claim[0]] if claim else []))
                        if claim is not None and pipe.hexists(claim[0], claim[1]):
                            return False
                        value = change(pipe.get(key))
                        if value is None:
                            return False
                        pipe.multi()
                        if claim is not None:
                            pipe.hset(*claim)
                        pipe.set(key, value)
                        pipe.execute()
                        return True
                    except WatchError:
                        continue  # another writer came first: read again

        return self._call(transaction)

    def hash_set(self, key, mapping):
        if mapping:
            self._call(lambda: self.client.hset(key, mapping=mapping))

    def hash_get_all(self, key):
        raw = self._call(self.client.hgetall, key)
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}

    def hash_has(self, key, field):
        return bool(self._call(self.client.hexists, key, field))

    def hash_len(self, key):
        return int(self._call(self.client.hlen, key))

    def ping(self):
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def describe(self):
        parsed = urllib.parse.urlsplit(self.url)
        host = parsed.hostname or "localhost"
        return f"redis://{host}:{parsed.port or 6379}{parsed.path or ''}"  # no password in messages


def _redis_glob(prefix: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix)


class InvalidStoreKey(InputError):
    """A key the directory store cannot hold (a part too long for a file name, or not text)."""

    code = "invalid_store_key"


MAX_KEY_PART_BYTES = 240
"""Longest encoded key part (file systems allow 255 bytes per name; '.tmp-' files need room)."""


def encode_key_part(part: str) -> str:
    """One key part as one safe file name; :func:`decode_key_part` reverses it.

    Everything but ASCII letters, digits, '-', '_' and '.' is percent-encoded (so '/', '\\', NUL
    and ':' never reach the file system), a leading '.' becomes '%2E' (so '.' and '..' never appear, and temp and lock files stay apart), and the empty
    part becomes '%' (which percent-encoding never produces alone). Normal parts keep the
    encoding earlier stores were written with.
    """
    if part == "":
        return "%"
    try:
        encoded = urllib.parse.quote(part, safe="-_.", errors="strict")
    except UnicodeEncodeError:
        raise InvalidStoreKey("a store key part is not valid text") from None
    if encoded.startswith("."):  # never '.' or '..', nor mistaken for a temp or lock file
        encoded = "%2E" + encoded[1:]
    if len(encoded.encode()) > MAX_KEY_PART_BYTES:
        raise InvalidStoreKey(f"a store key part is too long ({len(encoded)} characters encoded)")
    return encoded


def decode_key_part(name: str) -> str:
    return "" if name == "%" else urllib.parse.unquote(name, errors="strict")


def _clash() -> InvalidStoreKey:
    return InvalidStoreKey("a store key clashes with another key's file in the directory store")


class DirectoryBackend(KVBackend):
    """One file per key under ``root``; writes are atomic (temp file + rename). A hash is a folder
    with one file per field. :meth:`update` holds an exclusive ``flock`` on a lock file beside
    the key, so threads and processes sharing the directory do not lose each other's updates.

    A key is split on ':' and each part (and each hash field) encoded by :func:`encode_key_part`,
    so no key, whatever it holds, names a path outside ``root``; the resolved path is checked to
    be inside ``root`` too (a symlink planted in the store cannot lead out). A key that cannot be
    stored (a part too long for a file name) is absent on reads and refused with
    :class:`InvalidStoreKey` on writes.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._resolved_root = self.root.resolve()

    def _path(self, key: str) -> Path:
        return self._contained(self.root.joinpath(*(encode_key_part(p) for p in key.split(":"))))

    def _contained(self, path: Path) -> Path:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # a path too long, a symlink loop
            raise InvalidStoreKey(f"a store key cannot be a file name ({type(exc).__name__})") from None
        if self._resolved_root not in resolved.parents:
            raise InvalidStoreKey("a store key leads outside the store")
        return path

    def _path_or_none(self, key: str) -> Path | None:
        try:
            return self._path(key)
        except InvalidStoreKey:
            return None

    def get(self, key):
        path = self._path_or_none(key)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def set(self, key, value):
        self._write(self._path(key), value)

    @staticmethod
    def _write(path: Path, value: bytes) -> None:
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            os.replace(tmp, path)
        except IsADirectoryError:
            Path(tmp).unlink(missing_ok=True)
            raise _clash() from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set_if_absent(self, key, value):
        path = self._path(key)
        _make_parent(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
        return True

    def delete(self, key):
        path = self._path_or_none(key)
        if path is not None and not path.is_dir():
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        path = self._path(key)
        _make_parent(path)
        with open(path.parent / f".lock-{path.name}", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _field_path(self, key: str, field: str) -> Path:
        return self._contained(self._path(key) / encode_key_part(field))

    def update(self, key, change, claim=None):
        with self._locked(key):
            if claim is not None and self.hash_has(claim[0], claim[1]):
                return False
            value = change(self.get(key))
            if value is None:
                return False
            if claim is not None:
                self._write(self._field_path(claim[0], claim[1]), claim[2])
            self.set(key, value)
            return True

    def hash_set(self, key, mapping):
        for field, value in mapping.items():
            self._write(self._field_path(key, field), value)

    def hash_get_all(self, key):
        folder = self._path_or_none(key)
        if folder is None or not folder.is_dir():
            return {}
        return {decode_key_part(p.name): p.read_bytes()
                for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}

    def hash_has(self, key, field):
        try:
            return self._field_path(key, field).is_file()
        except InvalidStoreKey:
            return False

    def hash_len(self, key):
        return len(self.hash_get_all(key))

    def keys(self, prefix):
        base = self._path_or_none(prefix.rstrip(":")) if prefix.endswith(":") else self._path_or_none(prefix)
        if base is None:
            return
        if not prefix.endswith(":"):
            base = base.parent
        if not base.is_dir():
            return
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith((".tmp-", ".lock-")):
                rel = path.relative_to(self.root)
                try:
                    key = ":".join(decode_key_part(p) for p in rel.parts)
                except UnicodeDecodeError:
                    continue  # not a file this store wrote
                if key.startswith(prefix):
                    yield key

    def describe(self):
        return str(self.root)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _clash() from None
