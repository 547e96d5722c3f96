"""One HDF5 dataset with its anndata-style encoding attributes (the writer's building block:
:mod:`lcaviz.bundle.layout`, :mod:`~lcaviz.bundle.groups` and
:mod:`~lcaviz.bundle.counterfactual` all create datasets with it)."""

from __future__ import annotations

import h5py

STR = h5py.string_dtype()


def make_dataset(group: h5py.Group, name: str, shape: tuple, dtype, description: str, *,
                 encoding: str | None = None, **kw) -> h5py.Dataset:
    """Create a dataset with anndata-style encoding attributes."""
    ds = group.create_dataset(name, shape=shape, dtype=dtype, **kw)
    ds.attrs["encoding-type"] = encoding or ("string-array" if dtype is STR else "array")
    ds.attrs["encoding-version"] = "1"
    ds.attrs["description"] = description
    return ds
