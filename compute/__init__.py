"""lca-explorer compute: reference networks, online LCA and HDF5 run bundles.

The gradients are exact full-dataset gradients; the quadrature error is measured and recorded.

torch is imported lazily so that the torch-free modules (``lcaviz.bundle.writer``,
``lcaviz.bundle.synthetic``) can be used without it.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["compute_lca", "LCAResult", "LCAIntegrator", "LCATracker"]


def __getattr__(name: str):
    if name == "LCATracker":
        from compute.integrations.tracker import LCATracker

        return LCATracker
    if name == "LCAIntegrator":
        from compute.lca.integrator import LCAIntegrator

        return LCAIntegrator
    if name in __all__:
        from compute import api

        return getattr(api, name)
    raise AttributeError(f"module 'compute' has no attribute {name!r}")
