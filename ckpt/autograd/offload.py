"""``save_on_disk``: keep what backward needs in memory-mapped files instead of RAM.

The numpy analogue of torch's ``torch.autograd.graph.save_on_cpu``: a saved-tensor hook pair
whose pack writes each saved tensor to a file and keeps only its path, shape and dtype, and
whose unpack maps the file back (``np.memmap``, copy-on-write) when backward needs it, so the
bytes come back from the page cache without a copy. Each file is removed when its saved
tensor is released: after backward used it, or when the graph is freed without backward (also
when an exception unwound the code that held the graph), and at the latest at interpreter
exit.

Leaves that require grad (parameters) are not written: they stay in memory anyway, so
writing them would cost I/O and free nothing. Empty tensors stay in memory too (a file of
zero bytes cannot be mapped). A tensor saved by several ops (a ReLU's output is saved by the
ReLU and by the Linear after it) is written once, while it is unchanged (same array, same
version).
"""
import os
import shutil
import tempfile
import weakref

import numpy as np

from .node import _root_buffer, saved_tensors_hooks
from .tensor import _wrap

__all__ = ["save_on_disk"]


class save_on_disk(saved_tensors_hooks):
    """Within this context, tensors saved for backward go to files in ``directory`` (a fresh
    temporary directory, removed with its last file, if None) and come back memory-mapped in
    backward. Gradients are bit-for-bit those computed without it.

    >>> import ckpt, os, tempfile
    >>> x = ckpt.randn(256, 256, requires_grad=True)
    >>> d = tempfile.mkdtemp()
    >>> with ckpt.autograd.graph.save_on_disk(d):
    ...     y = (x.exp() * x).sum()
    >>> # exp's output, saved by exp and by the product, is written once; x (a leaf) stays
    >>> len(os.listdir(d)), ckpt.autograd.graph.saved_bytes(y)
    (1, 262144)
    >>> y.backward()
    >>> os.listdir(d)
    []
    """

    def __init__(self, directory=None):
        self._directory = _Directory(directory)
        self._written = weakref.WeakValueDictionary()  # id(array) -> its live _OnDisk handle
        super().__init__(self._pack, self._unpack)

    def _pack(self, t):
        data = t.data
        if (t.requires_grad and t.grad_fn is None) or data.size == 0:
            return _InMemory(data)
        handle = self._written.get(id(data))
        if (handle is not None and handle.source() is data and handle.vc is t._vc
                and handle.version == t._vc[0]):
            return handle  # the same tensor, unchanged, saved by one more op
        transposed = data.ndim == 2 and data.flags.f_contiguous and not data.flags.c_contiguous
        contiguous = data.T if transposed else np.ascontiguousarray(data)  # keep the layout
        fd, path = tempfile.mkstemp(prefix="saved-", suffix=".bin", dir=self._directory.path())
        try:
            with os.fdopen(fd, "wb") as f:
                contiguous.tofile(f)
        except BaseException:
            _unlink(path)
            raise
        handle = _OnDisk(path, contiguous.shape, contiguous.dtype, transposed, self._directory)
        handle.source, handle.vc, handle.version = weakref.ref(data), t._vc, t._vc[0]
        self._written[id(data)] = handle
        return handle

    @staticmethod
    def _unpack(handle):
        return _wrap(handle.load())


class _OnDisk:
    """A saved tensor written to ``path``; the file goes when this handle does."""
    __slots__ = ("path", "shape", "dtype", "transposed", "directory", "source", "vc", "version",
                 "__weakref__")

    def __init__(self, path, shape, dtype, transposed, directory):
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.transposed = transposed
        self.directory = directory  # keeps a temporary directory alive while files are in it
        weakref.finalize(self, _unlink, path)

    def load(self):
        mapped = np.memmap(self.path, dtype=self.dtype, mode="c", shape=self.shape)
        return mapped.T if self.transposed else mapped

    def resident_buffers(self):
        """Nothing of it is in memory (for ``Node.saved_bytes``)."""
        return {}


class _InMemory:
    """A saved tensor left in memory (a parameter, or empty)."""
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def load(self):
        return self.data

    def resident_buffers(self):
        root = _root_buffer(self.data)
        return {id(root): root.nbytes}


class _Directory:
    """Where the files go: the given directory (created if missing, never removed), or a
    temporary one made on first use and removed once nothing refers to it any more."""

    def __init__(self, path):
        self._given = None if path is None else os.fspath(path)
        self._path = None

    def path(self):
        if self._path is None:
            if self._given is not None:
                os.makedirs(self._given, exist_ok=True)
                self._path = self._given
            else:
                self._path = tempfile.mkdtemp(prefix="ckpt-save-on-disk-")
                weakref.finalize(self, shutil.rmtree, self._path, True)
        return self._path


def _unlink(path):
    try:
        os.remove(path)
    except OSError:
        pass
