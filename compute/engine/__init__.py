"""The one LCA engine behind ``lca-run`` and ``LCATracker`` (docs/architecture.md)."""
