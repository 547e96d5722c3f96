"""lcaviz: a local dashboard and torch-free analyses for LCA run bundles.

The notebook API (docs/notebook.md): ``lcaviz.open(path)`` → :class:`lcaviz.api.Run`,
``lcaviz.compare([...])`` → :class:`lcaviz.api_compare.Comparison`, ``lcaviz.show(dir_or_run)``
→ the dashboard inline in Jupyter; ``lcaviz.register_example_renderer(fn)`` draws a training
example of your own data in the dashboard's "Examples" section
(:mod:`lcaviz.figures.example_render`). They are imported on first use, so ``import lcaviz`` stays
cheap (the bundle writer used by ``compute`` imports nothing of the app).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"open": ("lcaviz.api", "open_run"), "Run": ("lcaviz.api", "Run"),
         "NotInBundleError": ("lcaviz.api", "NotInBundleError"),
         "compare": ("lcaviz.api_compare", "compare"),
         "Comparison": ("lcaviz.api_compare", "Comparison"),
         "show": ("lcaviz.api_show", "show"), "Dashboard": ("lcaviz.api_show", "Dashboard"),
         "register_example_renderer": ("lcaviz.figures.example_render",
                                       "register_example_renderer")}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lcaviz' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
