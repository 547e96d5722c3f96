"""lcaviz: a local dashboard and torch-free analyses for LCA run bundles."""

__version__ = "0.1.0"
