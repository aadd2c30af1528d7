"""Reading the arrays of a pynn file (.npz or HDF5) that may come from anyone.

An `Archive` reads an array only when it is asked for, after checking what the file declares
for it, and `shape_of` tells a caller an array's declared shape before it is read (a loader
compares it with the weight it is for), so a crafted file cannot make loading decompress
members nobody refers to or arrays of the wrong size (zip bombs), allocate what a header
merely claims (a (2**40,) array in a few bytes), inflate compressed HDF5 chunks (pynn writes
plain datasets and reads only those), read other files of the machine (HDF5 external
storage, external links, virtual datasets) or unpickle anything. Every such problem is a
ValueError naming the file and the member.

HDF5 files are parsed by libhdf5, which has been seen to spin for ever on a corrupt file:
take files from untrusted sources as .npz (pynn's default), or load .h5 ones in a process
you can stop.
"""

from __future__ import annotations

import contextlib
import os
import zipfile

import numpy as np

META_KEY = "__pynn__"  # the member holding the file's JSON description
_NPY_MAGIC = b"\x93NUMPY"
_DEFLATE_MAX_RATIO = 1032  # deflate's largest expansion (258 bytes from 2 bits)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class Archive:
    """The named arrays of one file: `name in archive`, `archive[name]` (read, checked and
    kept on first use), `archive.declared(name)`, `archive.names()`. Use it in a `with`
    block (it holds the file open)."""

    def __init__(self, where):
        self.where = where  # the file's name in messages
        self._cache = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release the file."""

    def names(self):
        """The names of the file's arrays."""
        raise NotImplementedError

    def declared(self, name):
        """(shape, dtype) that `name` declares, checked as reading it would be, without
        reading it: a caller compares them with what it expects before anything is read."""
        with self._guarded(name):
            return self._declared(name)

    def shape_of(self, name):
        """The shape `name` declares (see declared)."""
        return self.declared(name)[0]

    def _read(self, name):
        raise NotImplementedError

    def _declared(self, name):
        raise NotImplementedError

    def __contains__(self, name):
        return name in self.names()

    def check_members(self):
        """Check what every member declares (not its data): pickles, non-numeric dtypes,
        sizes beyond the file, data kept outside the file."""
        raise NotImplementedError

    def __getitem__(self, name):
        if name not in self._cache:
            if name not in self:
                raise KeyError(name)
            with self._guarded(name):
                self._cache[name] = self._read(name)
        return self._cache[name]

    @contextlib.contextmanager
    def _guarded(self, name):
        """A corrupt member (bad CRC, unknown compression, encryption, a garbled header)
        raises ValueError naming it, whatever the reader tripped on."""
        try:
            yield
        except MemoryError:
            raise
        except ValueError as exc:
            if str(exc).startswith(repr(self.where)):  # ours, naming the file already
                raise
            # numpy's first sentence (its advice to load "unsafely" is not passed on)
            why = str(exc).split(". ")[0]
            raise self._bad(name, f"has an unreadable .npy header ({why})") from exc
        except Exception as exc:  # noqa: BLE001
            raise self._bad(name, f"cannot be read ({type(exc).__name__}: {exc})") from exc

    def _bad(self, name, why):
        return ValueError(f"{self.where!r}: array {name!r} {why}")


def open_zip(source, where):
    """zipfile.ZipFile(source), refused when bytes precede its archive: zipfile reads the
    last archive of the bytes, so two models saved one after the other into one stream
    loaded the second, silently."""
    z = zipfile.ZipFile(source)
    before = min((info.header_offset for info in z.infolist()), default=0)
    if before > 0:
        z.close()
        raise ValueError(f"{where!r} holds {before} bytes before its archive: several files "
                         f"written one after another (a second save into one stream)? pynn "
                         f"reads one file from each file or stream")
    return z


