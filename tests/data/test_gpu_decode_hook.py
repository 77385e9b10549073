"""data.decode=gpu asks each modality how it loads there (`Modality.device_decode`); one that does
not say is refused by name (egodistill/data/gpu_decode.py names no modality)."""
from __future__ import annotations

import copy

import pytest

from egodistill.config import Config, ConfigError
from egodistill.data.dataset import build_dataset
from egodistill.data.gpu_decode import DeviceLoader, view_loader
from egodistill.data.modalities import MODALITIES, Modality, register, unregister


class _NoDeviceModality(Modality):
    """A registered modality that does not declare how data.decode=gpu loads it."""

    name = "toy_no_device"
    frames = True

    def channels(self, cfg: Config) -> int:
        return 1


@pytest.fixture
def toy():
    mod = register(_NoDeviceModality())
    yield mod
    unregister(mod.name)


def _gpu(cfg: Config) -> Config:
    gpu = copy.deepcopy(cfg)
    gpu.data.decode, gpu.data.color_jitter = "gpu", 0.0
    return gpu


def test_a_modality_that_does_not_declare_the_device_path_is_refused_by_name(synth_config, toy):
    gpu = _gpu(synth_config)
    assert view_loader("toy_no_device", synth_config) is toy  # decode=cpu: loaded as ever
    with pytest.raises(ConfigError, match="data.decode=gpu: modality 'toy_no_device' does not declare"):
        view_loader("toy_no_device", gpu)
    with pytest.raises(ConfigError, match="'toy_no_device'.*set data.decode=cpu"):  # when the dataset is built
        build_dataset(gpu, "train", train=True, modalities=["rgb", "toy_no_device"])


def test_the_registered_modalities_declare_it(synth_config):
    gpu = _gpu(synth_config)
    builtin = ("rgb", "flow", "audio", "layout")
    assert [MODALITIES[n].device_decode for n in builtin] == ["jpeg", "jpeg", "device", "host"]
    assert all(isinstance(view_loader(n, gpu), DeviceLoader) == (m.device_decode != "host") for n, m in MODALITIES.items())
    assert all(view_loader(n, synth_config) is m for n, m in MODALITIES.items())
