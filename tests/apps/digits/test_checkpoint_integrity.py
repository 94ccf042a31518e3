# SPDX-License-Identifier: Apache-2.0
"""The digits' VAE and classifier checkpoints: checksummed weights, records checked key by key
(widths bounded before any network is allocated), the previous record as a fallback."""

import json
import os

import pytest
import torch

from lcengine.apps.digits import classifier as classifier_module
from lcengine.apps.digits import vae as vae_module
from lcengine.apps.digits.classifier import (
    CLASSIFIER_CONFIG_FILE,
    PixelClassifier,
    classifier_parameter_count,
    load_classifier,
    save_classifier,
)
from lcengine.apps.digits.vae import (
    VAE_CONFIG_FILE,
    VAE_WEIGHTS_FILE,
    MnistVAE,
    load_vae,
    save_vae,
    vae_parameter_count,
)
from lcengine.method import store


def _small_vae(seed: int = 0) -> MnistVAE:
    torch.manual_seed(seed)
    return MnistVAE(latent_dim=4, hidden=(16,))


def _small_classifier(seed: int = 0) -> PixelClassifier:
    torch.manual_seed(seed)
    return PixelClassifier(channels=(2, 3), feature_dim=8)


def _record(folder, name):
    return json.loads((folder / name).read_text())


def _tamper(folder, name, key, value):
    """Sets the dotted ``key`` of a record (``None`` deletes it)."""
    rec = _record(folder, name)
    *parents, last = key.split(".")
    target = rec
    for part in parents:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    (folder / name).write_text(json.dumps(rec))


def _refuse_allocation(monkeypatch, module, cls_name):
    """Makes building the network fail loudly: the record must be refused before."""

    def boom(*args, **kwargs):
        raise AssertionError("a network was allocated from a tampered record")

    monkeypatch.setattr(module, cls_name, boom)


VAE_TAMPERED = [
    ("config.latent_dim", "4", "config.latent_dim"),
    ("config.latent_dim", 0, "config.latent_dim"),
    ("config.latent_dim", True, "config.latent_dim"),
    ("config.latent_dim", 10**9, "config.latent_dim"),
    ("config.hidden", [10**9], "config.hidden[0]"),
    ("config.hidden", [65537], "config.hidden[0]"),
    ("config.hidden", [16, -1], "config.hidden[1]"),
    ("config.hidden", [16.0], "config.hidden[0]"),
    ("config.hidden", [], "config.hidden"),
    ("config.hidden", [8] * 65, "config.hidden"),
    ("config.hidden", "16", "config.hidden"),
    ("config.hidden", None, "config.hidden"),
    ("config.decoder_scale", -0.1, "config.decoder_scale"),
    ("config.decoder_scale", "0.1", "config.decoder_scale"),
    ("config", [4], "config"),
    ("format", "something else", "format"),
    ("history", {"epoch": 1}, "history"),
    ("weights_sha256", "zz", "weights_sha256"),
    ("weights_sha256", None, "weights_sha256"),
    ("weights_file", "../vae.0123456789abcdef.safetensors", "weights_file"),
    ("weights_file", 3, "weights_file"),
]


@pytest.mark.parametrize(("key", "value", "named"), VAE_TAMPERED)
def test_tampered_vae_record_names_file_and_key(tmp_path, monkeypatch, key, value, named):
    save_vae(_small_vae(), tmp_path)
    _tamper(tmp_path, VAE_CONFIG_FILE, key, value)
    _refuse_allocation(monkeypatch, vae_module, "MnistVAE")
    with pytest.raises(ValueError) as e:
        load_vae(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / VAE_CONFIG_FILE) in msg and f"'{named}'" in msg, msg


CLASSIFIER_TAMPERED = [
    ("config.channels", [2], "config.channels"),
    ("config.channels", [2, 10**9], "config.channels[1]"),
    ("config.channels", [0, 3], "config.channels[0]"),
    ("config.feature_dim", 10**9, "config.feature_dim"),
    ("config.feature_dim", "8", "config.feature_dim"),
    ("config.feature_dim", None, "config.feature_dim"),
    ("config.depth", 3, "config"),
    ("format", None, "format"),
    ("history", "none", "history"),
    ("weights_sha256", "0" * 63, "weights_sha256"),
]


