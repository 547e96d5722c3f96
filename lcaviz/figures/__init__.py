"""Pure figure functions: numpy arrays in, ``plotly.graph_objects.Figure`` out (no I/O, no Dash).

Modules: ``theme`` (palette, fonts), ``layout2d`` (tensors as 2-D images, block sums),
``heatmap`` (per-parameter heatmap, paper Fig. 2), ``curves`` (loss, residual, per-layer LCA,
single-parameter drill-down), ``helping`` (Fig. 3), ``weibull``, ``synchrony`` (Fig. 6 and the
shift test), ``compare`` (multi-run overlays).
"""
