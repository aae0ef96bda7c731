"""Arrays in files, read a few rows at a time, never whole: a million 64x64 images are 12.7 GB.

``open_array(path, key, dataset)`` returns an :class:`ArraySource` with ``shape``, ``dtype`` and
``read(rows) -> np.ndarray (len(rows), ...)``:

- ``.npy`` and ``.npz`` members stored uncompressed: the rows are read with ``os.preadv`` at their byte
  offset. (Not a memory map: mapped pages count in every worker's resident memory as an epoch touches
  them; ``pread`` goes through the shared page cache instead.)
- ``.npz`` members stored compressed: cannot be read by rows; converted once, by streaming, to an
  uncompressed ``.npy`` cache (what ``ldm-dis data prepare`` does), which is then read as above.
- ``.h5`` / ``.hdf5``: h5py, the file opened lazily in each process (h5py handles must not cross a fork).

Handles are opened on first use in each process and dropped when pickled, so a source is safe to send
to DataLoader workers.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ldm_dis.data.errors import dataset_error

H5_SUFFIXES = (".h5", ".hdf5")


class ArraySource:
    """An array of ``shape`` / ``dtype`` in ``path``; subclasses implement ``_read_rows``."""

    def __init__(self, path: Path, key: str, shape: Tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.key, self.shape, self.dtype = Path(path), key, tuple(int(s) for s in shape), np.dtype(dtype)
        self._handle = None
        self._pid = None
        self.dataset = ""  # the dataset name, for error messages

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_pid": None}

    def _open(self):  # pragma: no cover - interface
        raise NotImplementedError

    def handle(self):
        """The open file of this process (reopened after a fork)."""
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self._open(), os.getpid()
        return self._handle

    def read(self, rows: Sequence[int]) -> np.ndarray:
        """Rows in the given order -> ``(len(rows),) + shape[1:]`` of ``dtype``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range for {len(self)} rows in {self.path}")
        return self._read_rows(rows)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.path}" + (f" [{self.key}]" if self.key else "") + f": {self.dtype} {self.shape}"


class RawArray(ArraySource):
    """C-ordered array bytes at ``offset`` in a file (an .npy, an uncompressed .npz member, a cache)."""

    def __init__(self, path: Path, key: str, shape, dtype, offset: int) -> None:
        super().__init__(path, key, shape, dtype)
        self.offset = int(offset)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def _open(self):
        return os.open(self.path, os.O_RDONLY)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows),) + self.shape[1:], dtype=self.dtype)
        buf = memoryview(out.reshape(len(rows), -1).view(np.uint8))
        fd = self.handle()
        # one read per run of consecutive rows (a whole sequential batch is a single read)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            want = (stop - start) * self.row_bytes
            got = os.preadv(fd, [buf[start:stop].cast("B")], self.offset + int(rows[start]) * self.row_bytes)
            if got != want:
                raise dataset_error(
                    self.dataset, self.path, f"{self.row_bytes * len(self)} bytes of array data", f"a truncated file (read {got} of {want} bytes)"
                )
        return out


class H5Array(ArraySource):
    """A dataset of an HDF5 file (chunked or contiguous, compressed or not)."""

    def _open(self):
        import h5py

        return h5py.File(self.path, "r")

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        ds = self.handle()[self.key]
        if len(rows) and np.all(np.diff(rows) == 1):
            return ds[int(rows[0]) : int(rows[-1]) + 1]
        uniq, inverse = np.unique(rows, return_inverse=True)  # h5py wants increasing indices
        return ds[uniq][inverse]


class InMemoryArray(ArraySource):
    """An array already in memory (small datasets such as Cars3D after resizing)."""

    def __init__(self, array: np.ndarray, path: Path, key: str = "") -> None:
        super().__init__(path, key, array.shape, array.dtype)
        self.array = array

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.array[rows]


