"""The four networks of the LCA paper: MNIST-FC, LeNet, All-CNN-C and ResNet-20, and a
transformer for modular addition (:mod:`compute.nets.transformer`, ``build_model("transformer")``).

Every image model is built only from nn.Conv2d / nn.Linear / nn.BatchNorm2d (activations and
pooling are functional), so generic code can walk ``named_modules()`` and find just the layers;
the transformer's modules each hold one layer's parameters too (embedding tables, per-head
projections, nn.Linear, optional LayerNorms).
There is no dropout anywhere: the LCA loss must be a deterministic function of the parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("mnist_fc", "lenet", "allcnn", "resnet20")  # image classifiers
SEQUENCE_MODELS = ("transformer",)  # token sequences: compute/nets/transformer.py
# the reference transformer (lca-run --net transformer): the grokking run's widths
TRANSFORMER_DEFAULTS = dict(d_model=64, n_heads=4, d_mlp=256, n_layers=1, activation="relu",
                            layernorm=False)


class MnistFC(nn.Module):
    """Flatten -> 100 -> 50 -> n_classes with ReLU (84,060 parameters on MNIST)."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 100)
        self.fc2 = nn.Linear(100, 50)
        self.fc3 = nn.Linear(50, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, prod(input_shape))
        x = F.relu(self.fc1(x))  # (B, 100)
        x = F.relu(self.fc2(x))  # (B, 50)
        return self.fc3(x)  # (B, n_classes)


class LeNet(nn.Module):
    """conv5x5x20 - pool - conv5x5x40 - pool - fc400 - fc (808,970 parameters on MNIST)."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 20, 5, padding=2)  # 'same'
        self.conv2 = nn.Conv2d(20, 40, 5, padding=2)
        self.fc1 = nn.Linear(40 * (h // 4) * (w // 4), 400)  # two 2x2 max-pools
        self.fc2 = nn.Linear(400, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 20, H/2, W/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 40, H/4, W/4)
        x = F.relu(self.fc1(x.flatten(1)))  # (B, 400)
        return self.fc2(x)  # (B, n_classes)


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al., 2015) without dropout.

    Strided 3x3 convs replace pooling; the last 1x1 conv gives one map per class that is
    averaged over space. No ReLU after conv9, so logits can be negative.
    1,369,738 parameters for 3x32x32 inputs and 10 classes.
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int):
        super().__init__()
        c = input_shape[0]
        self.conv1 = nn.Conv2d(c, 96, 3, padding=1)
        self.conv2 = nn.Conv2d(96, 96, 3, padding=1)
        self.conv3 = nn.Conv2d(96, 96, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(96, 192, 3, padding=1)
        self.conv5 = nn.Conv2d(192, 192, 3, padding=1)
        self.conv6 = nn.Conv2d(192, 192, 3, stride=2, padding=1)
        self.conv7 = nn.Conv2d(192, 192, 3)  # 'valid': needs H, W >= 9 overall
        self.conv8 = nn.Conv2d(192, 192, 1)
        self.conv9 = nn.Conv2d(192, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convs = [self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6,
                 self.conv7, self.conv8]
        for conv in convs:  # 32x32 -> 32 -> 16 -> 16 -> 16 -> 8 -> 6 -> 6
            x = F.relu(conv(x))
        x = self.conv9(x)  # (B, n_classes, 6, 6) on 32x32 input
        return x.mean(dim=(2, 3))  # (B, n_classes)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with an identity shortcut (option A when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra_channels = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # option A: parameter-free; subsample spatially and zero-pad the new channels
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            lo = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, lo, self.extra_channels - lo))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al., 2016): 3 stages x 3 basic blocks of 16/32/64 channels.

    Shortcuts use option A (stride-2 subsampling + zero-padded channels, no parameters), as in
    the paper's CIFAR experiments: 269,722 parameters for 3x32x32 inputs and 10 classes.
    Convs have no bias (the BatchNorm that follows each one has its own).
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, stride=1)
        self.layer2 = self._stage(16, 32, stride=2)
        self.layer3 = self._stage(32, 64, stride=2)
        self.fc = nn.Linear(64, n_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1),
                             BasicBlock(planes, planes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, H/4, W/4)
        return self.fc(x.mean(dim=(2, 3)))  # (B, n_classes)


_BUILDERS = {"mnist_fc": MnistFC, "lenet": LeNet, "allcnn": AllCNN, "resnet20": ResNet20}


def init_weights(model: nn.Module) -> None:
    """He-normal (fan_in, ReLU) conv/linear weights, zero biases; BatchNorm weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int,
                seed: int = 0, **options) -> nn.Module:
    """Builds a freshly initialised network.

    Args:
        name: one of ``mnist_fc``, ``lenet``, ``allcnn``, ``resnet20``, ``transformer``.
        input_shape: one example's shape, e.g. (1, 28, 28); conv nets need (C, H, W), the
            transformer (sequence length,) of token ids in 0..n_classes (n_classes + 1 tokens:
            the classes and "=", as in modular addition).
        n_classes: number of outputs.
        seed: the initialisation depends only on this (the global RNG is left untouched).
        options: ``transformer`` only: keyword arguments of
            :class:`compute.nets.transformer.Transformer` over :data:`TRANSFORMER_DEFAULTS`
            (``d_model``, ``n_heads``, ``d_mlp``, ``n_layers``, ``activation``, ``layernorm``,
            ``d_vocab``).

    Raises:
        ValueError: unknown name or an input shape the network cannot take.
    """
    if name == "transformer":
        return _build_transformer(input_shape, n_classes, seed, options)
    if options:
        raise ValueError(f"{name} takes no options, got {', '.join(options)}")
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: "
                         f"{', '.join(MODELS + SEQUENCE_MODELS)}")
    input_shape = tuple(int(d) for d in input_shape)
    if name != "mnist_fc" and len(input_shape) != 3:
        raise ValueError(f"{name} needs a (C, H, W) input shape, got {input_shape}")
    min_hw = {"mnist_fc": 1, "lenet": 4, "allcnn": 9, "resnet20": 1}[name]
    if name != "mnist_fc" and min(input_shape[1:]) < min_hw:
        raise ValueError(f"{name} needs images of at least {min_hw}x{min_hw}, got {input_shape}")
    # fork_rng: seeding here must not shift the caller's random stream (e.g. batch order)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _BUILDERS[name](input_shape, n_classes)
        init_weights(model)
    return model


def _build_transformer(input_shape: tuple[int, ...], n_classes: int, seed: int,
                       options: dict) -> nn.Module:
    from compute.nets.transformer import Transformer

    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 1 or input_shape[0] < 1:
        raise ValueError(f"transformer needs a (sequence length,) input shape of token ids, "
                         f"got {input_shape}")
    unknown = set(options) - set(TRANSFORMER_DEFAULTS) - {"d_vocab"}
    if unknown:
        raise ValueError(f"unknown transformer options: {', '.join(sorted(unknown))}")
    kw = {**TRANSFORMER_DEFAULTS, **options}
    d_vocab = kw.pop("d_vocab", n_classes + 1)
    with torch.random.fork_rng(devices=[]):  # its own init (Transformer.reset_parameters)
        torch.manual_seed(seed)
        return Transformer(input_shape[0], d_vocab, n_classes, **kw)
