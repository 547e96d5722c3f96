"""The reference networks: MNIST-FC, LeNet, All-CNN, ResNet-20, a small transformer."""
