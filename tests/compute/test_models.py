"""Tests for compute.nets.models: exact sizes, shapes, names, seeded init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from compute.nets.models import MODELS, build_model

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


@pytest.mark.parametrize("name, shape, expected", [
    ("mnist_fc", MNIST, 84_060),
    ("lenet", MNIST, 808_970),
    ("allcnn", CIFAR, 1_369_738),
    ("resnet20", CIFAR, 269_722),  # option-A shortcuts; projection shortcuts would give 272,474
])
def test_parameter_counts(name, shape, expected):
    assert n_params(build_model(name, shape, 10)) == expected


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [MNIST, CIFAR])
def test_forward_shapes(name, shape):
    model = build_model(name, shape, 7)
    out = model(torch.rand(2, *shape))  # (2, 7)
    assert out.shape == (2, 7) and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mnist_fc_flattens_any_shape():
    model = build_model("mnist_fc", (784,), 10)
    assert model.fc1.in_features == 784 and model(torch.rand(2, 784)).shape == (2, 10)
    assert build_model("mnist_fc", CIFAR, 10).fc1.in_features == 3072


@pytest.mark.parametrize("name", MODELS)
def test_seeded_init(name):
    state = torch.random.get_rng_state()
    a, b = build_model(name, CIFAR, 10, seed=3), build_model(name, CIFAR, 10, seed=3)
    c = build_model(name, CIFAR, 10, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG left untouched
    for (na, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(),
                                strict=True):
        assert torch.equal(pa, pb)
        if "weight" in na and pa.dim() > 1:
            assert not torch.equal(pa, pc)


@pytest.mark.parametrize("name", MODELS)
def test_init_scheme(name):
    model = build_model(name, CIFAR, 10)
    for _, m in leaves(model):
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all()
        elif m.bias is not None:
            assert (m.bias == 0).all()
    # He-normal, fan_in: std = sqrt(2 / fan_in)
    w = next(m.weight for _, m in leaves(model) if m.weight.numel() > 30_000)
    fan_in = w[0].numel()
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)


@pytest.mark.parametrize("name, names", [
    ("mnist_fc", ["fc1", "fc2", "fc3"]),
    ("lenet", ["conv1", "conv2", "fc1", "fc2"]),
    ("allcnn", [f"conv{i}" for i in range(1, 10)]),
])
def test_module_names(name, names):
    assert [n for n, _ in leaves(build_model(name, MNIST, 10))] == names


def test_resnet_layout():
    layers = leaves(build_model("resnet20", CIFAR, 10))
    assert [n for n, _ in layers[:4]] == ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1"]
    assert layers[-1][0] == "fc" and isinstance(layers[-1][1], nn.Linear)
    convs = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and len(layers) == 39  # 19 conv + 19 BN + fc
    for i in convs:  # every conv is directly followed by its BatchNorm
        assert isinstance(layers[i + 1][1], nn.BatchNorm2d)
        assert layers[i][1].bias is None


@pytest.mark.parametrize("name", MODELS)
def test_only_plain_layers(name):
    for _, m in leaves(build_model(name, CIFAR, 10)):
        assert type(m) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def test_bad_names_and_shapes():
    with pytest.raises(ValueError, match="mnist_fc, lenet, allcnn, resnet20"):
        build_model("vgg16", MNIST, 10)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model("lenet", (784,), 10)
    with pytest.raises(ValueError, match="at least 9x9"):
        build_model("allcnn", (3, 8, 8), 10)
