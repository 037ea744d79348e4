"""Identity of values by content: the same digest for the same code and values in every process.

``fingerprint_values`` encodes values canonically: functions by their code object, closure,
defaults and the globals they read (following the user's code through the functions, classes and
modules it references), classes by their attributes and methods, objects by type and state,
tensors and arrays by content. Library code (stdlib, site-packages) counts by module, qualified
name and version. Neither ``repr()`` of an arbitrary object nor an ``id()`` enters the hash. A
value with no deterministic encoding (a socket, a file, a generator, a lock) raises
``FingerprintError`` naming where it was found.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import importlib.metadata
import io
import logging
import os
import platform
import random
import re
import socket
import sys
import sysconfig
import threading
import types
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

import numpy as np
import torch
from torch import nn

CACHE_KEY_HINT = 'to cache the family, name this version of it with ModelFamily(cache_key="...")'


class FingerprintError(TypeError):
    """A value that defines a family's runs has no deterministic encoding."""


# Values whose state lives outside Python (or changes as it is used): never the same twice.
_UNHASHABLE: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (io.IOBase, "file handle"),
    (socket.socket, "socket"),
    ((types.GeneratorType, types.AsyncGeneratorType), "generator"),
    (types.CoroutineType, "coroutine"),
    ((type(threading.Lock()), type(threading.RLock())), "lock"),
    (threading.Thread, "thread"),
    (threading.local, "thread-local storage"),
    ((types.FrameType, types.TracebackType), "frame"),
)
_ATOMS: dict[type, bytes] = {
    type(None): b"none", bool: b"bool", int: b"int", float: b"float", complex: b"complex",
    str: b"str", bytes: b"bytes", type(...): b"ellipsis", type(NotImplemented): b"notimplemented",
}
# Stdlib values whose str() is their whole value.
_STR_VALUES = (decimal.Decimal, datetime.date, datetime.time, datetime.timedelta, datetime.timezone)
_DESCRIPTORS = (types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType,
                types.GetSetDescriptorType, types.MemberDescriptorType)
_TUPLE_GETTER = type(collections.namedtuple("_Pair", "a b").a)
_GENERATOR_CONTEXT_MANAGER = type(contextlib.contextmanager(lambda: iter(()))())
# Class attributes that say where or how a class was written, not what it computes.
_CLASS_BOOKKEEPING = frozenset({
    "__dict__", "__weakref__", "__module__", "__qualname__", "__firstlineno__", "__annotations__",
    "__orig_bases__", "__parameters__", "__type_params__", "_abc_impl",
})
_OWN_PACKAGE = __name__.partition(".")[0]


def fingerprint_values(values: Mapping[str, Any]) -> str:
    """Hex digest of ``values``; each key names its value in a ``FingerprintError``."""
    encoder = _Encoder()
    digest = hashlib.sha256()
    for name in sorted(values):
        try:
            digest.update(_digest(b"entry", _text(name), encoder.encode(values[name], name)))
        except RecursionError:
            raise FingerprintError(f"cannot fingerprint {name}: its values nest too deeply to hash; {CACHE_KEY_HINT}") from None
    return digest.hexdigest()


def model_structure(model: nn.Module) -> Any:
    """``model`` as a value whose encoding covers its module tree, classes, attributes and tensor
    shapes but not its weights (a fresh initialisation, which the code and seed already decide)."""
    return _Structure(model)


@dataclasses.dataclass(frozen=True)
class _Structure:
    model: nn.Module


@functools.lru_cache(maxsize=None)
def library_version(module_name: str | None) -> str | None:
    """The version of the library that ``module_name`` belongs to; None for the user's own code."""
    if not module_name:
        return None
    top = module_name.partition(".")[0]
    if top == _OWN_PACKAGE:
        return None
    in_stdlib = top in sys.stdlib_module_names or top in sys.builtin_module_names
    file = getattr(sys.modules.get(module_name) or sys.modules.get(top), "__file__", None)
    if file is None:
        return f"python {platform.python_version()}" if in_stdlib else None
    if not _is_library_file(os.path.realpath(file)):
        return None  # the user's file, even where its name is a stdlib module's
    return f"python {platform.python_version()}" if in_stdlib else _release(top)


