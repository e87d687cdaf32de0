"""Plain data out of numpy's ``.npy`` / ``.npz`` files — also when they hold a pickle — without unpickling anything.

A pickle is a program for a small stack machine; ``pickle.load`` runs it, and its GLOBAL and REDUCE instructions can
look up and call any function of any module, which is why scmdm never unpickles (ruff bans every API that does).
Some files worth reading hold one anyway: MOSES ships the reference statistics of its test set as ``test_stats.npz``,
whose one member is a 0-d object array — a pickle of a dict of dicts of numpy arrays.

:func:`read_plain_pickle` runs only the instructions that build plain values — None, booleans, numbers, strings,
bytes, tuples, lists, dicts, sets — and it recognises, by module and name, the few calls a pickle of numpy arrays
makes: ``numpy…multiarray._reconstruct(ndarray, shape, b"b")`` followed by the array's state ``(version, shape,
dtype, fortran_order, raw bytes)``, ``numpy.dtype(spec, align, copy)`` with its byte-order state,
``numpy…multiarray.scalar(dtype, bytes)``, ``numpy…numeric._frombuffer(bytes, dtype, shape, order)`` (protocol 5),
``_codecs.encode(text, "latin1")`` (bytes under protocol 2), ``collections.OrderedDict`` / ``Counter`` (read as
dicts) and ``set`` / ``frozenset`` of plain values (protocols 2 and 3). Those are *built here* — arrays with
``numpy.frombuffer`` from their bytes — so no function named in the pickle is ever looked up or called. Any other
global, an object with a class (NEWOBJ, INST, OBJ), an extension code or a persistent id is a ``ValueError`` naming
it. Numeric dtypes only (an object array's elements are the pickle's own plain values); structured dtypes are
refused.

:func:`read_npz` reads every member of an ``.npz`` (a zip of ``.npy`` files): the header with numpy's own parser of
the format (a Python literal, read with ``ast.literal_eval``), plain arrays with ``numpy.frombuffer``, object arrays
through :func:`read_plain_pickle`.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_plain_pickle", "read_npy", "read_npz"]

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}  # protocol 5
_ALLOWED = {*_RECONSTRUCT, *_SCALAR, *_FROMBUFFER, ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
            ("collections", "OrderedDict"), ("collections", "Counter"), ("builtins", "set"), ("__builtin__", "set"),
            ("builtins", "frozenset"), ("__builtin__", "frozenset")}


class _Mark:
    pass


class _Global:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Pending:
    """An array or dtype whose state a BUILD instruction gives next."""

    def __init__(self, kind: str, spec: Any = None) -> None:
        self.kind, self.spec = kind, spec


def _dtype(spec: Any, state: Any = None) -> np.dtype:
    if not isinstance(spec, str) or not spec or (spec[0] not in "biufcSUVMm" and spec not in ("O8", "O4")):
        raise ValueError(f"unsupported dtype {spec!r}")
    if spec.startswith("O"):
        return np.dtype(object)  # the elements come as plain values of the pickle itself
    dtype = np.dtype(spec)
    if isinstance(state, tuple) and len(state) >= 2 and state[1] in "<>":
        dtype = dtype.newbyteorder(state[1])
    if isinstance(state, tuple) and len(state) >= 4 and state[3] is not None:
        raise ValueError("structured dtypes are not read")
    return dtype


def _array(state: Any) -> np.ndarray:
    if not (isinstance(state, tuple) and len(state) == 5):
        raise ValueError("malformed array state")
    _, shape, dtype, fortran, raw = state
    if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple):
        raise ValueError("malformed array state")
    order = "F" if fortran else "C"
    if dtype == np.dtype(object):
        if not isinstance(raw, list):
            raise ValueError("malformed object array")
        out = np.empty(len(raw), dtype=object)
        out[:] = raw if raw else out[:0]
        return out.reshape(shape, order=order)
    if isinstance(raw, str):  # protocol 0/1 keep the bytes as a latin-1 string
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes | bytearray):
        raise ValueError("malformed array data")
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order=order).copy()


def _call(func: _Global, args: Any) -> Any:
    key = (func.module, func.name)
    if not isinstance(args, tuple):
        raise ValueError("malformed call")
    if key in _RECONSTRUCT:
        return _Pending("array")
    if key == ("numpy", "dtype"):
        return _Pending("dtype", args[0] if args else None)
    if key in _FROMBUFFER:
        raw, dtype, shape, order = args
        if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
            raise ValueError("malformed array")
        return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order=order).copy()
    if key in _SCALAR:
        dtype, raw = args
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        return np.frombuffer(raw, dtype=dtype)[0]
    if key == ("_codecs", "encode"):
        text, encoding = args
        if encoding not in ("latin1", "latin-1"):
            raise ValueError(f"unexpected encoding {encoding!r}")
        return text.encode("latin-1")
    if key in (("collections", "OrderedDict"), ("collections", "Counter")):
        return dict(args[0]) if args else {}
    if key[1] in ("set", "frozenset"):
        items = list(args[0]) if args else []
        if not all(isinstance(item, str | bytes | int | float | bool | tuple) or item is None for item in items):
            raise ValueError("a set of values that are not plain")
        return set(items) if key[1] == "set" else frozenset(items)
    raise ValueError(f"{func.module}.{func.name}(...) is not read")


def read_plain_pickle(data: bytes) -> Any:
    """The plain value a pickle describes (module docstring); ``ValueError`` for anything else."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if isinstance(stack[i], _Mark):
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise ValueError("MARK missing")

    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                value = stack.pop()
                if isinstance(value, _Pending | _Global):
                    raise ValueError("incomplete value")
                return value
            if name in ("NONE",):
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                          "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                          "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                stack.append(arg)
            elif name == "BYTEARRAY8":
                stack.append(bytearray(arg))
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_SET":
                stack.append(set())
            elif name == "MARK":
                stack.append(_Mark())
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name == "LIST":
                stack.append(pop_mark())
            elif name == "DICT":
                items = pop_mark()
                stack.append(dict(zip(items[::2], items[1::2], strict=True)))
            elif name == "FROZENSET":
                stack.append(frozenset(pop_mark()))
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif name == "SETITEMS":
                items = pop_mark()
                stack[-1].update(zip(items[::2], items[1::2], strict=True))
            elif name == "ADDITEMS":
                items = pop_mark()
                stack[-1].update(items)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, attribute = arg.split(" ", 1)
                else:
                    attribute, module = stack.pop(), stack.pop()
                if (module, attribute) not in _ALLOWED:
                    raise ValueError(f"it refers to {module}.{attribute}, which is not plain data")
                stack.append(_Global(module, attribute))
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                if not isinstance(func, _Global):
                    raise ValueError("a call of something that is not a known function")
                stack.append(_call(func, args))
            elif name == "BUILD":
                state, target = stack.pop(), stack[-1]
                if isinstance(target, _Pending):
                    built = _array(state) if target.kind == "array" else _dtype(target.spec, state)
                    stack[-1] = built
                    for key, value in memo.items():  # the memo may hold it from before its state came
                        if value is target:
                            memo[key] = built
                elif isinstance(target, dict) and isinstance(state, dict):
                    target.update(state)
                else:
                    raise ValueError("BUILD of an object that is not plain data")
            else:  # NEWOBJ, NEWOBJ_EX, INST, OBJ, EXT*, PERSID, BINPERSID, NEXT_BUFFER, READONLY_BUFFER, ...
                raise ValueError(f"instruction {name} is not read")
    except ValueError:
        raise
    except (IndexError, KeyError, TypeError, AttributeError, UnicodeError) as err:
        raise ValueError(f"malformed pickle ({type(err).__name__}: {err})") from None
    raise ValueError("the pickle has no STOP instruction (truncated?)")


def read_npy(data: bytes) -> Any:
    """The array of ``.npy`` bytes (an object array: what its pickle holds, read with :func:`read_plain_pickle`)."""
    from numpy.lib import format as npy

    handle = io.BytesIO(data)
    version = npy.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    rest = data[handle.tell():]
    if dtype.hasobject:
        value = read_plain_pickle(rest)
        if not isinstance(value, np.ndarray):
            raise ValueError("the pickle of an object array holds no array")
        return value
    count = int(np.prod(shape)) if shape else 1
    if len(rest) < count * dtype.itemsize:
        raise ValueError(f"truncated array data ({len(rest)} of {count * dtype.itemsize} bytes)")
    return np.frombuffer(rest, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C").copy()


def read_npz(path: str | Path) -> dict[str, Any]:
    """Every member of an ``.npz`` file, by name (without ``.npy``); ``ValueError`` naming the file and the member
    when one is not plain data, or the file is not an ``.npz``."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {}
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                try:
                    members[name] = read_npy(archive.read(info))
                except ValueError as err:
                    raise ValueError(f"{path}: member {name!r} cannot be read as plain data: {err}") from None
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not an .npz file (a zip of .npy arrays): {err}") from None
    return members
