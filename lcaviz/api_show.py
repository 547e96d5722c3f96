"""``lcaviz.show(runs_dir_or_run)``: the dashboard served from the notebook's kernel.

The app (:func:`lcaviz.app.create_app`) runs in a daemon thread on a werkzeug server bound to
127.0.0.1 on a port the OS picks (port 0: free by construction, no race with another
process), and the cell shows it in an iframe. Servers are remembered per runs directory:
showing the same directory again (re-running the cell) stops the previous server first, so
re-running never leaks servers; :func:`stop_all` (also run at exit) stops every one.
"""

from __future__ import annotations

import atexit
import html
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lcaviz.api import Run

HOST = "127.0.0.1"
_SERVERS: dict[Path, Dashboard] = {}
_LOCK = threading.Lock()


class Dashboard:
    """A dashboard served from this process (returned by :func:`show`)."""

    def __init__(self, runs_dir: Path, page: str = "/"):
        from werkzeug.serving import WSGIRequestHandler, make_server

        from lcaviz.app import create_app

        class Quiet(WSGIRequestHandler):
            """No access log: it would fill the notebook cell with one line per request."""

            def log_request(self, *args, **kwargs) -> None:
                pass

        self.runs_dir = runs_dir
        self.app = create_app(runs_dir)
        self._server = make_server(HOST, 0, self.app.server, threaded=True,
                                   request_handler=Quiet)
        self.port = int(self._server.server_port)
        self.url = f"http://{HOST}:{self.port}{page}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"lcaviz-show-{self.port}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the server and close the bundles it opened (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=30)
        self._server.server_close()
        from lcaviz.app import get_state

        state = get_state(self.app)
        state.jobs.shutdown()
        state.bundles.max_open = 0
        with state.bundles._lock:
            state.bundles._evict()
        with _LOCK:
            if _SERVERS.get(self.runs_dir) is self:
                del _SERVERS[self.runs_dir]

    def iframe_html(self, width: str = "100%", height: int = 800) -> str:
        """The ``<iframe>`` the cell shows (escaped)."""
        return (f'<iframe src="{html.escape(self.url)}" width="{html.escape(str(width))}" '
                f'height="{int(height)}" style="border: 1px solid #ddd"></iframe>')

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        return f"<lcaviz dashboard {state} {self.runs_dir} at {self.url}>"


def _target(what: str | Path | Run) -> tuple[Path, str]:
    """``(runs directory, page)`` for a directory, a bundle path or a :class:`Run`."""
    from lcaviz.app.pages.runs import run_href

    path = Path(getattr(what, "path", what)).expanduser().resolve()
    if path.is_dir():
        return path, "/"
    if not path.is_file():
        raise FileNotFoundError(f"no runs directory or bundle at {path}")
    return path.parent, run_href(path.name)


def show(what: str | Path | Run = "runs", *, width: str = "100%", height: int = 800,
         display: bool = True) -> Dashboard:
    """Serve the dashboard in this kernel and show it in the cell.

    Args:
        what: a runs directory (the runs page), or a bundle path or :class:`~lcaviz.api.Run`
            (its run page; the dashboard serves the bundles of its directory).
        width, height: the iframe's size.
        display: show the iframe (when running under IPython); False only starts the server.

    Returns:
        The :class:`Dashboard` (``.url``, ``.stop()``). Showing the same directory again
        stops this one first.
    """
    runs_dir, page = _target(what)
    with _LOCK:
        old = _SERVERS.get(runs_dir)
    if old is not None:
        old.stop()
    dash_ = Dashboard(runs_dir, page)
    with _LOCK:
        _SERVERS[runs_dir] = dash_
    if display:
        _display(dash_, width, height)
    return dash_


def servers() -> list[Dashboard]:
    """The dashboards this process is serving."""
    with _LOCK:
        return list(_SERVERS.values())


def stop_all() -> None:
    """Stop every dashboard :func:`show` started."""
    for d in servers():
        d.stop()


def _display(d: Dashboard, width: str, height: int) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return
    if get_ipython() is None:  # a plain script: nothing to show in
        print(f"lcaviz: dashboard at {d.url}")
        return
    display(HTML(d.iframe_html(width, height)))


atexit.register(stop_all)