@pytest.mark.parametrize(("key", "value", "named"), CLASSIFIER_TAMPERED)
def test_tampered_classifier_record_names_file_and_key(tmp_path, monkeypatch, key, value, named):
    save_classifier(_small_classifier(), tmp_path)
    _tamper(tmp_path, CLASSIFIER_CONFIG_FILE, key, value)
    _refuse_allocation(monkeypatch, classifier_module, "PixelClassifier")
    with pytest.raises(ValueError) as e:
        load_classifier(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / CLASSIFIER_CONFIG_FILE) in msg and f"'{named}'" in msg, msg


def test_vae_weights_checksum_mismatch_is_refused(tmp_path):
    save_vae(_small_vae(), tmp_path)
    w = tmp_path / _record(tmp_path, VAE_CONFIG_FILE)["weights_file"]
    blob = bytearray(w.read_bytes())
    blob[-5] ^= 0x01  # one bit of one weight: still a well-formed safetensors file
    w.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        load_vae(tmp_path)
    assert str(w) in str(e.value) and str(tmp_path / VAE_CONFIG_FILE) in str(e.value)


def test_classifier_weights_checksum_mismatch_is_refused(tmp_path):
    save_classifier(_small_classifier(), tmp_path)
    w = tmp_path / _record(tmp_path, CLASSIFIER_CONFIG_FILE)["weights_file"]
    blob = bytearray(w.read_bytes())
    blob[-5] ^= 0x01
    w.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        load_classifier(tmp_path)
    assert str(w) in str(e.value)


def test_vae_record_of_another_architecture_is_refused_before_allocation(tmp_path, monkeypatch):
    # a consistent, checksummed commit whose record and header both say hidden=(4096,) for
    # weights of hidden=(16,): only the parameter count tells, before anything is allocated
    cfg = {**_small_vae().config(), "hidden": [4096]}
    store.commit_checkpoint(
        tmp_path,
        "vae",
        _small_vae().state_dict(),
        {"format": "lcengine.MnistVAE/1", "config": cfg, "history": []},
        metadata={"format": "lcengine.MnistVAE/1", "config": json.dumps(cfg, sort_keys=True)},
    )
    _refuse_allocation(monkeypatch, vae_module, "MnistVAE")
    with pytest.raises(ValueError, match="does not match the configuration") as e:
        load_vae(tmp_path)
    assert f"has {vae_parameter_count(4, (4096,))}" in str(e.value)


def test_parameter_counts_match_the_networks():
    vae = MnistVAE(latent_dim=5, hidden=(7, 3))
    assert vae_parameter_count(5, (7, 3)) == sum(p.numel() for p in vae.parameters())
    clf = PixelClassifier(channels=(2, 3), feature_dim=8)
    assert classifier_parameter_count((2, 3), 8) == sum(p.numel() for p in clf.parameters())


def test_vae_loader_falls_back_to_previous_when_current_is_corrupted(tmp_path):
    first, second = _small_vae(0), _small_vae(1)
    save_vae(first, tmp_path)
    save_vae(second, tmp_path)
    w = tmp_path / _record(tmp_path, VAE_CONFIG_FILE)["weights_file"]
    w.write_bytes(w.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="previous") as rec:
        loaded = load_vae(tmp_path)
    assert str(w) in str(rec[0].message) and "checksum mismatch" in str(rec[0].message)
    for a, b in zip(loaded.parameters(), first.parameters(), strict=True):
        assert torch.equal(a, b)


def test_classifier_loader_falls_back_to_previous_when_current_record_is_tampered(tmp_path):
    first, second = _small_classifier(0), _small_classifier(1)
    save_classifier(first, tmp_path)
    save_classifier(second, tmp_path)
    _tamper(tmp_path, CLASSIFIER_CONFIG_FILE, "config.feature_dim", 10**9)
    with pytest.warns(RuntimeWarning, match="config.feature_dim"):
        loaded = load_classifier(tmp_path)
    for a, b in zip(loaded.parameters(), first.parameters(), strict=True):
        assert torch.equal(a, b)


def test_old_layout_vae_folder_still_loads(tmp_path):
    """A folder written before weights were content-named: ``vae.json`` without
    ``weights_file``/``weights_sha256`` and ``vae.safetensors``."""
    vae = _small_vae()
    save_vae(vae, tmp_path)
    rec = _record(tmp_path, VAE_CONFIG_FILE)
    os.replace(tmp_path / rec.pop("weights_file"), tmp_path / VAE_WEIGHTS_FILE)
    del rec["weights_sha256"]
    (tmp_path / VAE_CONFIG_FILE).write_text(json.dumps(rec))
    loaded = load_vae(tmp_path)
    for a, b in zip(loaded.parameters(), vae.parameters(), strict=True):
        assert torch.equal(a, b)
