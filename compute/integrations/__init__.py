"""Your own loop: :class:`~compute.integrations.tracker.LCATracker` and the framework callbacks.

Each callback is an optional extra:

* :mod:`compute.integrations.lightning`: ``LCACallback`` for PyTorch Lightning
  (``pip install lca-explorer[lightning]``);
* :mod:`compute.integrations.hf`: ``LCATrainerCallback`` for the Hugging Face ``Trainer``
  (``pip install lca-explorer[hf]``).

Neither framework is imported until its module is.
"""
