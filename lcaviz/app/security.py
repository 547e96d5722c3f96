"""Safe mapping of user-supplied run ids (URL parameters) to bundle files, and safe filenames.

A run id is a path relative to RUNS_DIR, e.g. ``"mnist/fc-sgd.h5"``. It arrives from the
browser, so it is untrusted: :func:`resolve_run` accepts it only if, after following symlinks,
it names a regular ``.h5`` file inside RUNS_DIR.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

BUNDLE_SUFFIXES = (".h5", ".hdf5")
_MAX_ID = 1024
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunPathError(ValueError):
    """The run id is malformed, escapes RUNS_DIR, or names no bundle."""


def _fully_unquoted(s: str) -> str:
    """Percent-decode until stable, so that double-encoded tricks (%252e) are seen too."""
    for _ in range(5):
        d = unquote(s)
        if d == s:
            break
        s = d
    return s


def _check_form(s: str) -> None:
    if not s or len(s) > _MAX_ID:
        raise RunPathError("empty or overlong run id")
    if any(unicodedata.category(ch) == "Cc" for ch in s):  # NUL and other control chars
        raise RunPathError("control character in run id")
    if "\\" in s:
        raise RunPathError("backslash in run id")
    if s.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", s):
        raise RunPathError("absolute run id")
    if any(part in ("..", ".") for part in s.split("/")):
        raise RunPathError("'..' or '.' in run id")


def resolve_run(runs_dir: str | Path, run_id: str) -> Path:
    """Map an untrusted run id to the bundle file it names inside ``runs_dir``.

    Args:
        runs_dir: the dashboard's runs directory.
        run_id: path of the bundle relative to ``runs_dir`` (``/`` separators).

    Returns:
        The resolved absolute path of an existing ``.h5`` / ``.hdf5`` regular file.

    Raises:
        RunPathError: for ``..``, absolute paths, NUL/control characters, backslashes,
            percent-encoded variants of those, symlinks leaving ``runs_dir``, missing files
            and non-bundle suffixes.
    """
    if not isinstance(run_id, str):
        raise RunPathError("run id must be a string")
    _check_form(run_id)
    _check_form(_fully_unquoted(run_id))
    root = Path(runs_dir).resolve(strict=True)
    candidate = root.joinpath(*PurePosixPath(run_id).parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError) as e:  # missing file, symlink loop
        raise RunPathError(f"no such run: {run_id}") from e
    if not real.is_relative_to(root):
        raise RunPathError("run id leaves the runs directory")
    if not real.is_file():
        raise RunPathError(f"not a file: {run_id}")
    if real.suffix.lower() not in BUNDLE_SUFFIXES:
        raise RunPathError(f"not a bundle (.h5): {run_id}")
    return real


def run_id_of(runs_dir: str | Path, path: str | Path) -> str:
    """The run id (relative POSIX path) of a bundle path inside ``runs_dir``."""
    return Path(path).resolve().relative_to(Path(runs_dir).resolve()).as_posix()


def safe_filename(stem: str, ext: str, max_len: int = 120) -> str:
    """A download filename made only of ``[A-Za-z0-9._-]``, never hidden, never a path.

    Args:
        stem: desired name (run id, figure name ...); anything unsafe becomes ``_``.
        ext: extension without the dot (also sanitised).
        max_len: maximum length of the stem.
    """
    s = _SAFE.sub("_", unicodedata.normalize("NFKD", str(stem)))
    s = s.replace("..", "_").strip("._-")[:max_len] or "figure"
    e = _SAFE.sub("", str(ext)).strip(".")[:10] or "dat"
    return f"{s}.{e}"


# -- HTTP guards (issue 28 item 4) ---------------------------------------------------------------
MAX_BODY_BYTES = 1 * 2**20  # a callback's request is a few KB; 200 MB POSTs were read in full
MAX_RESPONSE_BYTES = 64 * 2**20  # no single answer larger than this leaves the server
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# a link in a Plotly label (a layer named '<a href="https://...">') would be clickable: keep
# the text only. Matched inside JSON text, so an escaped quote never ends the match early.
_LINK = re.compile(rb'<a(?:\s(?:[^>"\\]|\\.)*)?>|</a\s*>'
                   rb'|\\u003ca(?:\s(?:[^"\\]|\\[^u]|\\u(?!003e))*)?\\u003e|\\u003c/a\s*\\u003e',
                   re.IGNORECASE)
_DOWNLOAD = (b'"filename"', b'"base64"')  # a dcc.Download payload: a file, left as it is


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header without its port (``[::1]:8050`` -> ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def strip_links(body: bytes) -> bytes:
    """Remove every ``<a ...>`` / ``</a>`` tag from a JSON or HTML body (text stays)."""
    return _LINK.sub(b"", body)


def install_guards(server, runs_dir: Path, check_host: bool = True) -> None:
    """Harden the Flask ``server`` of one dashboard.

    * request bodies over :data:`MAX_BODY_BYTES` get 413 before anything reads them;
    * unless ``check_host`` is False (``lcaviz serve --host ...``), a request whose ``Host`` is
      not a loopback name gets 421: a web page on another site that re-points its DNS name
      at 127.0.0.1 (DNS rebinding) cannot read the dashboard;
    * JSON and HTML answers lose every link tag (except file downloads, whose bytes are the
      file's) and the runs directory's absolute path (error messages name runs by their id),
      and none is larger than :data:`MAX_RESPONSE_BYTES`.
    """
    from flask import Response, request

    server.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    roots = sorted({str(Path(runs_dir)), str(Path(runs_dir).resolve())}, key=len, reverse=True)
    prefixes = [(r.rstrip("/") + "/").encode() for r in roots]
    prefixes += [p.replace(b"/", b"\\u002f") for p in prefixes]  # Dash's JSON escapes "/"

    @server.before_request
    def _guard_request():
        if check_host and host_name(request.host or "") not in LOOPBACK_HOSTS:
            return Response("unknown Host header: open the dashboard at http://127.0.0.1 "
                            "(or start it with --host)", status=421, mimetype="text/plain")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return Response(f"request body over {MAX_BODY_BYTES:,} bytes", status=413,
                            mimetype="text/plain")
        return None

    @server.after_request
    def _guard_response(response):
        if response.direct_passthrough or response.is_streamed or response.mimetype not in (
                "application/json", "text/html", "text/plain"):
            return response
        body = response.get_data()
        if len(body) > MAX_RESPONSE_BYTES:
            return Response(f"answer over {MAX_RESPONSE_BYTES:,} bytes refused", status=507,
                            mimetype="text/plain")
        clean = body if all(k in body for k in _DOWNLOAD) else strip_links(body)
        for prefix in prefixes:
            clean = clean.replace(prefix, b"")
        if clean != body:
            response.set_data(clean)
        return response
