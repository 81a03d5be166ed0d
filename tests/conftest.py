import os

import pytest
import torch

# Keep CPU tests reproducible and light on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))

HAS_CUDA = torch.cuda.is_available()

# Parametrise a test over devices with `@pytest.mark.parametrize("device", DEVICES)`.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """The tiny random-weight Stable Diffusion folder (bridgedfast.testing), built once per session.
    Tests only read it; a test that needs a variant copies it first."""
    from bridgedfast.testing import tiny_stable_diffusion

    return tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))
