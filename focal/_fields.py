"""Functions written from a NamedTuple's ``_fields``, so that a new field needs no other edit.

TorchScript can loop over a NamedTuple (the loop is unrolled) but cannot build one from a loop, read
``_fields``, or take ``*args``. The few functions that must do one of these (the sum of two
:class:`~focal_eval.focal.statistics.Statistics`, the list of their names, a ``forward`` with one
argument per statistic) are written here from ``_fields`` at import time, the way
:func:`collections.namedtuple` and :mod:`dataclasses` write theirs: compiled in the calling module's
namespace, with the source kept in :mod:`linecache` under a ``<generated ...>`` file name, where
:func:`inspect.getsource`, and so ``torch.jit.script`` and tracebacks, find it. (Like any such
entry, it is lost to a later ``linecache.clearcache()``; TorchScript reads it once per function and
process, when it first compiles it.)
"""

import linecache
from typing import Any, Callable, Dict, List, Optional, Sequence


def define(
    name: str, source: str, namespace: Dict[str, Any], qualname: Optional[str] = None
) -> Callable[..., Any]:
    """Compile ``source``, one ``def name(...)``, in ``namespace`` (a module's ``globals()``).

    Args:
        name: the function's name, as ``source`` defines it.
        source: its code, at indentation 0.
        namespace: the globals it runs in and TorchScript resolves its names in.
        qualname: ``__qualname__``, e.g. ``"Class.forward"`` for a method (default ``name``).

    Returns:
        The function, with ``__module__`` the namespace's module.
    """
    filename = f"<generated {namespace['__name__']}.{qualname or name}>"
    # mtime None: linecache.checkcache keeps the entry (there is no file to compare with)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    defined: Dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace, defined)
    function: Callable[..., Any] = defined[name]
    function.__qualname__ = qualname or name
    return function


def keyword_arguments(fields: Sequence[str], value: str) -> str:
    """``field=value`` for each field, ``{}`` in ``value`` standing for the field's name.

    Example:
        >>> keyword_arguments(("a", "b"), "x.{} + y.{}")
        'a=x.a + y.a, b=x.b + y.b'
    """
    return ", ".join(f"{field}={value.replace('{}', field)}" for field in fields)


def sum_function(name: str, fields_of: type, namespace: Dict[str, Any]) -> Callable[..., Any]:
    """``def name(a, b)``: the NamedTuple ``fields_of`` whose every field is ``a``'s + ``b``'s."""
    kind = fields_of.__name__
    body = keyword_arguments(fields_of._fields, "a.{} + b.{}")  # type: ignore[attr-defined]
    source = f"def {name}(a: {kind}, b: {kind}) -> {kind}:\n    return {kind}({body})\n"
    return define(name, source, namespace)


def names_function(
    name: str, fields: Sequence[str], namespace: Dict[str, Any]
) -> Callable[[], List[str]]:
    """``def name() -> list[str]`` returning ``fields``: the names, readable under TorchScript."""
    names = ", ".join(repr(field) for field in fields)
    return define(name, f"def {name}() -> list[str]:\n    return [{names}]\n", namespace)
