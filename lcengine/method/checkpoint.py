# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of :class:`~lcengine.method.constraints.LatentConstraints`.

A checkpoint is a folder with two files:

* ``constraints.safetensors``: the critics' and actor's weights (``net.<network>.<param>``),
  their Adam moments (``opt.<network>.<i>.<key>``), ``sigma_bar``, the training encodings
  (``data.mu``, ``data.logvar``, ``data.attributes``) and the zero-shot critics
  (``zeroshot.<i>.<param>``);
* ``constraints.json``: ``format``, ``latent_dim``, ``data_shape``, ``attribute_names``,
  ``vocabulary``, the ``training`` / ``sampling`` / ``transform`` configurations, the training
  ``state`` (step counts and loss history), the zero-shot constraints' descriptions, and the
  SHA-256 of the tensor file.

The tensor file is written first and the JSON last, each atomically: an interrupted save leaves
the previous checkpoint, or a pair whose checksum does not match, which the loader rejects.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from .config import SamplingConfig, TrainingConfig
from .critics import AttributeCritic
from .io import (
    atomic_write_json,
    check_tensors_finite,
    parse_tensors,
    read_json_file,
    save_tensors_atomic,
)
from .latent_model import LatentModel
from .requests import RequestVocabulary
from .training import ConstraintTrainer, TrainingData
from .zeroshot import ZeroShotConstraint

if TYPE_CHECKING:  # the facade imports this module; annotations only
    from .constraints import LatentConstraints

CONFIG_FILE = "constraints.json"
WEIGHTS_FILE = "constraints.safetensors"
FORMAT = "lcengine.LatentConstraints/1"
_WHAT = "LatentConstraints.load"


