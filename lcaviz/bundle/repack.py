"""Rewrite a finished bundle with the writer's current chunk layout (numpy + h5py only).

    python -m lcaviz.bundle.repack RUN.h5 [RUN2.h5 ...]

Values, attributes and encodings are copied unchanged; only the chunk shapes of the (rows, P)
datasets are recomputed with ``bundle_writer.lca_chunks``. The new file replaces the old one
atomically. Used when the chunk policy improves (e.g. the sample runs were repacked when the
writer learned to size chunks to the number of stored rows).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py

from lcaviz.bundle.writer import lca_chunks

_WIDE = ("lca", "lca_val", "lca_cumsum", "trajectory")


def repack(path: str | Path) -> None:
    """Rewrite ``path`` in place (via a temporary file and an atomic rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".repack")
    with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver="latest") as dst:
        if src.attrs.get("status") != "complete":
            raise ValueError(f"{path}: only complete bundles are repacked")
        iters, stride = int(src.attrs["iters_planned"]), int(src.attrs["lca_stride"])
        dst.attrs.update(dict(src.attrs))

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(dict(obj.attrs))
                return
            kw = {"maxshape": obj.maxshape, "chunks": obj.chunks}
            if name in _WIDE:
                rows = iters + 1 if name == "trajectory" else iters
                kw["chunks"] = lca_chunks(obj.shape[1], rows, 1 if name == "trajectory"
                                          else stride)
            ds = dst.create_dataset(name, data=obj[()], dtype=obj.dtype, **kw)
            ds.attrs.update(dict(obj.attrs))

        src.visititems(visit)
    os.replace(tmp, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        before = Path(p).stat().st_size
        repack(p)
        print(f"{p}: {before / 1e6:.1f} MB -> {Path(p).stat().st_size / 1e6:.1f} MB")
