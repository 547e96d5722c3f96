"""Framework callbacks that drive :class:`compute.tracker.LCATracker`, each an optional extra:

* :mod:`compute.integrations.lightning`: ``LCACallback`` for PyTorch Lightning
  (``pip install lca-explorer[lightning]``);
* :mod:`compute.integrations.hf`: ``LCATrainerCallback`` for the Hugging Face ``Trainer``
  (``pip install lca-explorer[hf]``).

Neither framework is imported until its module is.
"""
