"""Buffers for large request bodies: one per body, sized by its Content-Length, kept for reuse.

A body of ``smallest`` bytes or more whose length is declared is received into one buffer of
exactly that length, allocated with ``numpy.empty``: the kernel maps its pages only as the
body's bytes are written into them, so a client that declares a large body and stalls still
holds nothing, and the body is copied once, never regrown.

A fresh page costs about 4 us on the machines measured (docs/numerics.md): faulting in a
4 MB body's thousand pages took longer than scoring it. So a buffer whose request has ended
is kept, while the buffers kept add up to at most ``capacity`` bytes, and the next body that
fits is received into it (the smallest kept buffer that fits). A buffer is kept only when
nothing else refers to it: while an array still views the body (a response being encoded,
say), giving it back does nothing, so a kept buffer is never written while anything reads it.
``capacity`` is part of the memory model (``focal_eval.service.memory.derive``).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BodyBuffers"]

# sys.getrefcount of a buffer referred to by one local name only: the name and the argument
_ONLY_HERE = 2


class BodyBuffers:
    """Buffers for bodies of at least ``smallest`` bytes; at most ``capacity`` bytes kept.

    Example:
        >>> buffers = BodyBuffers(capacity=2**20, smallest=1024)
        >>> body = buffers.take(4096)
        >>> first = id(body.obj)
        >>> len(body), buffers.give_back(body), buffers.kept_bytes
        (4096, True, 4096)
        >>> id(buffers.take(2048).obj) == first  # the kept buffer: the smallest that fits
        True
    """

    def __init__(self, capacity: int, smallest: int) -> None:
        self.capacity = capacity
        self.smallest = smallest
        self._kept: list[npt.NDArray[np.uint8]] = []
        self._lock = threading.Lock()  # taken on the event loop, given back from workers too

    @property
    def kept_bytes(self) -> int:
        """The bytes of the buffers kept now."""
        with self._lock:
            return sum(store.nbytes for store in self._kept)

    def wanted(self, size: int) -> bool:
        """Whether a body of declared ``size`` is received into one of these buffers."""
        return size >= self.smallest

    def take(self, size: int) -> memoryview:
        """A writable ``size``-byte view of the smallest kept buffer that fits, or of a new one."""
        with self._lock:
            fits = [i for i, kept in enumerate(self._kept) if kept.nbytes >= size]
            if fits:
                store = self._kept.pop(min(fits, key=lambda i: self._kept[i].nbytes))
            else:
                store = np.empty(size, np.uint8)
        return store.data[:size]

    def give_back(self, body: Any) -> bool:
        """Keep ``body``'s buffer for a later body, if it is one of ours and nothing else uses it.

        ``body`` (a view from :meth:`take`) is released: the caller must not use it again.
        Returns whether the buffer was kept. It is not when it is not from :meth:`take`, when
        something still refers to it, or when keeping it would pass ``capacity`` (it is then
        dropped; so are the oldest kept buffers if that makes room).
        """
        if not isinstance(body, memoryview) or not isinstance(body.obj, np.ndarray):
            return False
        store = body.obj
        try:
            body.release()
        except BufferError:  # an array made from the view itself is alive
            return False
        if sys.getrefcount(store) > _ONLY_HERE or store.nbytes > self.capacity:
            return False
        with self._lock:
            self._kept.append(store)
            while sum(kept.nbytes for kept in self._kept) > self.capacity:
                self._kept.pop(0)
        return True