class _ZipArchive(Archive):
    """An .npz: a zip of .npy members, 'name.npy' read as 'name' (numpy's convention)."""

    def __init__(self, source, where):
        super().__init__(where)
        self._zip = open_zip(source, where)
        try:
            self._size = self._zip.fp.seek(0, os.SEEK_END)  # the whole file's length
            self._members = {}
            for info in self._zip.infolist():
                if not info.filename.endswith(".npy"):  # not an array (np.savez writes .npy)
                    continue
                name = info.filename[:-4]
                if name in self._members:  # two members, one name: which one loads is a guess
                    raise ValueError(f"{where!r} holds two members named {name!r}")
                self._members[name] = info
        except BaseException:
            self._zip.close()
            raise

    def close(self):
        self._zip.close()

    def names(self):
        return self._members.keys()

    def _checked_sizes(self, name):
        """The member's uncompressed size (zip_member_size)."""
        return zip_member_size(self._members[name], self._size,
                               lambda why: self._bad(name, why))

    def _header(self, f, name):
        """(shape, fortran order, dtype) of the open member f, checked against the bytes the
        member holds, before anything is allocated; f is left at the data."""
        file_size = self._checked_sizes(name)
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise self._bad(name, "is not a .npy array")
        f.seek(0)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise self._bad(name, f"has .npy format version {version}, which pynn does not "
                                  f"read")
        _check_dtype(self, name, dtype)
        if any(d < 0 for d in shape):
            raise self._bad(name, f"declares the shape {shape}")
        # The header's shape is only a claim: the zip directory says how many bytes the member
        # holds, and the array must fit in them.
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        have = file_size - f.tell()
        if need > have:
            raise self._bad(name, f"declares shape {shape} ({need:,} bytes) but holds "
                                  f"{max(have, 0):,} bytes")
        return shape, fortran, dtype

    def check_members(self):
        for name in self._members:  # headers only: a member's data is not decompressed
            with self._guarded(name), self._zip.open(self._members[name]) as f:
                self._header(f, name)

    def _declared(self, name):
        with self._zip.open(self._members[name]) as f:
            shape, _, dtype = self._header(f, name)
        return shape, dtype

    def _read(self, name):
        with self._zip.open(self._members[name]) as f:
            shape, fortran, dtype = self._header(f, name)
            # straight into the array (read() then a copy held the bytes twice)
            array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
            view = memoryview(array.reshape(-1, order="A").view(np.uint8))
            filled = 0
            while filled < len(view):  # in slices: zipfile's readinto reads, then copies
                n = f.readinto(view[filled:filled + (1 << 20)])
                if not n:
                    raise self._bad(name, "is truncated")
                filled += n
        return array if array.flags.c_contiguous else array.copy(order="C")  # keeps 0-d


