"""Send a run bundle's LCA to the tools a team already watches training in.

``series`` says what is exported (scalars by iteration, per-layer histograms at the stored
rows, the config as hyperparameters) once for every target; ``tensorboard`` writes it as
TensorBoard event files (tensorboardX: no torch, no TensorFlow) and ``wandb`` as a W&B run
(offline unless asked otherwise). ``lcaviz export ...`` is :mod:`lcaviz.export.cli`.
"""
