"""Extract documentation of public stdlib names with inspect; run as a child process.

Importing a module can have side effects (threads, signal handlers, printing), so `lake seed`
runs this module in a separate interpreter that writes JSON lines to a file:

    python -m lakehouse.docs.extract OUTPUT.jsonl [module ...]
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import pkgutil
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

# Modules that open windows or browsers, print on import, or exist only for tests and tooling.
SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
    "ensurepip", "pydoc_data", "encodings", "msilib", "winreg", "winsound", "msvcrt", "nt",
    "__main__", "__phello__", "xxsubtype", "xxlimited", "_winapi",
}  # fmt: skip


def default_modules() -> list[str]:
    """Return the public top-level stdlib modules of this interpreter."""
    return sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)


def _submodules(package: Any) -> Iterator[str]:
    path = getattr(package, "__path__", None)
    if not path:
        return
    for info in pkgutil.walk_packages(path, prefix=package.__name__ + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") or p in SKIP or p in {"tests", "test"} for p in parts):
            continue
        yield info.name


def _quiet_import(name: str) -> Any | None:
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except BaseException:  # ImportError, SystemExit, platform errors: skip the module
            return None


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _signature(obj: Any) -> str:
    try:
        text = str(inspect.signature(obj))
    except Exception:  # no signature, or one whose defaults do not evaluate (curses constants)
        return ""
    # Defaults such as `<built-in method match of re.Pattern object at 0x7f...>` carry a memory
    # address that changes every run; without it the text (and its hash) is stable.
    return _ADDRESS.sub("", text)


def _record(doc_id: str, kind: str, module: str, obj: Any) -> dict[str, str]:
    return {
        "doc_id": doc_id,
        "kind": kind,
        "module": module,
        "signature": _signature(obj) if kind != "module" else "",
        "docstring": inspect.getdoc(obj) or "",
    }


# Modules users reach under another name: os.path is posixpath on this platform.
ALIASES = {"posixpath": "os.path"}
# Public C modules behind a facade that re-exports them: os.access, not posix.access.
FACADES = {"posix": "os"}


def _public(module: Any) -> Iterator[tuple[str, Any]]:
    """Yield the public names of a module (its `__all__` when it has one) and their objects."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in sorted(set(names)):
        if name.startswith("_"):
            continue
        with contextlib.suppress(Exception):  # lazy module __getattr__ may fail on a platform
            yield name, getattr(module, name)


def _exposes(module_name: str, obj: Any) -> bool:
    """Return True when `module_name` is a place users get `obj` from.

    That is where it is defined, or a public module re-exporting it from a private or C module
    (`bisect.insort` from `_bisect`, `hashlib.sha256` from `_hashlib`) or from one of its own
    submodules (`asyncio.run` from `asyncio.runners`).
    """
    if inspect.ismethod(obj) and not inspect.isclass(obj.__self__):
        return True  # a method of an instance this module holds (secrets.choice)
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str):
        return False
    if (
        home == module_name
        or home.startswith(module_name + ".")
        or FACADES.get(home) == module_name
    ):
        return True
    return any(part.startswith("_") for part in home.split("."))


Exposure = tuple[str, str, str, Any]  # (doc_id, kind, module, object)


def exposures(module_name: str) -> Iterator[Exposure]:
    """Yield the module, its public classes and functions, with every name users reach them by."""
    module = _quiet_import(module_name)
    if module is None:
        return
    public_name = ALIASES.get(module_name, module_name)
    yield public_name, "module", public_name, module
    for name, obj in _public(module):
        if not _exposes(module_name, obj):
            continue  # re-exported from another public module: documented there
        if inspect.isclass(obj):
            yield f"{public_name}.{name}", "class", public_name, obj
        elif inspect.isroutine(obj) or (callable(obj) and hasattr(obj, "__wrapped__")):
            # Bound methods too (random.sample is a method of a hidden Random), and functions
            # behind a cache decorator (urllib.parse.urlsplit).
            yield f"{public_name}.{name}", "function", public_name, obj


def _rank(doc_id: str) -> tuple[int, int, str]:
    # The shortest public path is the one users write: asyncio.run, not asyncio.runners.run.
    return doc_id.count("."), len(doc_id), doc_id


def _private(cls: type) -> bool:
    module = getattr(cls, "__module__", "") or ""
    return cls.__name__.startswith("_") or any(p.startswith("_") for p in module.split("."))


def _members(cls: type) -> dict[str, Any]:
    """Return a class's own members and those it inherits from private bases.

    `argparse.ArgumentParser.add_argument` lives in `_ActionsContainer`: users know it by the
    public class. Members of public bases are documented under those bases.
    """
    members: dict[str, Any] = {}
    for base in cls.__mro__:
        if base is cls or _private(base):
            for attr, member in vars(base).items():
                members.setdefault(attr, member)
    return members


def documents(module_names: list[str]) -> Iterator[dict[str, str]]:
    """Yield one record per documented object, under its shortest public name.

    Classes come with their methods; an object several modules expose is documented once.
    """
    best: dict[int, Exposure] = {}
    for module_name in module_names:
        for exposure in exposures(module_name):
            known = best.get(id(exposure[3]))
            if known is None or _rank(exposure[0]) < _rank(known[0]):
                best[id(exposure[3])] = exposure
    for doc_id, kind, module, obj in sorted(best.values(), key=lambda e: e[0]):
        yield _record(doc_id, kind, module, obj)
        if kind != "class":
            continue
        for attr, member in sorted(_members(obj).items()):
            if attr.startswith("_") or not callable(member):
                continue
            yield _record(f"{doc_id}.{attr}", "method", module, member)


def main(argv: list[str]) -> None:
    """Write one JSON object per documented name to argv[0]."""
    output, requested = argv[0], argv[1:]
    roots = requested or default_modules()
    names: list[str] = []
    for root in roots:
        package = _quiet_import(root)
        if package is not None:
            names += [root, *_submodules(package)]
    # A requested root brings the modules documented under its name (os -> posixpath).
    names += [
        m for m, public in ALIASES.items() if public.split(".")[0] in roots and m not in names
    ]
    with open(output, "w", encoding="utf-8") as sink:
        for record in documents(names):
            sink.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
