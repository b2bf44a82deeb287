"""Buffers for large request bodies: one per body, sized by its Content-Length, kept for reuse.

A body of ``smallest`` bytes or more whose length is declared is received into one buffer of
exactly that length: an anonymous memory map, whose pages the kernel maps one at a time as the
body's bytes are written (not 2 MiB at a time, as numpy asks for its large arrays), so a client
that declares a large body and stalls holds what it sent, and the body is copied once, never
regrown.

A fresh page costs about 4 us on the machines measured (docs/numerics.md): faulting in a
4 MB body's thousand pages took longer than scoring it. So the buffer of a finished request is
kept and lent to the next body that fits (the smallest kept buffer of one to two times its
length). Kept and lent buffers add up to at most ``capacity`` bytes, the term the memory
budget sets aside for them (``focal_eval.service.memory.derive``): a lent buffer is resident
whatever its borrower has sent, so it counts until it comes back or is freed.

A buffer is kept only when nothing views it any more: the map refuses to be resized while any
buffer of it is exported (a memoryview, an array made from one), so a buffer that an array of
the last body still reads is never refilled; it is dropped instead.
"""

from __future__ import annotations

import mmap
import threading
import weakref

__all__ = ["BodyBuffers"]

LEND_RATIO = 2  # a kept buffer is lent only to bodies of at least 1 / LEND_RATIO its size


class BodyBuffers:
    """Buffers for bodies of at least ``smallest`` bytes; at most ``capacity`` bytes kept or lent.

    Example:
        >>> buffers = BodyBuffers(capacity=2**20, smallest=1024)
        >>> body = buffers.take(4096)
        >>> first = id(body.obj)
        >>> len(body), buffers.give_back(body), buffers.kept_bytes
        (4096, True, 4096)
        >>> id(buffers.take(3000).obj) == first  # lent again: 3000 <= 4096 <= 2 x 3000
        True
    """

    def __init__(self, capacity: int, smallest: int) -> None:
        self.capacity = capacity
        self.smallest = smallest
        self._kept: list[mmap.mmap] = []
        self._lent: dict[int, int] = {}  # id of a lent buffer -> its size
        # taken on the event loop and in workers; re-entered by _make_room (the byte counts)
        # and when dropping a buffer frees one that was lent (its finalizer forgets it)
        self._lock = threading.RLock()

    @property
    def kept_bytes(self) -> int:
        """The bytes of the buffers kept now (not lent)."""
        with self._lock:
            return sum(len(store) for store in self._kept)

    @property
    def lent_bytes(self) -> int:
        """The bytes of kept buffers lent to bodies now."""
        with self._lock:
            return sum(self._lent.values())

    def wanted(self, size: int) -> bool:
        """Whether a body of declared ``size`` is received into one of these buffers."""
        return size >= self.smallest

    def take(self, size: int) -> memoryview:
        """A writable ``size``-byte view of a kept buffer that fits, or of a new one."""
        with self._lock:
            fits = [
                i for i, kept in enumerate(self._kept) if size <= len(kept) <= LEND_RATIO * size
            ]
            if fits:
                store = self._kept.pop(min(fits, key=lambda i: len(self._kept[i])))
                self._lend(store)
            else:
                store = mmap.mmap(-1, size)
        return memoryview(store)[:size]

    def give_back(self, body: object) -> bool:
        """Keep ``body``'s buffer for a later body, if it is one of ours and nothing views it.

        ``body`` (a view from :meth:`take`) is released: the caller must not use it again.
        Returns whether the buffer was kept. It is not when it is not from :meth:`take`, when
        something still views it, or when keeping it would pass ``capacity`` (it is then
        dropped; so are the oldest kept buffers, if that makes room).
        """
        if not isinstance(body, memoryview) or not isinstance(body.obj, mmap.mmap):
            return False
        store = body.obj
        with self._lock:
            self._lent.pop(id(store), None)
        try:
            body.release()  # refused while an array made from ``body`` itself is alive
            store.resize(len(store))  # refused while any other view of the buffer is alive
        except (BufferError, OSError, ValueError):
            return False
        with self._lock:
            if not self._make_room(len(store)):
                return False
            self._kept.append(store)
        return True

    def _lend(self, store: mmap.mmap) -> None:
        """Count ``store`` as lent until it is given back or freed (its borrower failed)."""
        key = id(store)
        self._lent[key] = len(store)
        weakref.finalize(store, self._forget, key)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._lent.pop(key, None)

    def _make_room(self, size: int) -> bool:
        """Whether ``size`` more bytes fit beside the lent buffers, dropping kept ones for them.

        The oldest kept buffers go first.
        """
        lent = self.lent_bytes
        if lent + size > self.capacity:
            return False
        while self.kept_bytes + lent + size > self.capacity:
            self._kept.pop(0)
        return True