# ----------------------------------------------------------------------------------------- opening
def cache_path(path: Path, key: str, cache_dir: Optional[str] = None) -> Path:
    """Where the uncompressed copy of ``path``'s array ``key`` lives: ``<cache_dir or folder>/<stem>.<key>.npy``."""
    path = Path(path)
    return Path(cache_dir or path.parent) / f"{path.stem}.{key}.npy"


def open_array(path, key: str, dataset: str, cache_dir: Optional[str] = None) -> ArraySource:
    """The array ``key`` of ``path`` (.npy: ``key`` ignored), preferring an existing up-to-date cache."""
    path = Path(path)
    _require_file(path, dataset)
    cached = cache_path(path, key, cache_dir)
    suffix = path.suffix.lower()
    if cached.is_file() and cached.stat().st_mtime >= path.stat().st_mtime and cached != path:
        source: ArraySource = _open_npy(cached, key, dataset)
    elif suffix == ".npy":
        source = _open_npy(path, "", dataset)
    elif suffix == ".npz":
        source = _open_npz_member(path, key, dataset, cached)
    elif suffix in H5_SUFFIXES:
        source = _open_h5(path, key, dataset)
    else:
        raise dataset_error(dataset, path, "a .npy, .npz, .h5 or .hdf5 file", f"suffix {path.suffix!r}")
    source.dataset = dataset
    return source


def _read_header(fh):
    """.npy header at the file position -> (shape, fortran_order, dtype); the position moves to the data."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    return np.lib.format._read_array_header(fh, version)  # version 3 (utf8 field names) has no public reader


def _open_npy(path: Path, key: str, dataset: str) -> RawArray:
    with open(path, "rb") as fh:
        try:
            shape, fortran, dtype = _read_header(fh)
        except (ValueError, OSError, SyntaxError) as exc:
            raise dataset_error(dataset, path, "a NumPy .npy file", f"no valid .npy header ({exc})") from None
        offset = fh.tell()
    _check_raw(path, dataset, shape, dtype, fortran, offset, path.stat().st_size)
    return RawArray(path, key, shape, dtype, offset)


def _check_raw(path, dataset, shape, dtype, fortran, offset, available) -> None:
    if dtype.hasobject:
        raise dataset_error(dataset, path, "a numeric array", f"an array of Python objects ({dtype})")
    if fortran and len(shape) > 1:
        raise dataset_error(dataset, path, "a C-ordered array", "a Fortran-ordered array (save it with np.ascontiguousarray)")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if available < need:
        raise dataset_error(dataset, path, f"{need} bytes for a {dtype} array of shape {shape}", f"a truncated file of {available} bytes")


def _require_file(path: Path, dataset: str) -> None:
    if not path.is_file():
        raise dataset_error(dataset, path, "an existing file", "no such file" if not path.exists() else "a folder")


def _zip(path: Path, dataset: str) -> zipfile.ZipFile:
    _require_file(path, dataset)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise dataset_error(dataset, path, "a NumPy .npz (zip) archive", f"an unreadable or truncated file ({exc})") from None


def npz_keys(path: Path, dataset: str) -> list:
    """The array names of a ``.npz`` file."""
    with _zip(path, dataset) as zf:
        return _array_names(zf)


def _array_names(zf: zipfile.ZipFile) -> list:
    return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]


def _open_npz_member(path: Path, key: str, dataset: str, cached: Path) -> RawArray:
    with _zip(path, dataset) as zf:
        member = f"{key}.npy"
        if member not in zf.namelist():
            raise dataset_error(dataset, path, f"an array named {key!r}", f"arrays {_array_names(zf)}")
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            print(f"ldm-dis: {path} stores {key!r} compressed; writing an uncompressed copy to {cached} once "
                  "(the same as `ldm-dis data prepare`)", file=sys.stderr)
            _decompress_member(zf, member, cached, path, dataset)
            return _open_npy(cached, key, dataset)
    with open(path, "rb") as fh:
        # member data starts after the local header (30 bytes), its file name and its extra field (zip64)
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise dataset_error(dataset, path, "a NumPy .npz (zip) archive", "a corrupt zip entry")
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        fh.seek(start)
        try:
            shape, fortran, dtype = _read_header(fh)
        except (ValueError, OSError, SyntaxError) as exc:
            raise dataset_error(dataset, path, f"a .npy array in member {member}", f"no valid header ({exc})") from None
        offset = fh.tell()
    _check_raw(path, dataset, shape, dtype, fortran, offset, min(path.stat().st_size, start + info.file_size))
    return RawArray(path, key, shape, dtype, offset)


def _new_cache(out: Path, dtype, shape, dataset: str):
    """Create ``out``'s temporary file as a writable .npy memmap -> (tmp path, memmap); a clear error if it cannot."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    expected = f"a writable cache location with {size / 2**30:.2f} GiB free (set data.cache_dir / --cache-dir)"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out.parent).free
        if free < size + (64 << 20):  # a full disk under a memmap write would kill the process (SIGBUS)
            raise dataset_error(dataset, out, expected, f"{free / 2**30:.2f} GiB free")
        return tmp, np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    except OSError as exc:
        raise dataset_error(dataset, out, expected, f"{exc.strerror or exc}") from None