@functools.lru_cache(maxsize=None)
def _release(top: str) -> str:
    """Distribution name and version of an installed top-level package."""
    for distribution in importlib.metadata.packages_distributions().get(top, ()):
        try:
            return f"{distribution} {importlib.metadata.version(distribution)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{top} {getattr(sys.modules.get(top), '__version__', '')}"


def _is_library_file(path: str) -> bool:
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    parts = Path(path).parts
    return "site-packages" in parts or "dist-packages" in parts or any(path.startswith(root + os.sep) for root in roots)


def _digest(tag: bytes, *parts: bytes) -> bytes:
    h = hashlib.sha256(tag)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def _text(*strings: str) -> bytes:
    return "\0".join(strings).encode("utf-8", "surrogatepass")


def _global_names(code: types.CodeType) -> frozenset[str]:
    """Every name the code (nested functions and comprehensions included) looks up or reads as an attribute."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return frozenset(names)


def _tensor_header(tensor: torch.Tensor) -> bytes:
    return _text(type(tensor).__qualname__, str(tensor.dtype), str(tuple(tensor.shape)), str(tensor.requires_grad))


def _of(path: str, what: str) -> str:
    """The path of something that belongs to ``path``: "build's closure variable 'x', its global 'y'"."""
    return f"{path}, its {what}" if path.endswith("'") else f"{path}'s {what}"


def _label(key: Any) -> str:
    return repr(key) if type(key) in (str, int) else "[...]"


class _Encoder:
    """Encodes values to 32-byte digests. Objects being encoded form a stack: meeting one again is a
    cycle, encoded by its distance up the stack. Finished objects are remembered by identity when
    their encoding refers to nothing above them (so it is the same wherever they are met)."""

    def __init__(self) -> None:
        self._stack: dict[Hashable, int] = {}
        self._lowest_reference = 0
        self._memo: dict[Hashable, tuple[bytes, Any]] = {}  # keeps each object alive: its id stays unique

    def encode(self, value: Any, path: str) -> bytes:
        tag = _ATOMS.get(type(value))
        if tag is not None:
            if type(value) is bytes:
                return _digest(tag, value)
            return _digest(tag, _text(value) if type(value) is str else repr(value).encode())
        return self._once(id(value), value, path, self._dispatch)

    def _once(self, key: Hashable, value: Any, path: str, encode: Callable[[Any, str], bytes]) -> bytes:
        if key in self._memo:
            return self._memo[key][0]
        depth = self._stack.get(key)
        if depth is not None:
            self._lowest_reference = min(self._lowest_reference, depth)
            return _digest(b"cycle", str(len(self._stack) - depth).encode())
        depth = len(self._stack)
        outer_lowest, self._lowest_reference = self._lowest_reference, depth
        self._stack[key] = depth
        try:
            digest = encode(value, path)
        finally:
            del self._stack[key]
        if self._lowest_reference >= depth:
            self._memo[key] = (digest, value)
        self._lowest_reference = min(outer_lowest, self._lowest_reference)
        return digest

    def _error(self, path: str, label: str) -> FingerprintError:
        return FingerprintError(f"cannot fingerprint {path} ({label}): it has no stable hash; {CACHE_KEY_HINT}")

    def _dispatch(self, value: Any, path: str) -> bytes:
        """One branch per kind of value; what no branch knows is an object with a ``__dict__`` or
        ``__slots__``, or has no stable hash."""
        for kinds, label in _UNHASHABLE:
            if isinstance(value, kinds):
                raise self._error(path, label)
        if isinstance(value, (types.GenericAlias, types.UnionType)):
            origin = getattr(value, "__origin__", None)
            return _digest(b"type alias", self.encode(origin, path), self.encode(value.__args__, path))
        if isinstance(value, type):
            return self._class(value, path)
        if isinstance(value, types.ModuleType):
            return self._module(value, frozenset(), path)
        if isinstance(value, enum.Enum):
            return _digest(b"enum", self.encode(type(value), path), _text(str(value.name)), self.encode(value.value, path))
        if isinstance(value, _Structure):
            return self._nn_module(value.model, path, weights=False)
        if isinstance(value, torch.Tensor):
            return self._tensor(value, path)
        if isinstance(value, nn.Module):
            return self._nn_module(value, path, weights=True)
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if isinstance(value, np.generic):
            return _digest(b"numpy scalar", _text(str(value.dtype)), value.tobytes())
        if isinstance(value, (int, float, complex, str, bytes)):  # a subclass of a plain value
            plain = next(t for t in type(value).__mro__ if t in _ATOMS)
            return _digest(b"subclassed value", self.encode(plain(value), path), self._object(value, path))
        if isinstance(value, (torch.dtype, torch.device)):
            return _digest(b"torch " + type(value).__name__.encode(), _text(str(value)))
        if isinstance(value, types.FunctionType):
            return self._function(value, path)
        if isinstance(value, types.CodeType):
            return self._code(value, path)
        if isinstance(value, types.MethodType):
            return _digest(b"method", self.encode(value.__self__, f"{path}.__self__"), self.encode(value.__func__, path))
        if isinstance(value, functools.partial):
            return self._partial(value, path)
        if isinstance(value, (staticmethod, classmethod)):
            return _digest(_text(type(value).__name__), self.encode(value.__func__, path))
        if isinstance(value, functools.cached_property):
            return _digest(b"cached_property", self.encode(value.func, path))
        if isinstance(value, property):
            return _digest(b"property", *(self.encode(f, path) for f in (value.fget, value.fset, value.fdel)))
        if isinstance(value, types.BuiltinFunctionType):
            return self._builtin(value, path)
        if isinstance(value, types.MethodWrapperType):
            return _digest(b"bound builtin", self.encode(value.__self__, f"{path}.__self__"), _text(value.__name__))
        if isinstance(value, _DESCRIPTORS):
            return _digest(b"descriptor", self.encode(value.__objclass__, path), _text(value.__name__))
        if isinstance(value, (dict, types.MappingProxyType)):
            return self._mapping(value, path)
        if isinstance(value, (list, tuple)):
            items = [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
            return _digest(b"sequence", self._container_type(value, (list, tuple), path), *items)
        if isinstance(value, (set, frozenset)):
            items = sorted(self.encode(item, f"{path} (an item)") for item in value)
            return _digest(b"set", self._container_type(value, (set, frozenset), path), *items)
        if isinstance(value, bytearray):
            return _digest(b"bytearray", bytes(value))
        if isinstance(value, (range, slice)):
            bounds = (value.start, value.stop, value.step)
            return _digest(_text(type(value).__name__), *(self.encode(x, path) for x in bounds))
        if isinstance(value, _STR_VALUES):
            return _digest(b"value", self.encode(type(value), path), _text(str(value)))
        if isinstance(value, _TUPLE_GETTER):
            return _digest(b"namedtuple field", self.encode(value.__reduce__()[1], path))
        if isinstance(value, _GENERATOR_CONTEXT_MANAGER):
            # A @contextmanager used as a decorator: each call makes its generator afresh from these.
            return _digest(b"contextmanager", *(self.encode(x, path) for x in (value.func, value.args, value.kwds)))
        if isinstance(value, os.PathLike):
            return _digest(b"path", self.encode(type(value), path), _text(os.fspath(value)))
        if isinstance(value, re.Pattern):
            return _digest(b"regex", self.encode(value.pattern, path), str(value.flags).encode())
        if isinstance(value, contextvars.ContextVar):
            return _digest(b"contextvar", _text(value.name))  # what it holds is set at run time
        if isinstance(value, logging.Logger):
            return _digest(b"logger", _text(value.name))
        if isinstance(value, random.Random):
            return _digest(b"random", self.encode(type(value), path), self.encode(value.getstate(), path))
        if isinstance(value, torch.Generator):
            return _digest(b"torch generator", _text(str(value.device)), self.encode(value.get_state(), path))
        if isinstance(value, np.random.Generator):
            return _digest(b"numpy generator", self.encode(value.bit_generator.state, path))
        if isinstance(value, np.random.RandomState):
            return _digest(b"numpy random state", self.encode(value.get_state(legacy=False), path))
        if dataclasses.is_dataclass(value):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _digest(b"dataclass", self.encode(type(value), path), self._fields(fields, path))
        return self._object(value, path)

    def _container_type(self, value: Any, plain: tuple[type, ...], path: str) -> bytes:
        return _text(type(value).__name__) if type(value) in plain else self.encode(type(value), path)

    def _fields(self, fields: Mapping[str, Any], path: str) -> bytes:
        """Named values (attributes, dataclass fields), in name order."""
        encoded = (_digest(b"field", _text(name), self.encode(v, f"{path}.{name}")) for name, v in sorted(fields.items()))
        return _digest(b"fields", *encoded)

    def _mapping(self, value: Mapping, path: str) -> bytes:
        entries = sorted(
            (self.encode(k, f"{path} (a key)"), self.encode(v, f"{path}[{_label(k)}]")) for k, v in value.items()
        )
        kind = self._container_type(value, (dict, types.MappingProxyType), path)
        factory = self.encode(getattr(value, "default_factory", None), path)
        return _digest(b"mapping", kind, factory, *(k + v for k, v in entries))

    def _tensor(self, tensor: torch.Tensor, path: str) -> bytes:
        tensor = tensor.detach()
        header = _tensor_header(tensor)
        if tensor.is_meta:
            return _digest(b"meta tensor", header)
        try:
            flat = tensor.to_dense() if tensor.layout != torch.strided else tensor
            data = flat.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        except (RuntimeError, TypeError) as error:
            raise self._error(path, f"tensor whose bytes cannot be read: {error}".splitlines()[0]) from None
        return _digest(b"tensor", header, hashlib.sha256(data).digest())

    def _array(self, array: np.ndarray, path: str) -> bytes:
        if array.dtype.hasobject:
            return _digest(b"object array", _text(str(array.shape)), self.encode(array.tolist(), path))
        data = hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest()
        return _digest(b"array", _text(str(array.dtype), str(array.shape)), data)

    def _class(self, cls: type, path: str) -> bytes:
        version = library_version(cls.__module__)
        if version is not None:
            return _digest(b"library class", _text(cls.__module__, cls.__qualname__, version))
        attributes = {name: v for name, v in vars(cls).items() if name not in _CLASS_BOOKKEEPING}
        return _digest(
            b"class",
            _text(cls.__module__, cls.__qualname__),
            self.encode(type(cls), path),
            self.encode(cls.__bases__, _of(path, "bases")),
            self._fields(attributes, path),
        )

    def _module(self, module: types.ModuleType, names: frozenset[str], path: str) -> bytes:
        """A module by name; a user module also by those of its members that ``names`` reads."""
        return self._once(("module", id(module), names), module, path, lambda m, p: self._module_members(m, names, p))

    def _module_members(self, module: types.ModuleType, names: frozenset[str], path: str) -> bytes:
        version = library_version(module.__name__)
        if version is not None:
            return _digest(b"library module", _text(module.__name__, version))
        members = vars(module)
        read = sorted(names & members.keys())
        encoded = [_digest(b"member", _text(n), self._read(members[n], names, f"{path}.{n}")) for n in read]
        return _digest(b"module", _text(module.__name__), *encoded)

    def _read(self, value: Any, names: frozenset[str], path: str) -> bytes:
        """A value read by code whose names are ``names``: a module counts by the members it reads."""
        if isinstance(value, types.ModuleType):
            return self._module(value, names, path)
        return self.encode(value, path)

    def _function(self, fn: types.FunctionType, path: str) -> bytes:
        version = library_version(fn.__module__)
        if version is not None:
            # Library code counts by name; a closure it made at run time also by what it captured.
            ident = _text(fn.__module__, fn.__qualname__, version)
            return _digest(b"library function", ident, *(self._cells(fn, path) if "<locals>" in fn.__qualname__ else ()))
        names = _global_names(fn.__code__)
        read = sorted(names & fn.__globals__.keys())
        return _digest(
            b"function",
            _text(fn.__module__ or "", fn.__qualname__),
            self._code(fn.__code__, path),
            self.encode(fn.__defaults__, _of(path, "defaults")),
            self.encode(fn.__kwdefaults__, _of(path, "keyword defaults")),
            *self._cells(fn, path),
            *(_digest(b"global", _text(n), self._read(fn.__globals__[n], names, _of(path, f"global {n!r}"))) for n in read),
            self._fields(vars(fn), path),
        )

    def _cells(self, fn: types.FunctionType, path: str) -> list[bytes]:
        names = _global_names(fn.__code__)
        return [
            _digest(b"cell", _text(name), self._cell(cell, names, _of(path, f"closure variable {name!r}")))
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ())
        ]

    def _cell(self, cell: types.CellType, names: frozenset[str], path: str) -> bytes:
        try:
            contents = cell.cell_contents
        except ValueError:
            return _digest(b"empty cell")
        return self._read(contents, names, path)

    def _code(self, code: types.CodeType, path: str) -> bytes:
        """What the code does: bytecode, constants and names; not where it was written (file, lines)."""
        shape = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
        tables = (code.co_consts, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)
        return _digest(
            b"code",
            code.co_code,
            getattr(code, "co_exceptiontable", b""),
            _text(getattr(code, "co_qualname", code.co_name), *map(str, shape)),
            *(self.encode(table, path) for table in tables),
        )

    def _partial(self, partial: functools.partial, path: str) -> bytes:
        return _digest(
            b"partial",
            self.encode(partial.func, path),
            *(self.encode(arg, _of(path, f"argument {i}")) for i, arg in enumerate(partial.args)),
            *(
                _digest(b"keyword", _text(k), self.encode(v, _of(path, f"keyword argument {k!r}")))
                for k, v in sorted(partial.keywords.items())
            ),
            self._fields(vars(partial), path),
        )

    def _builtin(self, fn: types.BuiltinFunctionType, path: str) -> bytes:
        owner = fn.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            module = fn.__module__ or getattr(owner, "__name__", "")
            return _digest(b"builtin", _text(module, fn.__qualname__, library_version(module) or ""))
        return _digest(b"bound builtin", self.encode(owner, f"{path}.__self__"), _text(fn.__name__))

    def _nn_module(self, module: nn.Module, path: str, weights: bool) -> bytes:
        """Class, attributes, hooks, tensors and submodules; without ``weights``, tensors by shape only."""
        state = vars(module)
        internal = _module_internals()
        own = {k: v for k, v in state.items() if k not in internal}
        hooks = {k: list(v.values()) for k, v in state.items() if k in internal and "hooks" in k and v}
        members = [own, state["_parameters"], state["_buffers"], state["_modules"]]
        return _digest(
            b"nn.Module",
            self.encode(type(module), _of(path, f"class {type(module).__qualname__}")),
            *(self._members(group, weights, path) for group in members),
            self._fields(hooks, path),
            self.encode(sorted(state.get("_non_persistent_buffers_set", ())), path),
        )

    def _members(self, group: Mapping[str, Any], weights: bool, path: str) -> bytes:
        encoded = (_digest(b"member", _text(k), self._model_value(v, weights, f"{path}.{k}")) for k, v in sorted(group.items()))
        return _digest(b"members", *encoded)

    def _model_value(self, value: Any, weights: bool, path: str) -> bytes:
        """A member of a module; without ``weights`` a tensor counts by shape and a submodule by structure."""
        if weights:
            return self.encode(value, path)
        if isinstance(value, torch.Tensor):
            return _digest(b"tensor shape", _tensor_header(value))
        if isinstance(value, nn.Module):
            return self._once(("structure", id(value)), value, path, lambda m, p: self._nn_module(m, p, weights=False))
        return self.encode(value, path)

    def _object(self, value: Any, path: str) -> bytes:
        """Any other object: its type and its state (``__dict__`` and ``__slots__``)."""
        cls = type(value)
        # A class written in Python has a __dict__ or declares __slots__; other state lives in C.
        if not hasattr(value, "__dict__") and "__slots__" not in vars(cls) and cls is not object:
            raise self._error(path, cls.__qualname__)
        slots = _slot_attributes(cls)
        state = dict(getattr(value, "__dict__", {}))
        state.update({name: getattr(value, name) for name in slots if hasattr(value, name)})
        return _digest(b"object", self.encode(cls, _of(path, f"class {cls.__qualname__}")), self._fields(state, path))


def _slot_attributes(cls: type) -> list[str]:
    """The attribute names of ``cls``'s ``__slots__`` (private ones mangled), base classes included."""
    names = []
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            private = slot.startswith("__") and not slot.endswith("__")
            names.append(f"_{klass.__name__.lstrip('_')}{slot}" if private else slot)
    return names


@functools.lru_cache(maxsize=1)
def _module_internals() -> frozenset[str]:
    """What ``nn.Module.__init__`` gives every module: parameters, buffers, children and hooks are
    encoded on their own, the rest is the same for every module."""
    return frozenset(vars(nn.Module())) - {"training"}
