# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of :class:`~lcengine.method.constraints.LatentConstraints`.

A checkpoint is a folder (:func:`lcengine.method.store.commit_checkpoint` with stem
``constraints``)::

    constraints.json                      the current record
    constraints.previous.json             the record committed before it
    constraints.<sha256[:16]>.safetensors the weights of each of the two records
    .constraints.lock                     held while a save runs

* the weights file holds the critics' and actor's weights (``net.<network>.<param>``), their
  Adam moments (``opt.<network>.<i>.<key>``), ``sigma_bar``, the data summary
  (``data_summary.*``: the attribute-vector baseline's sums and the training set's attribute
  combinations with their counts, :class:`~lcengine.method.data.DataSummary`) and the
  zero-shot critics (``zeroshot.<i>.<param>``); no training rows. Tensors are saved from CPU
  copies and loaded onto the requested device. Checkpoints written with the training
  encodings (``data.mu``, ``data.logvar``, ``data.attributes``) still load: the summary is
  computed from them and the encodings are dropped;
* a record holds ``format``, ``latent_dim``, ``latent_shape`` (the model's latent shape,
  ``[D]`` for flat latents; a record without it means ``[latent_dim]``), ``data_shape``,
  ``attribute_names`` (the
  columns), ``attributes`` (the :class:`~lcengine.method.attributes.AttributeSpec`), the
  ``training`` / ``sampling`` / ``transform`` configurations, the training
  ``state`` (step counts and loss history), the zero-shot constraints' descriptions, and
  ``weights_file`` / ``weights_sha256``: the name and the SHA-256 of its weights file.

A save writes the weights under their new name, then switches ``constraints.json`` with one
``os.replace``; an interrupted save leaves the previous checkpoint loadable. The loader verifies
the checksum and falls back to ``constraints.previous.json`` (with a warning) when the current
record or its weights are missing, corrupted or mismatched. A record without ``weights_file``
names ``constraints.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from lcengine.validation import check_str_list, config_errors

from .attributes import AttributeSpec
from .config import SamplingConfig, TrainingConfig
from .critics import AttributeCritic
from .data import DataSummary, DeviceLike, TrainingData, resolve_device, summarize
from .io import check_tensors_finite, record_value, record_width
from .latent_model import LatentModel
from .requests import RequestVocabulary
from .store import CheckpointFiles, LoadedCheckpoint, commit_checkpoint, load_checkpoint

if TYPE_CHECKING:  # the facade imports this module; annotations only
    from .constraints import LatentConstraints

STEM = "constraints"
CONFIG_FILE = "constraints.json"  # the current record
PREVIOUS_CONFIG_FILE = "constraints.previous.json"
WEIGHTS_FILE = "constraints.safetensors"  # the weights of a record that names no weights file
FORMAT = "lcengine.LatentConstraints/1"
_WHAT = "LatentConstraints.load"


