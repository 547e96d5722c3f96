"""lca-run: flags, the reference minibatch loop, record, checkpoints, precision."""
