"""The LCA math: the full-dataset objective, the path integral, its error, subsets."""
