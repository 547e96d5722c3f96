"""The Dash application: ``create_app(runs_dir)`` builds a multi-page dashboard.

Pages are registered explicitly (``pages_folder=""``) and their callbacks are attached to this
app object only, so creating several apps in one process (tests) never mixes their state.
Assets (CSS) are served from ``lcaviz/assets`` and all JS is served locally: no CDN, works
offline.
"""

from __future__ import annotations

from pathlib import Path

import dash
from dash import dcc, html

from lcaviz import __version__
from lcaviz.app import examples, frames
from lcaviz.app.pages import compare, run, runs
from lcaviz.app.security import install_guards
from lcaviz.app.state import AppState

ASSETS = Path(__file__).parents[1] / "assets"
STATE_KEY = "LCAVIZ_STATE"


def _shell() -> html.Div:
    """Top bar + page container shared by all pages."""
    return html.Div([
        html.Header([
            dcc.Link([html.Span("LCA", className="logo-mark"), " explorer"], href="/",
                     className="logo"),
            html.Nav([dcc.Link("Runs", href="/")], id="nav"),
            html.Span(f"v{__version__}", className="muted version"),
        ], className="topbar"),
        html.Main(dash.page_container, className="container"),
    ])


def create_app(runs_dir: str | Path, *, debug: bool = False,
               check_host: bool = True) -> dash.Dash:
    """Build the dashboard for the bundles under ``runs_dir``.

    Args:
        runs_dir: directory scanned (recursively) for ``*.h5`` run bundles.
        debug: Dash debug mode (dev tools, tracebacks in the browser); keep off unless needed.
        check_host: answer only requests whose ``Host`` is a loopback name (DNS rebinding);
            ``lcaviz serve --host ...`` turns it off.

    Returns:
        The :class:`dash.Dash` app; its Flask server is ``app.server``.

    Raises:
        FileNotFoundError: ``runs_dir`` is not an existing directory.
    """
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory does not exist: {root}")
    state = AppState(runs_dir=root.resolve())
    app = dash.Dash(
        __name__, use_pages=True, pages_folder="", assets_folder=str(ASSETS),
        serve_locally=True, external_stylesheets=[], external_scripts=[],
        suppress_callback_exceptions=True, title="LCA explorer",
        update_title=None,
    )
    app.config.suppress_callback_exceptions = True
    app.server.config[STATE_KEY] = state
    install_guards(app.server, state.runs_dir, check_host=check_host)
    _register_pages()
    app.layout = _shell()
    frames.register_route(app.server, state)
    examples.register_route(app.server, state)
    runs.register_callbacks(app, state)
    run.register_callbacks(app, state)
    compare.register_callbacks(app, state)
    app.enable_dev_tools(debug=debug, dev_tools_ui=debug, dev_tools_props_check=debug,
                         dev_tools_hot_reload=False)
    return app


def _dash_context_in_this_thread() -> None:
    """Dash (4.x) reads a context variable in ``register_page`` that it sets only in the thread
    that imported it, so ``create_app`` from another thread (a notebook's server thread, a
    test's client thread) raised LookupError; give this thread the same empty context."""
    try:
        from dash._callback_context import context_value
    except ImportError:  # a Dash without it does not read it either
        return
    try:
        context_value.get()
    except LookupError:
        context_value.set({})


def _register_pages() -> None:
    """(Re-)register the pages; the registry is global in Dash, the layouts are stateless."""
    _dash_context_in_this_thread()
    dash.register_page("lcaviz.app.pages.runs", path="/", name="Runs", title="Runs · LCA explorer",
                       layout=runs.layout)
    dash.register_page("lcaviz.app.pages.run", path="/run", name="Run", title="Run · LCA explorer",
                       layout=run.layout)
    dash.register_page("lcaviz.app.pages.run_path", path_template="/run/<run_id>", name="Run ",
                       title="Run · LCA explorer", layout=run.layout)
    dash.register_page("lcaviz.app.pages.compare", path="/compare", name="Compare",
                       title="Compare · LCA explorer", layout=compare.layout)


def get_state(app: dash.Dash) -> AppState:
    """The :class:`AppState` of an app made by :func:`create_app` (for tests/benchmarks)."""
    return app.server.config[STATE_KEY]
