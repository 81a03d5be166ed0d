import math

import pytest
import torch

from bridgedfast.transfer import leep
from bridgedfast.transfer.leep import leep_from_joint, leep_joint


def test_leep_matches_hand_computation():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 0])
    # P(y,z) = [[1.5, 0.5], [0.2, 0.8]] / 3; P(z) = [1.7, 1.3] / 3
    # P(y|z) = [[15/17, 5/13], [2/17, 8/13]]
    expected = (
        math.log(0.9 * 15 / 17 + 0.1 * 5 / 13) + math.log(0.2 * 2 / 17 + 0.8 * 8 / 13) + math.log(0.6 * 15 / 17 + 0.4 * 5 / 13)
    ) / 3
    assert leep(probs, labels) == pytest.approx(expected, abs=1e-6)


def _leep_loops(probs: torch.Tensor, labels: torch.Tensor, num_y: int) -> float:
    n, num_z = probs.shape
    joint = [[0.0] * num_z for _ in range(num_y)]
    for i in range(n):
        for z in range(num_z):
            joint[int(labels[i])][z] += float(probs[i, z]) / n
    pz = [sum(joint[y][z] for y in range(num_y)) for z in range(num_z)]
    total = 0.0
    for i in range(n):
        y = int(labels[i])
        total += math.log(sum(joint[y][z] / pz[z] * float(probs[i, z]) for z in range(num_z)))
    return total / n


def test_leep_source_labels_differ_from_target_labels():
    # Z = 7 source classes (e.g. the pretrained head), Y = 4 target classes.
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(50, 7, generator=g), dim=1)
    labels = torch.randint(0, 4, (50,), generator=g)
    assert leep(probs, labels, num_classes=4) == pytest.approx(_leep_loops(probs, labels, 4), abs=1e-9)


def test_leep_bounds():
    labels = torch.tensor([0, 1, 2, 1])
    assert leep(torch.nn.functional.one_hot(labels, 3).float(), labels) == pytest.approx(0.0, abs=1e-12)
    # An uninformative source model scores the log-likelihood of the label marginal.
    uniform = torch.full((4, 3), 1 / 3)
    assert leep(uniform, labels) == pytest.approx((2 * math.log(0.25) + 2 * math.log(0.5)) / 4)


def test_leep_shards_sum_to_whole():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(20, 5, generator=g), dim=1)
    labels = torch.randint(0, 5, (20,), generator=g)
    joint = leep_joint(probs[:7], labels[:7], 5) + leep_joint(probs[7:], labels[7:], 5)
    total = leep_from_joint(probs[:7], labels[:7], joint) + leep_from_joint(probs[7:], labels[7:], joint)
    assert float(total) / 20 == pytest.approx(leep(probs, labels, 5), abs=1e-12)


def test_leep_rejects_bad_input():
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="softmax"):
        leep(torch.tensor([[2.0, -1.0], [0.5, 0.5]]), labels)
    with pytest.raises(ValueError, match="rows"):
        leep(torch.full((3, 2), 0.5), labels)
    with pytest.raises(ValueError, match="integer"):
        leep(torch.full((2, 2), 0.5), labels.float())
    with pytest.raises(ValueError, match="out of range"):
        leep(torch.full((2, 2), 0.5), torch.tensor([0, 3]), num_classes=2)
