"""`--model package.module:function`: finding a user's model builder (no torch needed here).

Kept apart from the tracer (codesign/models/trace.py) so that checking a run config's
`model:` imports only the user's module, and a zoo name imports nothing: a bad entry point is
one line naming the fix before any data is loaded or any model is trained.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from codesign.errors import CodesignError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class ModelEntryError(CodesignError):
    """`--model package.module:function` does not lead to a function returning an nn.Module."""


def is_entry_point(model: str) -> bool:
    """'pkg.mod:build' (a user's model) rather than a zoo name."""
    return ":" in str(model)


def load_entry_point(ref: str) -> Callable[[], Any]:
    """The callable `ref` ('package.module:attr[.attr]') names; importing only, not calling it."""
    import importlib

    ref = str(ref).strip()
    mod_name, _, attr = ref.partition(":")
    if not mod_name or not attr or not re.fullmatch(r"[A-Za-z_][\w.]*", mod_name) \
            or not re.fullmatch(r"[A-Za-z_][\w.]*", attr):
        raise ModelEntryError(f"model '{ref}': give your own model as package.module:function (e.g. "
                              "mypkg.models:build), or a zoo name")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name and (mod_name == exc.name or mod_name.startswith(exc.name + ".")):
            raise ModelEntryError(f"model '{ref}': no module named '{exc.name}'; put the folder holding it on "
                                  "PYTHONPATH (e.g. PYTHONPATH=. codesign ...) or pip install its package") from None
        raise ModelEntryError(f"model '{ref}': importing {mod_name} failed ({_first_line(exc)}); install what it "
                              "imports") from None
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
        raise ModelEntryError(f"model '{ref}': importing {mod_name} failed ({_first_line(exc)}); fix that "
                              "module") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            have = sorted(n for n, v in vars(mod).items() if callable(v) and not n.startswith("_")
                          and getattr(v, "__module__", None) == mod.__name__)
            raise ModelEntryError(f"model '{ref}': {mod_name} has no attribute '{attr}' (its functions and classes: "
                                  f"{', '.join(have) or 'none'}); name the function that builds your model")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelEntryError(f"model '{ref}': {attr} is a {type(obj).__name__}, not callable; name a function "
                              "or class that returns the nn.Module when called with no arguments")
    return obj


def build_entry_point(ref: str) -> Any:
    """Call the entry point (no arguments) and check it gives an nn.Module."""
    from torch import nn

    fn = load_entry_point(ref)
    try:
        module = fn()
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise ModelEntryError(f"model '{ref}': calling it with no arguments failed ({_first_line(exc)}); it must "
                              "build the model without arguments (wrap it: def build(): return MyNet(...))") from None
    if not isinstance(module, nn.Module):
        raise ModelEntryError(f"model '{ref}': it returned a {type(module).__name__}, not a torch.nn.Module; "
                              "return the model instance")
    return module


def source_fingerprint(ref: str) -> str | None:
    """A hash of the entry point's source file, so an edited model is not silently reused."""
    import hashlib
    import importlib
    import inspect

    try:
        mod = importlib.import_module(str(ref).partition(":")[0])
        path = inspect.getsourcefile(mod)
        with open(path, "rb") as fh:  # type: ignore[arg-type]
            return hashlib.sha256(fh.read()).hexdigest()[:12]
    except Exception:  # noqa: BLE001 - a fingerprint is best effort (e.g. a compiled module)
        return None


def check_model_name(model: str) -> None:
    """Before any data is loaded: a zoo name, or an entry point that imports and is callable
    (calling it needs the dataset's input shape, so that waits for `resolve_model`)."""
    from codesign.models.zoo import ZOO

    if is_entry_point(model):
        load_entry_point(model)
    elif str(model).lower() not in ZOO:
        raise ModelEntryError(f"unknown model '{model}': choose one of {', '.join(ZOO)}, or give your own model as "
                              "package.module:function (a function returning an nn.Module)")
