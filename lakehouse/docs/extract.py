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
    except (TypeError, ValueError):
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


def documents(module_name: str) -> Iterator[dict[str, str]]:
    """Yield the module, its public classes (with methods) and functions defined in it."""
    module = _quiet_import(module_name)
    if module is None:
        return
    yield _record(module_name, "module", module_name, module)
    public = getattr(module, "__all__", None)
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or (public is not None and name not in public):
            continue
        if getattr(obj, "__module__", None) != module_name:
            continue  # re-exported from elsewhere: documented where it is defined
        if inspect.isclass(obj):
            yield _record(f"{module_name}.{name}", "class", module_name, obj)
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("_") or not callable(member):
                    continue
                yield _record(f"{module_name}.{name}.{attr}", "method", module_name, member)
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield _record(f"{module_name}.{name}", "function", module_name, obj)


def main(argv: list[str]) -> None:
    """Write one JSON object per documented name to argv[0]."""
    output, requested = argv[0], argv[1:]
    roots = requested or default_modules()
    with open(output, "w", encoding="utf-8") as sink:
        for root in roots:
            package = _quiet_import(root)
            if package is None:
                continue
            names = [root, *_submodules(package)]
            for name in names:
                for record in documents(name):
                    sink.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