def zip_member_size(info, file_length, bad):
    """A zip member's uncompressed size, which the zip directory only claims: pynn reads
    stored and deflated members (numpy and Keras write them so), and deflate expands at most
    ~1032-fold, so the claim is bounded by the compressed bytes, which must lie within the
    file (file_length bytes). bad(why) is the error raised otherwise."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise bad(f"uses compression method {info.compress_type}; pynn reads stored or "
                  f"deflated members")
    if info.header_offset + info.compress_size > file_length:
        raise bad("claims more compressed bytes than the file holds")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_MAX_RATIO
    if info.file_size > info.compress_size * ratio + 1024:
        raise bad(f"claims {info.file_size:,} bytes from {info.compress_size:,} compressed "
                  f"ones, more than its compression can give")
    return info.file_size


class _H5Archive(Archive):
    """An HDF5 file: one dataset per array (at the root, or at Keras' paths in a .weights.h5),
    the description an attribute."""

    also_closes = None  # a stream the archive owns (open_keras_weights)

    def __init__(self, source, where, h5py):
        super().__init__(where)
        self._h5py = h5py
        self._file = h5py.File(source, "r")

    def close(self):
        self._file.close()
        if self.also_closes is not None:
            self.also_closes.close()

    def names(self):
        return self._names

    def _dataset_paths(self):
        """Every dataset's path (a Keras-layout weights file keeps them in groups), found
        through hard links only (a link to another file is not followed)."""
        names = set()
        self._file.visititems(lambda name, item: names.add(name)
                              if isinstance(item, self._h5py.Dataset) else None)
        return names

    def check_members(self):
        names = self._dataset_paths()
        for name in self._file:  # and the root's links, which _dataset names as such
            link = self._file.get(name, getlink=True)
            if not isinstance(link, self._h5py.HardLink):
                names.add(name)
        if META_KEY in self._file.attrs:
            names.add(META_KEY)
        self._names = names  # read once, here, where a corrupt file's errors are caught
        if META_KEY not in names:  # (saving.read_meta's words) before its members: a Keras
            # .weights.h5's groups are no pynn arrays, and no reason to name them
            raise ValueError(f"{self.where!r} is not a pynn file (no {META_KEY} entry)")
        for name in names - {META_KEY}:
            with self._guarded(name):
                self._dataset(name)

    def _declared(self, name):
        if name == META_KEY:
            return (), np.dtype(str)
        item = self._dataset(name)
        return item.shape, item.dtype

    def _read(self, name):
        if name == META_KEY and META_KEY in self._file.attrs:  # the description
            meta = self._file.attrs[META_KEY]
            return np.array(meta.decode() if isinstance(meta, bytes) else meta)
        return self._dataset(name)[()]

    def _dataset(self, name):
        h5py = self._h5py
        link = self._file.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):  # a link reads another file or object
            raise self._bad(name, f"is a {type(link).__name__}, not an array stored in the "
                                  f"file")
        item = self._file[name]
        if not isinstance(item, h5py.Dataset):
            raise self._bad(name, "is not an array")
        if item.external or item.is_virtual:  # its bytes would come from other files
            raise self._bad(name, "keeps its data outside the file (external storage or a "
                                  "virtual dataset); pynn reads arrays stored in the file only")
        _check_dtype(self, name, item.dtype)
        # pynn writes plain contiguous datasets, every byte stored: a chunked one may inflate
        # a small compressed chunk without bound, an unwritten one allocate its declared size
        # from a fill value.
        if item.chunks is not None:
            raise self._bad(name, "is chunked or compressed; pynn files hold plain datasets")
        stored = item.id.get_storage_size()
        if stored < item.nbytes:
            raise self._bad(name, f"declares shape {item.shape} ({item.nbytes:,} bytes) but "
                                  f"stores {stored:,} bytes")
        return item


class _KerasH5Archive(_H5Archive):
    """A Keras 3 weights file: datasets in groups (layers/dense/vars/0), no description;
    each checked as pynn's own (_dataset). Names are the datasets' paths (_dataset_paths)."""

    def check_members(self):
        self._names = self._dataset_paths()
        for name in self._names:
            with self._guarded(name):
                self._dataset(name)


def open_keras_weights(source, where, owned=False):
    """The Archive of a Keras 3 weights file (a path or a seekable binary stream; owned: the
    stream is the Archive's, closed with it or on a failure to open)."""
    try:
        head = file_head(source)
        if not head.startswith(_HDF5_MAGIC):
            raise ValueError(f"{where!r} is not a Keras weights file (HDF5): it starts with "
                             f"{head!r}")
        archive = _open_h5(_KerasH5Archive, source, where)
    except BaseException:
        if owned:
            source.close()
        raise
    if owned:
        archive.also_closes = source
    return archive


def file_head(source):
    """The first 8 bytes of a path's file, or of a seekable binary stream (put back to
    where it was)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read(8)
    at = source.tell()
    head = source.read(8)
    source.seek(at)
    return head


def _open_h5(cls, source, where):
    from .saving import _h5py

    h5py = _h5py()
    try:
        archive = cls(source, where, h5py)
    except Exception as exc:  # noqa: BLE001 - OSError, RuntimeError, KeyError, ...
        raise ValueError(f"{where!r} is not a readable HDF5 file (truncated or corrupt?): "
                         f"{exc}") from exc
    return _checked(archive)


def _check_dtype(archive, name, dtype):
    if dtype.hasobject:
        raise archive._bad(name, "holds pickled objects; pynn never loads pickles")
    if dtype.kind not in "biufU" or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.itemsize == 0:
        raise archive._bad(name, f"has dtype {dtype}; pynn files hold numeric arrays")


def open_archive(source, where):
    """The Archive of `source` (a path, or a seekable binary stream positioned at the file's
    start), by content whatever the name says; `where` names it in messages."""
    head = file_head(source)
    if head.startswith(_HDF5_MAGIC):
        return _open_h5(_H5Archive, source, where)
    # Name what the file is before guessing (numpy tries unpickling anything not a zip).
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"{where!r} is a .npy file (a single array), not a pynn .npz file")
    if head[:1] == b"\x80":
        raise ValueError(f"{where!r} holds pickled objects; pynn never loads pickles")
    if not head.startswith(b"PK"):
        raise ValueError(f"{where!r} is not a pynn .npz (zip) or .h5 file: it starts with "
                         f"{head!r}")
    try:
        archive = _ZipArchive(source, where)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, OSError, ...
        raise ValueError(f"{where!r} is not a readable .npz file (truncated or corrupt?): "
                         f"{exc}") from exc
    return _checked(archive)


def _checked(archive):
    try:
        archive.check_members()
    except BaseException as exc:
        archive.close()
        if isinstance(exc, Exception) and not isinstance(exc, (ValueError, MemoryError)):
            # the file's directory itself unreadable (libhdf5's "Link iteration failed")
            raise ValueError(f"{archive.where!r} is not a readable pynn file (corrupt?): "
                             f"{type(exc).__name__}: {exc}") from exc
        raise
    return archive


__all__ = ["Archive", "open_archive"]
