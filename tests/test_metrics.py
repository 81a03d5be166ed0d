"""bridgedfast.metrics: KID against a direct O(n^2) unbiased MMD^2, the penultimate features
against timm's own pre-logits and head, class faithfulness against a hand count."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bridgedfast.metrics import class_faithfulness, kid, penultimate_features, polynomial_mmd2


def hand_mmd2(x: list[list[float]], y: list[list[float]]) -> float:
    """The unbiased MMD^2 estimator written out pair by pair (Binkowski et al. 2018, eq. 2) with
    k(a, b) = (a.b / d + 1)^3."""
    d = len(x[0])

    def k(a, b):
        return (sum(p * q for p, q in zip(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_of_one_full_subset_is_the_unbiased_mmd2():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 5, generator=g, dtype=torch.float64)
    b = torch.randn(12, 5, generator=g, dtype=torch.float64) * 1.3 + 0.4
    want = hand_mmd2(a.tolist(), b.tolist())
    mean, std = kid(a, b, subsets=1, subset_size=12)
    assert mean == pytest.approx(want, rel=1e-10, abs=1e-12) and std == 0.0
    # Different sizes: the estimator's three terms each over their own pairs.
    assert polynomial_mmd2(a[:7], b) == pytest.approx(hand_mmd2(a[:7].tolist(), b.tolist()), rel=1e-10)


def test_kid_subsets_average_the_subset_estimates_with_seeded_draws():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20, 4, generator=g)
    b = torch.randn(15, 4, generator=g) + 0.5
    mean, std = kid(a, b, subsets=5, subset_size=6, seed=3)
    assert kid(a, b, subsets=5, subset_size=6, seed=3) == (mean, std)
    assert kid(a, b, subsets=5, subset_size=6, seed=4) != (mean, std)
    # Each subset is 6 distinct rows of each side: the mean lies within the range of such estimates.
    assert std > 0
    # subset_size larger than either side: the smaller side's size (15) from each.
    m15 = kid(a, b, subsets=1, subset_size=1000, seed=0)[0]
    assert isinstance(m15, float)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shifted_one():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(300, 8, generator=g)
    same = torch.randn(300, 8, generator=g)
    shifted = torch.randn(300, 8, generator=g) + 1.0
    k_same, _ = kid(a, same, subsets=20, subset_size=100)
    k_shift, s_shift = kid(a, shifted, subsets=20, subset_size=100)
    assert abs(k_same) < 0.05 * k_shift
    assert k_shift > 5 * s_shift > 0


def test_kid_matches_torchmetrics_where_installed():
    tm = pytest.importorskip("torchmetrics.image.kid")
    g = torch.Generator().manual_seed(5)
    a = torch.randn(40, 6, generator=g, dtype=torch.float64)
    b = torch.randn(40, 6, generator=g, dtype=torch.float64) + 0.3
    ref = tm.poly_mmd(a, b, degree=3, gamma=None, coef=1.0)
    assert kid(a, b, subsets=1, subset_size=40)[0] == pytest.approx(float(ref), rel=1e-8)


@pytest.mark.parametrize("a, b, kwargs, message", [
    (torch.zeros(1, 3), torch.zeros(4, 3), {}, "N >= 2"),
    (torch.zeros(4, 3), torch.zeros(4, 2), {}, "different widths"),
    (torch.zeros(4, 3), torch.zeros(4, 3), {"subsets": 0}, "subsets"),
    (torch.zeros(4, 3), torch.zeros(4, 3), {"subset_size": 1}, "subset_size"),
])
def test_kid_refuses_bad_input_naming_it(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kid(a, b, **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from bridgedfast.data import pack
    from bridgedfast.testing import image_folder

    root = tmp_path_factory.mktemp("metrics")
    image_folder(root / "imgs", {"ant": 3, "bee": 4, "cow": 2}, size_range=(20, 30), seed=4)
    return pack(root / "imgs", root / "store")


def reference_batch(store, size: int, crop_pct: float, mean, std) -> torch.Tensor:
    """torchvision's Resize(shorter side) + CenterCrop + Normalize, image by image."""
    from torchvision.transforms.v2 import functional as F

    resize = max(size, int(size / crop_pct))
    out = []
    for i in range(len(store)):
        x = store.image(i).permute(2, 0, 1).float() / 255
        x = F.center_crop(F.resize(x, [resize], antialias=True), [size, size])
        out.append(F.normalize(x, list(mean), list(std)))
    return torch.stack(out)


def test_penultimate_features_are_timms_pre_logits_of_the_eval_transform(store):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=7).eval()
    cfg = model.pretrained_cfg
    feats = penultimate_features(model, store, image_size=24, batch_size=4)
    x = reference_batch(store, 24, cfg["crop_pct"], cfg["mean"], cfg["std"])
    with torch.no_grad():
        want = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    assert feats.shape == (len(store), model.num_features)
    torch.testing.assert_close(feats, want, atol=2e-3, rtol=1e-3)
    # Pre-logits: the classifier applied to them gives the model's logits.
    torch.testing.assert_close(model.get_classifier()(feats), logits, atol=5e-3, rtol=1e-3)


class ColourClassifier(nn.Module):
    """Logits = minus the distance of an image's mean colour to each of a few colours."""

    def __init__(self, colours: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("colours", colours)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x.mean((2, 3)), self.colours)


def test_class_faithfulness_counts_correct_images_matching_classes_by_name(store):
    from bridgedfast.transfer.data import make_eval_augment
    from bridgedfast.transfer.models import data_config

    model = ColourClassifier(torch.zeros(3, 3))
    cfg = data_config(model, 16)
    aug = make_eval_augment(16, crop_pct=cfg["crop_pct"], mean=cfg["mean"], std=cfg["std"])
    means = torch.stack([aug([store.image(i)]).mean((2, 3))[0] for i in range(len(store))])
    # The classifier's classes in another order than the store's: cow, ant, bee.
    names = ["cow", "ant", "bee"]
    centre = {c: means[store.labels == store.classes.index(c)].mean(0) for c in names}
    model.colours = torch.stack([centre[c] for c in names])
    assert class_faithfulness(model, store, names, image_size=16, batch_size=2) == 1.0
    # Swap the ant and bee colours: those 3 + 4 images are now wrong, the 2 cows still right.
    model.colours = torch.stack([centre["cow"], centre["bee"], centre["ant"]])
    assert class_faithfulness(model, store, names, image_size=16, batch_size=2) == pytest.approx(2 / 9)
    with pytest.raises(ValueError, match="no class named 'bee'"):
        class_faithfulness(model, store, ["cow", "ant", "dog"], image_size=16)