def save_constraints(lc: "LatentConstraints", path: Union[str, Path]) -> Path:
    """Writes ``lc``'s checkpoint into the folder ``path`` (created if needed).

    Returns:
        The folder.
    """
    t, summary = lc.trainer, lc.summary
    assert t is not None and summary is not None and lc.sigma_bar is not None
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ValueError(f"path {d} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    tensors = dict(t.state_tensors())
    tensors["sigma_bar"] = lc.sigma_bar.detach().cpu()
    tensors.update(summary.tensors())
    for i, c in enumerate(lc.zero_shot):
        for k, v in c.critic.state_dict().items():
            tensors[f"zeroshot.{i}.{k}"] = v.detach().cpu()
    cfg = {
        "format": FORMAT,
        "latent_dim": lc.latent_dim,
        "latent_shape": list(lc.model.latent_shape),
        "data_shape": list(lc.model.data_shape),
        "attribute_names": list(lc.base_attribute_names),
        "attributes": lc.spec.to_dict(),
        "training": lc.training.to_dict(),
        "sampling": lc.sampling.to_dict(),
        "transform": lc.transform_config.to_dict(),
        "state": t.state_json(),
        "zero_shot": [c.info() for c in lc.zero_shot],
    }
    commit_checkpoint(
        d, STEM, tensors, cfg, metadata={"format": FORMAT}, what="LatentConstraints.save"
    )
    return d


def has_constraints_checkpoint(path: Union[str, Path]) -> bool:
    """The folder holds a checkpoint record (current or previous; loadable or not)."""
    return CheckpointFiles(Path(path), STEM).exists()


def zero_shot_critics(contents: "CheckpointContents") -> list[tuple[dict, AttributeCritic]]:
    """The record's zero-shot critics with their descriptions, weights loaded, in ``eval()``
    mode, on the CPU."""
    cfg, tensors = contents.record, contents.tensors
    cfg_path, w_path = contents.record_path, contents.weights_path
    out = []
    for i, info in enumerate(cfg.get("zero_shot", [])):
        try:
            critic = AttributeCritic.from_config(
                info["critic"], source=str(cfg_path), key=f"zero_shot[{i}].critic"
            )
        except (KeyError, TypeError) as exc:  # ValueErrors of from_config name file and key
            raise ValueError(f"{_WHAT}: bad zero-shot entry {i} in {cfg_path}: {exc!r}") from exc
        prefix = f"zeroshot.{i}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = critic.state_dict()
        if set(sd) != set(expected) or any(sd[k].shape != expected[k].shape for k in sd):
            raise ValueError(
                f"{_WHAT}: {w_path} zero-shot critic {info.get('name')!r} does not match its config"
            )
        critic.load_state_dict(sd)
        critic.eval()
        out.append((info, critic))
    return out


def _zero_shot_constraints(contents: "CheckpointContents") -> list:
    from .zeroshot import ZeroShotConstraint  # training code: only for LatentConstraints

    return [
        ZeroShotConstraint(
            name=str(info["name"]),
            critic=critic,
            positive_rate=float(info.get("positive_rate", float("nan"))),
            heldout_accuracy=float(info.get("heldout_accuracy", float("nan"))),
            num_samples=int(info.get("num_samples", 0)),
            history=info.get("history", {"step": [], "loss": []}),
        )
        for info, critic in zero_shot_critics(contents)
    ]


def _attribute_spec(cfg: dict, source: str) -> AttributeSpec:
    """The record's attribute spec; a record written before the spec (``attribute_names`` plus
    ``vocabulary``, no ``attributes``) is converted by :meth:`AttributeSpec.from_names`."""
    if "attributes" in cfg:
        spec = AttributeSpec.from_dict(cfg["attributes"], source=source)
        names = cfg.get("attribute_names")
        if names is not None and list(names) != list(spec.columns):
            raise ValueError(
                f"{source}: attribute_names {names} are not the columns of attributes "
                f"{list(spec.columns)}"
            )
        return spec
    vocabulary = RequestVocabulary.from_dict(cfg.get("vocabulary", {}), source=source)
    names = cfg["attribute_names"]
    with config_errors(source):
        names = check_str_list("attribute_names", names, allow_empty=False)
        try:
            return AttributeSpec.from_names(names, vocabulary)
        except ValueError as exc:
            raise ValueError(f"attribute_names with vocabulary: {exc}") from exc


@dataclass
class CheckpointContents:
    """A verified checkpoint record and its weights, checked against the model, before any
    network is built (what :class:`~lcengine.method.constraints.LatentConstraints` and the
    inference :class:`~lcengine.method.sampler.ConditionalSampler` are made from).

    Attributes:
        spec: the data's attributes.
        training, sampling, transform: the record's configurations.
        sigma_bar: per-dimension mean encoder scale, float32 on the CPU. # [D]
        summary: the data summary (baseline sums, attribute combinations).
        record, tensors: the record (JSON) and the weights file's tensors (CPU).
        record_path, weights_path: where they were read from.
    """

    spec: AttributeSpec
    training: TrainingConfig
    sampling: SamplingConfig
    transform: SamplingConfig
    sigma_bar: torch.Tensor
    summary: DataSummary
    record: dict
    tensors: dict[str, torch.Tensor]
    record_path: Path
    weights_path: Path

    @property
    def state(self) -> dict[str, Any]:
        return self.record.get("state", {})


def read_contents(ck: LoadedCheckpoint, model: LatentModel) -> CheckpointContents:
    """Checks a loaded record and its weights against ``model`` (format, latent and data
    shapes, configurations, finite tensors, ``sigma_bar``, the data summary).

    Raises:
        ValueError: naming the file and what does not match.
    """
    cfg, cfg_path, w_path, tensors = ck.record, ck.record_path, ck.weights_path, ck.tensors
    if cfg.get("format") != FORMAT:
        raise ValueError(
            f"{_WHAT}: {cfg_path} is not a latent-constraints checkpoint (format "
            f"{cfg.get('format')!r}, expected {FORMAT!r})"
        )
    latent_dim = record_width(
        record_value(cfg, "latent_dim", cfg_path, _WHAT), "latent_dim", cfg_path, _WHAT
    )
    if latent_dim != model.latent_dim:
        raise ValueError(
            f"{_WHAT}: {cfg_path} was trained for latent_dim "
            f"{cfg.get('latent_dim')}, the model has {model.latent_dim}"
        )
    if cfg.get("latent_shape", [latent_dim]) != list(model.latent_shape):
        raise ValueError(
            f"{_WHAT}: {cfg_path} was trained for latent shape "
            f"{cfg.get('latent_shape')}, the model has {list(model.latent_shape)}"
        )
    if cfg.get("data_shape") != list(model.data_shape):
        raise ValueError(
            f"{_WHAT}: {cfg_path} was trained for data shape "
            f"{cfg.get('data_shape')}, the model has {list(model.data_shape)}"
        )
    source = str(cfg_path)
    try:
        spec = _attribute_spec(cfg, source)
        training = TrainingConfig.from_dict(cfg["training"], source=source)
        sampling = SamplingConfig.from_dict(cfg["sampling"], source=source)
        transform = SamplingConfig.from_dict(cfg["transform"], source=source, key="transform")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{_WHAT}: bad config in {cfg_path}: {exc}") from exc
    if "sigma_bar" not in tensors:
        raise ValueError(f"{_WHAT}: {w_path} lacks tensors ['sigma_bar']")
    check_tensors_finite(tensors, w_path, _WHAT)
    sigma_bar = tensors["sigma_bar"].to(torch.float32)  # [D]
    if sigma_bar.shape != (model.latent_dim,):
        raise ValueError(f"{_WHAT}: {w_path} sigma_bar does not match the latent dimension")
    summary = _data_summary(tensors, sigma_bar, w_path)
    if summary.sum_all.shape != (model.latent_dim,) or summary.attribute_rows.shape[1] != len(
        spec.columns
    ):
        raise ValueError(f"{_WHAT}: {w_path} data summary does not match the configuration")
    return CheckpointContents(
        spec, training, sampling, transform, sigma_bar, summary, cfg, tensors, cfg_path, w_path
    )


def _build(
    cls: type, ck: LoadedCheckpoint, model: LatentModel, device: torch.device
) -> "LatentConstraints":
    """The LatentConstraints of a verified record and its weights."""
    from .training import ConstraintTrainer  # inference loaders read checkpoints without it

    c = read_contents(ck, model)
    lc = cls(
        model,
        c.spec,
        training=c.training,
        sampling=c.sampling,
        transform=c.transform,
        device=device,
    )
    a = len(lc.base_attribute_names)
    trainer = ConstraintTrainer(model.latent_dim, a, c.sigma_bar, lc.training, device=lc.device)
    trainer.load_state_tensors(c.tensors, str(c.weights_path))
    trainer.load_state_json(c.state, str(c.record_path))
    for module in trainer.modules().values():
        module.eval()
    lc._restore(c.summary, trainer)
    for zs in _zero_shot_constraints(c):
        zs.critic.to(lc.device)
        lc.zero_shot.append(zs)
    return lc


def _data_summary(
    tensors: dict[str, torch.Tensor], sigma_bar: torch.Tensor, w_path: Path
) -> DataSummary:
    """The checkpoint's data summary; computed from the training encodings of a checkpoint
    that holds them instead (which are then dropped)."""
    if any(k.startswith("data_summary.") for k in tensors):
        return DataSummary.from_tensors(sigma_bar, tensors, f"{_WHAT}: {w_path}")
    missing = [k for k in ("data.mu", "data.logvar", "data.attributes") if k not in tensors]
    if missing:
        raise ValueError(f"{_WHAT}: {w_path} lacks tensors ['data_summary.*'] (or {missing})")
    try:
        data = TrainingData(tensors["data.mu"], tensors["data.logvar"], tensors["data.attributes"])
    except ValueError as exc:
        raise ValueError(f"{_WHAT}: {w_path} training encodings: {exc}") from exc
    summary = summarize(data, progress=False)
    summary.sigma_bar = sigma_bar
    return summary


def load_constraints(
    cls: type, path: Union[str, Path], model: LatentModel, *, device: DeviceLike = "cpu"
) -> "LatentConstraints":
    """Loads a checkpoint written by :func:`save_constraints` for ``model`` onto ``device``.

    Loads ``constraints.json``; when it, or the weights it names, is missing, corrupted or
    mismatched, loads ``constraints.previous.json`` instead and warns naming the file that
    failed and why.

    Args:
        cls: the class to build (:class:`~lcengine.method.constraints.LatentConstraints` or a
            subclass).
        path: the checkpoint folder.
        model: the model the checkpoint was trained for.
        device: where the networks go (``"cpu"``, ``"cuda"``, ``"auto"``, ...; see
            :func:`lcengine.method.data.resolve_device`).

    Raises:
        ValueError: no record loads: missing/corrupted files, a checksum mismatch between a
            record and its weights, a model whose latent dimension, latent shape or data shape
            differs from the checkpoint's, or tensors that do not fit the configured networks
            (messages name the files).
    """
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{_WHAT}: {d} is not a folder")
    dev = resolve_device(device)
    return load_checkpoint(d, STEM, _WHAT, lambda ck: _build(cls, ck, model, dev))


__all__ = [
    "CONFIG_FILE",
    "CheckpointContents",
    "FORMAT",
    "PREVIOUS_CONFIG_FILE",
    "STEM",
    "WEIGHTS_FILE",
    "has_constraints_checkpoint",
    "load_constraints",
    "read_contents",
    "save_constraints",
    "zero_shot_critics",
]
