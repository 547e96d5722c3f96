"""Dashboard pages: the runs list, one run, and the side-by-side comparison.

Each page module has a ``layout(**query)`` function, plain callback functions that take the
app's :class:`~lcaviz.app.state.AppState` first (testable without a server), and
``register_callbacks(app, state)`` that wires them to Dash.
"""
