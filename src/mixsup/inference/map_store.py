"""Per-slide probability-map stores (zarr, compressed), written as results arrive and read back
by reference, so that no step holds more than one chunk of a slide's maps in memory.

A store holds ``coords`` (N, 2) level-0 patch corners, ``max_prob`` (N,) and ``prob``
(N, m, m) float16 reduced-resolution maps; it appears atomically when complete.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mixsup.errors import MixsupError
from mixsup.inference.patch_maps import PatchMaps
from mixsup.storage.artefacts import new_group, open_store
from mixsup.storage.user_files import finite, own_file

STORE_VERSION = 2
CHUNK = 256  # patches per zarr chunk: the unit of every read and write


class LazyMaps:
    """The (N, m, m) ``prob`` array of a store, read on demand; iteration goes chunk by chunk.
    A chunk that cannot be decoded is a ``MixsupError`` naming the store (``path``)."""

    def __init__(self, array: zarr.Array, path: Path | None = None) -> None:
        self._array = array
        self._path = path

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, np.ndarray | list):
            idx = np.asarray(key)
            if idx.dtype == bool:
                idx = np.nonzero(idx)[0]
            if len(idx) == 0:
                return np.zeros((0, *self.shape[1:]), np.float16)
            return decoded(self._array.oindex.__getitem__, idx.astype(np.int64), self._path)
        return decoded(self._array.__getitem__, key, self._path)

    def __iter__(self) -> Iterator[np.ndarray]:
        for a in range(0, len(self), CHUNK):
            yield from decoded(self._array.__getitem__, slice(a, a + CHUNK), self._path)


@dataclass
class StoredMaps:
    """One slide's maps by reference: coords and max probabilities in memory, maps on disk."""

    path: Path
    coords: np.ndarray
    max_prob: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def maps(self) -> LazyMaps:
        return LazyMaps(_array(open_store(self.path), "prob", self.path), self.path)

    @property
    def size0(self) -> float:
        """The level-0 side of the patches (``attrs["size0"]``), refused unless a number >= 1."""
        with own_file(self.path, "map store", MAPS_FIX):
            return finite(self.attrs.get("size0"), "size0", low=1.0)

    @property
    def pixel_fraction(self) -> float:
        """Fraction of map pixels with p >= 0.5."""
        return float(self.attrs.get("pixel_fraction", 0.0))


@dataclass
class _Run:
    """Consecutive rows of one store; ``start`` is the first row not yet sent to be written."""

    start: int
    blocks: list[np.ndarray] = field(default_factory=list)
    rows: int = 0


class MapWriter:
    """Write one slide's maps as blocks arrive, each at its rows; ``finish`` publishes the
    store atomically.

    Memory: the chunk being filled plus at most ``IN_FLIGHT`` chunks queued for the writer
    thread, whatever the slide's size.
    """

    def __init__(self, path: str | Path, coords: np.ndarray, m: int,
                 attrs: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.coords = np.asarray(coords, np.int64).reshape(-1, 2)
        self.n, self.m = len(self.coords), m
        self.attrs = dict(attrs)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-",
                                          dir=self.path.parent))
        self._group = new_group(self._tmp / "g.zarr")
        self._group.create_array("coords", data=self.coords)
        self._prob = self._group.create_array("prob", shape=(self.n, m, m), dtype="float16",
                                              chunks=(max(1, min(self.n, CHUNK)), m, m))
        self.max_prob = np.zeros(self.n, np.float32)
        self._runs: dict[int, _Run] = {}  # keyed by the row that would continue each run
        self._next = 0
        self._received = 0
        self._positive = 0
        self._in_flight: deque[Future[None]] = deque()

    def write(self, maps: np.ndarray, max_prob: np.ndarray, offset: int | None = None) -> None:
        """Rows ``offset`` onwards (by default, right after the previous write). Loader
        workers deliver one stretch each, so a slide may arrive as a few runs of rows."""
        k = len(maps)
        offset = self._next if offset is None else offset
        if offset < 0 or offset + k > self.n:
            raise ValueError(f"{self.path.name}: rows {offset}..{offset + k} outside its "
                             f"{self.n} patches")
        self.max_prob[offset:offset + k] = max_prob
        self._positive += int((maps >= 0.5).sum())
        self._received += k
        run = self._runs.pop(offset, None) or _Run(offset)
        run.blocks.append(np.asarray(maps, np.float16))
        run.rows += k
        if run.rows >= CHUNK:
            self._send(run, whole_chunks=True)
        self._next = offset + k
        self._runs[self._next] = run

    def _send(self, run: _Run, whole_chunks: bool) -> None:
        if not run.rows:
            return
        data = np.concatenate(run.blocks)
        take = len(data) // CHUNK * CHUNK if whole_chunks else len(data)
        if take:
            # Compressing and writing happen on the writer thread, so that the inference loop
            # goes on; at most IN_FLIGHT blocks wait there, which bounds the memory. One thread
            # runs them in order, so two runs' writes into one chunk cannot interleave.
            while len(self._in_flight) >= IN_FLIGHT:
                self._in_flight.popleft().result()
            region = slice(run.start, run.start + take)
            self._in_flight.append(_writer().submit(self._prob.__setitem__, region, data[:take]))
            run.start += take
        rest = data[take:]
        run.blocks, run.rows = ([rest], len(rest)) if len(rest) else ([], 0)

    def _drain(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()

    def finish(self) -> StoredMaps:
        try:
            for run in self._runs.values():
                self._send(run, whole_chunks=False)
            self._runs.clear()
            self._drain()
        except BaseException:
            self.abort()
            raise
        if self._received != self.n:
            self.abort()
            raise ValueError(f"{self.path.name}: {self._received} of {self.n} patches written")
        pixels = self.n * self.m * self.m
        self.attrs.update({"version": STORE_VERSION, "n_patches": self.n,
                           "pixel_fraction": self._positive / pixels if pixels else 0.0})
        self._group.create_array("max_prob", data=self.max_prob)
        self._group.attrs.update(self.attrs)
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._tmp / "g.zarr", self.path)
        shutil.rmtree(self._tmp, ignore_errors=True)
        return StoredMaps(self.path, self.coords, self.max_prob, self.attrs)

    def abort(self) -> None:
        for f in self._in_flight:
            f.cancel()
        wait(list(self._in_flight))
        self._in_flight.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)