def _decompress_member(zf: zipfile.ZipFile, member: str, out: Path, path: Path, dataset: str) -> None:
    """Stream a compressed .npz member into ``out`` (.npy) in 64 MB pieces; atomic (tmp file, rename)."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with zf.open(member) as src:
            shape, fortran, dtype = _read_header(src)
            _check_raw(path, dataset, shape, dtype, fortran, 0, float("inf"))
            tmp, dst = _new_cache(out, dtype, shape, dataset)
            flat = dst.reshape(-1).view(np.uint8)
            pos = 0
            while pos < flat.size:
                piece = src.read(min(64 << 20, flat.size - pos))
                if not piece:
                    raise dataset_error(dataset, path, f"{flat.size} bytes in member {member}", f"only {pos} (truncated)")
                flat[pos : pos + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                pos += len(piece)
            dst.flush()
            del dst, flat
        os.replace(tmp, out)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise dataset_error(dataset, path, f"a readable member {member}", f"a corrupt or truncated archive ({exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _open_h5(path: Path, key: str, dataset: str) -> H5Array:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if key not in fh:
                raise dataset_error(dataset, path, f"an HDF5 dataset named {key!r}", f"keys {sorted(fh.keys())}")
            shape, dtype = fh[key].shape, fh[key].dtype
    except OSError as exc:
        raise dataset_error(dataset, path, "a readable HDF5 file", f"an unreadable or truncated file ({exc})") from None
    return H5Array(path, key, shape, dtype)


def read_whole(path, key: str, dataset: str) -> np.ndarray:
    """A small array (labels) read entirely. Never unpickled: an array of Python objects is refused."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        source = open_array(path, key, dataset)
        return source.read(np.arange(len(source)))
    with _zip(path, dataset):  # a clear error for a missing or broken archive first
        pass
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key in npz.files:
                return npz[key]
            found = list(npz.files)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if "allow_pickle" in str(exc):
            raise dataset_error(dataset, path, f"a numeric array {key!r}", "an array of Python objects (a pickle, never loaded)") from None
        raise dataset_error(dataset, path, f"a readable array {key!r}", f"an unreadable or truncated member ({exc})") from None
    raise dataset_error(dataset, path, f"an array named {key!r}", f"arrays {found}")


def write_npy_cache(source: ArraySource, out: Path, chunk_rows: int = 4096) -> Path:
    """Copy ``source`` into an uncompressed ``.npy`` at ``out`` chunk by chunk (bounded memory); atomic."""
    out = Path(out)
    tmp, dst = _new_cache(out, source.dtype, source.shape, source.dataset)
    try:
        for start in range(0, len(source), chunk_rows):
            stop = min(start + chunk_rows, len(source))
            dst[start:stop] = source.read(np.arange(start, stop))
            dst.flush()
        del dst
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
