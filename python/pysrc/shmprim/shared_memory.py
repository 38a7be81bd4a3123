"""A ``multiprocessing.shared_memory.SharedMemory``-like raw block.

The name persists until :meth:`SharedMemory.unlink` (as in Python); blocks
are shmprim segments, so only names created by shmprim open here.
"""

import secrets

from ._native import Block as _Block

__all__ = ["SharedMemory"]


class SharedMemory:
    """``SharedMemory(name=None, create=False, size=0)`` with ``.buf``, a
    memoryview of the block, ``.name``, ``.size``, ``close()`` and
    ``unlink()``."""

    def __init__(self, name=None, create=False, size=0):
        if size < 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            if name is None:
                name = "psm_" + secrets.token_hex(4)
            block = _Block.create(name, size)
        else:
            if name is None:
                raise ValueError("'name' can only be None if create=True")
            block = _Block.open(name)
        self._name = name.lstrip("/")
        self._block = block
        self._buf = memoryview(block)
        self._size = block.size

    @property
    def buf(self):
        return self._buf

    @property
    def name(self):
        return self._name

    @property
    def size(self):
        return self._size

    def close(self):
        """Closes this process's view (the name stays)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        self._block = None

    def unlink(self):
        """Removes the name; processes that have it mapped keep it."""
        _Block.unlink(self._name)

    def __reduce__(self):
        return (self.__class__, (self._name, False, self._size))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{self.__class__.__name__}({self._name!r}, size={self._size})"
