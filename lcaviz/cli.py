"""Command line: ``lcaviz serve [RUNS_DIR]``, ``lcaviz summary RUN.h5 [--json]``, ``lcaviz
animate ...`` and ``lcaviz export tensorboard|wandb ...``."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
import webbrowser
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


class _HostGiven(argparse.Action):
    """``--host`` that also records that it was given (which turns the Host check off)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.host, namespace.host_given = values, True


def build_parser() -> argparse.ArgumentParser:
    """The ``lcaviz`` argument parser (exposed for tests)."""
    ap = argparse.ArgumentParser(prog="lcaviz", description="LCA run bundles: dashboard and "
                                 "summaries (no torch needed).")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start the local dashboard")
    s.add_argument("runs_dir", nargs="?", default="runs", type=Path,
                   help="directory scanned for *.h5 bundles (default: ./runs)")
    s.add_argument("--host", default=DEFAULT_HOST, action=_HostGiven,
                   help="address to bind (default 127.0.0.1; anything else exposes your runs "
                        "to the network). Without it, requests must name a loopback host "
                        "(DNS-rebinding guard)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    s.add_argument("--debug", action="store_true", help="Dash debug mode (development only)")
    m = sub.add_parser("summary", help="print a run's summary statistics")
    m.add_argument("bundle", type=Path)
    m.add_argument("--json", action="store_true", help="machine-readable JSON output")
    a = sub.add_parser("animate", add_help=False,
                       help="animated GIF or MP4 of a tensor's or layer's LCA (lcaviz animate -h)")
    a.add_argument("args", nargs=argparse.REMAINDER)
    e = sub.add_parser("export", add_help=False,
                       help="export a run to TensorBoard or W&B (lcaviz export -h)")
    e.add_argument("args", nargs=argparse.REMAINDER)
    return ap


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    """Run the dashboard with Flask's threaded server (fine for local use)."""
    host_given = getattr(args, "host_given", False)
    runs_dir = args.runs_dir.expanduser()
    if not runs_dir.is_dir():
        print(f"lcaviz: error: runs directory does not exist: {runs_dir}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"lcaviz: warning: binding {args.host} makes the dashboard and your run files "
              "reachable from other machines; it has no authentication. Use 127.0.0.1 unless "
              "you trust the network.", file=sys.stderr)
    from lcaviz.app import create_app

    app = create_app(runs_dir, debug=args.debug, check_host=not host_given)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}/"
    print(f"lcaviz: serving {runs_dir.resolve()} at {url} (Ctrl-C to stop)", file=sys.stderr)
    if not args.no_browser:
        threading.Timer(1.0, lambda: webbrowser.open_new_tab(url)).start()
    app.run(host=args.host, port=args.port, debug=args.debug, use_reloader=False,
            threaded=True)
    return 0


def summary(args: argparse.Namespace) -> int:
    """Delegate to :mod:`lcaviz.reports.summary_cli` (written with the analyses)."""
    from lcaviz.reports import summary_cli

    argv = [str(args.bundle)] + (["--json"] if args.json else [])
    return int(summary_cli.main(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lcaviz`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["animate"]:  # its own parser, so that `lcaviz animate -h` is its help
        from lcaviz.reports import animation

        return animation.main(argv[1:])
    if argv[:1] == ["export"]:  # its own parser too
        from lcaviz.export import cli as export_cli

        return export_cli.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "animate":
        from lcaviz.reports import animation

        return animation.main(args.args)
    if args.command == "export":
        from lcaviz.export import cli as export_cli

        return export_cli.main(args.args)
    return summary(args)


if __name__ == "__main__":
    raise SystemExit(main())