def save_constraints(lc: "LatentConstraints", path: Union[str, Path]) -> Path:
    """Writes ``lc``'s checkpoint into the folder ``path`` (created if needed).

    Returns:
        The folder.
    """
    t, data = lc.trainer, lc.data
    assert t is not None and data is not None and lc.sigma_bar is not None
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ValueError(f"path {d} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    tensors = dict(t.state_tensors())
    tensors["sigma_bar"] = lc.sigma_bar
    tensors["data.mu"] = data.mu
    tensors["data.logvar"] = data.logvar
    tensors["data.attributes"] = data.attributes
    for i, c in enumerate(lc.zero_shot):
        for k, v in c.critic.state_dict().items():
            tensors[f"zeroshot.{i}.{k}"] = v
    blob = save_tensors_atomic(d / WEIGHTS_FILE, tensors, metadata={"format": FORMAT})
    cfg = {
        "format": FORMAT,
        "latent_dim": lc.latent_dim,
        "data_shape": list(lc.model.data_shape),
        "attribute_names": list(lc.base_attribute_names),
        "vocabulary": lc.vocabulary.to_dict(),
        "training": lc.training.to_dict(),
        "sampling": lc.sampling.to_dict(),
        "transform": lc.transform_config.to_dict(),
        "state": t.state_json(),
        "zero_shot": [c.info() for c in lc.zero_shot],
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write_json(d / CONFIG_FILE, cfg)
    return d


def _zero_shot_constraints(
    cfg: dict, tensors: dict[str, torch.Tensor], cfg_path: Path, w_path: Path
) -> list[ZeroShotConstraint]:
    out = []
    for i, info in enumerate(cfg.get("zero_shot", [])):
        try:
            critic = AttributeCritic(**info["critic"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{_WHAT}: bad zero-shot entry {i} in {cfg_path}: {exc}") from exc
        prefix = f"zeroshot.{i}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = critic.state_dict()
        if set(sd) != set(expected) or any(sd[k].shape != expected[k].shape for k in sd):
            raise ValueError(
                f"{_WHAT}: {w_path} zero-shot critic {info.get('name')!r} does not match its config"
            )
        critic.load_state_dict(sd)
        critic.eval()
        out.append(
            ZeroShotConstraint(
                name=str(info["name"]),
                critic=critic,
                positive_rate=float(info.get("positive_rate", float("nan"))),
                heldout_accuracy=float(info.get("heldout_accuracy", float("nan"))),
                num_samples=int(info.get("num_samples", 0)),
                history=info.get("history", {"step": [], "loss": []}),
            )
        )
    return out


def load_constraints(cls: type, path: Union[str, Path], model: LatentModel) -> "LatentConstraints":
    """Loads a checkpoint written by :func:`save_constraints` for ``model``.

    Args:
        cls: the class to build (:class:`~lcengine.method.constraints.LatentConstraints` or a
            subclass).
        path: the checkpoint folder.
        model: the model the checkpoint was trained for.

    Raises:
        ValueError: missing/corrupted files, a checksum mismatch between the two files, a
            model whose latent dimension or data shape differs from the checkpoint's, or
            tensors that do not fit the configured networks (messages name the file).
    """
    d = Path(path)
    cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
    cfg = read_json_file(cfg_path, _WHAT)
    if cfg.get("format") != FORMAT:
        raise ValueError(
            f"{_WHAT}: {cfg_path} is not a latent-constraints checkpoint (format "
            f"{cfg.get('format')!r}, expected {FORMAT!r})"
        )
    if not w_path.is_file():
        raise ValueError(f"{_WHAT}: missing file {w_path}")
    blob = w_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != cfg.get("weights_sha256"):
        raise ValueError(
            f"{_WHAT}: {w_path} does not match {cfg_path} (checksum mismatch: "
            "corrupted, or from another save)"
        )
    tensors = parse_tensors(blob, w_path, _WHAT)
    if int(cfg.get("latent_dim", -1)) != model.latent_dim:
        raise ValueError(
            f"{_WHAT}: {cfg_path} was trained for latent_dim "
            f"{cfg.get('latent_dim')}, the model has {model.latent_dim}"
        )
    if list(cfg.get("data_shape", [])) != list(model.data_shape):
        raise ValueError(
            f"{_WHAT}: {cfg_path} was trained for data shape "
            f"{cfg.get('data_shape')}, the model has {list(model.data_shape)}"
        )
    try:
        lc = cls(
            model,
            cfg["attribute_names"],
            vocabulary=RequestVocabulary.from_dict(cfg.get("vocabulary", {})),
            training=TrainingConfig.from_dict(cfg["training"]),
            sampling=SamplingConfig.from_dict(cfg["sampling"]),
            transform=SamplingConfig.from_dict(cfg["transform"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{_WHAT}: bad config in {cfg_path}: {exc}") from exc
    missing = [
        k for k in ("sigma_bar", "data.mu", "data.logvar", "data.attributes") if k not in tensors
    ]
    if missing:
        raise ValueError(f"{_WHAT}: {w_path} lacks tensors {missing}")
    check_tensors_finite(tensors, w_path, _WHAT)
    data = TrainingData(tensors["data.mu"], tensors["data.logvar"], tensors["data.attributes"])
    a = len(lc.base_attribute_names)
    if data.mu.shape[1] != model.latent_dim or data.attributes.shape[1] != a:
        raise ValueError(f"{_WHAT}: {w_path} training encodings do not match the configuration")
    sigma_bar = tensors["sigma_bar"].to(torch.float32)  # [D]
    trainer = ConstraintTrainer(model.latent_dim, a, sigma_bar, lc.training)
    trainer.load_state_tensors(tensors, str(w_path))
    trainer.load_state_json(cfg.get("state", {}), str(cfg_path))
    for module in trainer.modules().values():
        module.eval()
    lc._restore(data, sigma_bar, trainer)
    lc.zero_shot.extend(_zero_shot_constraints(cfg, tensors, cfg_path, w_path))
    return lc


__all__ = ["CONFIG_FILE", "FORMAT", "WEIGHTS_FILE", "load_constraints", "save_constraints"]
