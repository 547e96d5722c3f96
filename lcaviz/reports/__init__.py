"""Offline reports from bundles: ``lcaviz summary``, ``lcaviz animate`` (GIF/MP4), the
generated reproduction report and the last-layer experiments."""