IN_FLIGHT = 2  # blocks of maps queued for the writer thread, per store


@functools.cache
def _writer_for(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="mixsup-mapstore")


def _writer() -> ThreadPoolExecutor:
    """One writer thread per process (``pid``: a forked child gets its own)."""
    return _writer_for(os.getpid())


def write_maps(path: str | Path, coords: np.ndarray, maps: PatchMaps,
               attrs: dict[str, Any]) -> StoredMaps:
    """Write a slide's in-memory maps to ``path``; readers never see a partial store."""
    writer = MapWriter(path, coords, int(maps.maps.shape[-1]), attrs)
    try:
        writer.write(maps.maps, maps.max_prob)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def decoded(read: Callable[[Any], Any], key: Any, path: Path | None) -> np.ndarray:
    """``read(key)`` (a zarr read) as an array; a chunk that its codec cannot decode (zstd raises
    ``RuntimeError`` on a truncated or overwritten chunk) or that decodes to the wrong size is
    a ``MixsupError`` naming the store."""
    try:
        return np.asarray(read(key))
    except (RuntimeError, ValueError) as exc:
        raise MixsupError(f"a chunk of the map store cannot be decoded ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''})", MAPS_FIX,
                          path) from None


def _array(group: zarr.Group, name: str, path: Path) -> zarr.Array:
    """The array ``name`` of the store at ``path``; a group or other node there is refused."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise MixsupError(f"{name!r} in the map store is a {type(node).__name__}, not an array",
                          "delete the store so that mixsup recomputes it", path)
    return node


MAPS_FIX = ("delete the store: mixsup computes it again (a run's E-step maps on "
            "`mixsup train --resume`)")


def open_maps(path: str | Path, expect_key: str | None = None) -> StoredMaps | None:
    """The store at ``path`` by reference, or None when absent, stale or unreadable (the
    caller computes it again)."""
    try:
        return read_maps(path, expect_key) if Path(path).is_dir() else None
    except Exception:
        return None


def read_maps(path: str | Path, expect_key: str | None = None) -> StoredMaps:
    """The store at ``path`` by reference; one that is missing, stale, unreadable or whose
    arrays do not fit together is a ``MixsupError`` naming it."""
    path = Path(path)
    with own_file(path, "map store", MAPS_FIX):
        group = open_store(path)
        attrs = dict(group.attrs)
        if attrs.get("version") != STORE_VERSION:
            raise ValueError(f"store version {attrs.get('version')!r}, not {STORE_VERSION}")
        if expect_key is not None and attrs.get("key") != expect_key:
            raise ValueError("made from another tiling")
        coords = decoded(_array(group, "coords", path).__getitem__, slice(None), path)
        max_prob = decoded(_array(group, "max_prob", path).__getitem__, slice(None), path)
        prob = _array(group, "prob", path).shape
        n = len(coords)
        if (coords.shape != (n, 2) or max_prob.shape != (n,) or len(prob) != 3
                or prob[0] != n or prob[1] != prob[2] or attrs.get("n_patches") != n):
            raise ValueError(f"arrays of shapes coords {coords.shape}, max_prob "
                             f"{max_prob.shape}, prob {prob} for {attrs.get('n_patches')} "
                             "patches")
        if not ((max_prob >= 0) & (max_prob <= 1)).all():  # NaN fails both
            raise ValueError("max_prob holds values outside [0, 1] (NaN?)")
    return StoredMaps(path, coords, max_prob, attrs)


def finite_maps(maps: StoredMaps) -> np.ndarray:
    """All of a store's (N, m, m) probability maps, refused where one is NaN or infinite."""
    values = maps.maps[:]
    if not np.isfinite(values).all():
        raise MixsupError("the map store holds NaN or infinite probabilities", MAPS_FIX,
                          maps.path)
    return values
