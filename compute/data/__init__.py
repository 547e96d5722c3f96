"""The data: MNIST / Fashion-MNIST / CIFAR loaders, modular addition, fetch, lca-data."""
