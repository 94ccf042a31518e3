# SPDX-License-Identifier: Apache-2.0
"""The digits as an application of the method: run folders, cached models, the CLI's hooks.

A digits run folder is a method run folder (:mod:`lcengine.method.run`) whose ``run.json``
names :data:`APPLICATION` and stores a :class:`~lcengine.apps.digits.config.DemoConfig`; next to
``constraints/`` it holds ``vae/`` (the MLP VAE, :mod:`~lcengine.apps.digits.vae`) and
``classifier/`` (the evaluation classifier, :mod:`~lcengine.apps.digits.classifier`). A run
whose configuration has a ``gan`` (the full and fast presets) also holds the decoder-only model:
``gan/`` (a DCGAN-style generator, :mod:`~lcengine.apps.digits.gan`) and ``gan_constraints/``
(its constraints, fitted on prior samples labelled by the pixel classifier and the shape
measurements). The run's own constraints (``constraints/``, what ``lcengine sample`` and
``transform`` use) are the VAE's.

The "pretrained" VAE, classifier and generator are trained once and cached (``$LCENGINE_CACHE`` or
``~/.cache/lcengine``), keyed by their settings, the seed and the split.

:func:`prepare_run` holds the run folder's writer lock (:func:`lcengine.method.store.writer_lock`)
while it writes the folder, and stops early, with the constraints saved, when its
``stop_requested`` callable returns True.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from lcengine.method.checkpoint import has_constraints_checkpoint
from lcengine.method.config import TrainingConfig
from lcengine.method.data import DeviceLike, resolve_device
from lcengine.method.latent_model import LatentModel
from lcengine.method.run import CONSTRAINTS_DIR, RUN_FILE, Run, read_run_file, write_run_file
from lcengine.method.store import writer_lock

from .classifier import (
    PixelClassifier,
    has_classifier_checkpoint,
    load_classifier,
    save_classifier,
    train_pixel_classifier,
)
from .commands import APPLICATION_PATH
from .conditional import KINDS
from .config import DemoConfig, config_from_dict, demo_config
from .data import ATTRIBUTES, MnistAttributes, load_mnist
from .gan import (
    MnistGenerator,
    digits_label_fn,
    gan_latent_model,
    has_gan_checkpoint,
    load_gan,
    save_gan,
    train_gan,
)
from .rules import DIGIT_RULES
from .vae import MnistVAE, has_vae_checkpoint, load_vae, save_vae, train_vae

if TYPE_CHECKING:  # the inference path (load_decoder) imports no training code
    from lcengine.method.constraints import LatentConstraints
    from lcengine.method.zeroshot import Rule

_CACHE_VERSION = 1
GAN_DIR = "gan"  # the generator's checkpoint in a run folder
GAN_CONSTRAINTS_DIR = "gan_constraints"  # its constraints


@dataclass
class DigitsContext:
    """What a digits run keeps besides the fitted constraints (``Run.context``).

    Attributes:
        config: the run's settings.
        data: the train/held-out split with attributes and shape thresholds.
        vae: the model the constraints were learned for.
        classifier: the evaluation classifier (digit identity, FCD features).
        gan: the decoder-only model (None: the configuration has no ``gan``, or it is not
            fitted yet).
        gan_constraints: its constraints (None likewise).
    """

    config: DemoConfig
    data: MnistAttributes
    vae: MnistVAE
    classifier: PixelClassifier
    gan: Optional[MnistGenerator] = None
    gan_constraints: Optional[LatentConstraints] = None


# --------------------------------------------------------------------------------------------
# Cached "pretrained" models
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$LCENGINE_CACHE``, else ``~/.cache/lcengine``."""
    env = os.environ.get("LCENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lcengine"


def _cache_key(kind: str, cfg: DemoConfig, params: dict) -> str:
    blob = json.dumps(
        {
            "v": _CACHE_VERSION,
            "kind": kind,
            "seed": cfg.seed,
            "heldout_fraction": cfg.heldout_fraction,
            "params": params,
        },
        sort_keys=True,
        default=list,
    ).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _obtain(
    kind: str,
    what: str,
    cfg: DemoConfig,
    params: dict,
    cache: Optional[Path],
    files: tuple[Callable, Callable, Callable],
    train: Callable[[], Any],
    log: Callable[[str], None],
) -> tuple[Any, bool]:
    """A model from the cache when there (``kind`` and ``params`` key it), else ``train()``-ed
    and cached. ``files`` = (has_checkpoint, load, save). -> (model, from the cache)"""
    has, load, save = files
    folder = None if cache is None else cache / _cache_key(kind, cfg, params)
    if folder is not None and has(folder):
        try:
            return load(folder), True
        except ValueError as exc:
            log(f"cached {what} unusable ({exc}); training a new one")
    log(f"training the {what} ({params.get('epochs', 'default')} epochs)")
    model = train()
    if folder is not None:
        save(model, folder)
    return model, False


def obtain_vae(
    cfg: DemoConfig,
    ds: MnistAttributes,
    cache: Optional[Path],
    *,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[MnistVAE, bool]:
    """The demo's VAE: from the cache if there, else trained (and cached). -> (vae, cached)"""
    params = dict(cfg.vae)
    return _obtain(
        "mnist_vae",
        "VAE",
        cfg,
        params,
        cache,
        (has_vae_checkpoint, load_vae, save_vae),
        lambda: train_vae(ds.train_images, seed=cfg.seed, progress=progress, **params),
        log,
    )


def obtain_classifier(
    cfg: DemoConfig,
    ds: MnistAttributes,
    cache: Optional[Path],
    *,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[PixelClassifier, bool]:
    """The evaluation classifier (real training images only), cached like the VAE."""
    params = dict(cfg.classifier)
    return _obtain(
        "pixel_classifier",
        "evaluation classifier",
        cfg,
        params,
        cache,
        (has_classifier_checkpoint, load_classifier, save_classifier),
        lambda: train_pixel_classifier(
            ds.train_images, ds.train_digits, seed=cfg.seed, progress=progress, **params
        ),
        log,
    )


def obtain_gan(
    cfg: DemoConfig,
    ds: MnistAttributes,
    cache: Optional[Path],
    *,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[MnistGenerator, bool]:
    """The decoder-only model (real training images only, no labels), cached like the VAE."""
    params = dict(cfg.gan)
    return _obtain(
        "mnist_gan",
        "GAN generator",
        cfg,
        params,
        cache,
        (has_gan_checkpoint, load_gan, save_gan),
        lambda: train_gan(ds.train_images, seed=cfg.seed, progress=progress, **params),
        log,
    )


@dataclass
class ConditionalModel:
    """A trained conditional model of the comparison (:mod:`.conditional`).

    Attributes:
        model: anything with ``generate(attributes [N, 15], seed) -> images [N, 28, 28]``.
        train_seconds: its training (or fitting) time on this machine: measured now, or the sum
            of the epochs' seconds recorded when it was trained and cached.
        cached: it came from the cache.
    """

    model: Any
    train_seconds: Optional[float]
    cached: bool


def recorded_seconds(model: Any) -> Optional[float]:
    """The training seconds a model's ``history`` records (the sum over its epochs), if any."""
    history = getattr(model, "history", None) or []
    secs = [h.get("seconds") for h in history if isinstance(h, dict)]
    return float(sum(secs)) if secs and all(isinstance(x, (int, float)) for x in secs) else None


def obtain_conditional_models(
    cfg: DemoConfig,
    ds: MnistAttributes,
    vae: MnistVAE,
    cache: Optional[Path],
    *,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, ConditionalModel]:
    """The configuration's conditional models (``cfg.conditional``), trained on the training
    split or taken from the cache (``latent_gmm`` is fitted on ``vae`` every time)."""
    out = {}
    for name, settings in cfg.conditional.items():
        kind = KINDS[name]
        t0 = time.perf_counter()

        def train(kind=kind, settings=settings):
            return kind.train(ds, vae, cfg.seed, progress, **settings)

        if kind.files is None:
            log(f"fitting the conditional model {name}")
            model, cached = train(), False
        else:
            model, cached = _obtain(
                name, f"conditional model {name}", cfg, dict(settings), cache, kind.files,
                train, log,
            )  # fmt: skip
        seconds = recorded_seconds(model) if cached else time.perf_counter() - t0
        out[name] = ConditionalModel(model, seconds, cached)
    return out


# --------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------


def _same_config(folder: Path, cfg: DemoConfig) -> bool:
    """``folder`` already holds a digits run of exactly these settings (so it can resume)."""
    if not (folder / RUN_FILE).is_file():
        return False
    try:
        path, config = read_run_file(folder)
        return path == APPLICATION_PATH and config_from_dict(config).to_dict() == cfg.to_dict()
    except ValueError:
        return False


def prepare_run(
    folder: Union[str, Path],
    cfg: DemoConfig,
    *,
    cache: Optional[Path],
    progress: bool = True,
    log: Callable[[str], None] = print,
    timings: Optional[dict] = None,
    checkpoint_every: int = 1000,
    stop_requested: Optional[Callable[[], bool]] = None,
    device: DeviceLike = "cpu",
) -> Run:
    """Creates (or resumes) a run folder: data, VAE, classifier, fitted constraints, zero-shot.

    A folder holding a checkpoint of the *same* configuration is resumed: training continues
    from the saved step counts instead of starting over. The folder's writer lock is held
    throughout (a second writer gets a RuntimeError).

    Args:
        folder: the run folder (created if needed).
        cfg: the settings.
        cache: where the VAE and classifier are cached (None: always train them).
        progress: tqdm bars.
        log: stage messages.
        timings: filled with the seconds of each stage (and whether models came from the cache).
        checkpoint_every: save the constraints every this many realism updates (0: at the end).
        stop_requested: polled between training steps; when it returns True the constraints
            are saved at that step and the run is returned as it is (no zero-shot constraint
            yet); calling this again resumes it.
        device: where the critics, the actor and the zero-shot critic train (the VAE and the
            classifier stay on the CPU); see :class:`LatentConstraints`.
    """
    folder = Path(folder)
    dev = resolve_device(device)
    with writer_lock(folder, "run folder"):
        return _prepare_run_locked(
            folder, cfg, cache, progress, log, timings, checkpoint_every, stop_requested, dev
        )


def _prepare_run_locked(
    folder: Path,
    cfg: DemoConfig,
    cache: Optional[Path],
    progress: bool,
    log: Callable[[str], None],
    timings: Optional[dict],
    checkpoint_every: int,
    stop_requested: Optional[Callable[[], bool]],
    device: torch.device,
) -> Run:
    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    ds = load_mnist(cfg.seed, cfg.heldout_fraction)
    timings["data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vae, vae_cached = obtain_vae(cfg, ds, cache, progress=progress, log=log)
    save_vae(vae, folder / "vae")
    timings["vae"] = time.perf_counter() - t0
    timings["vae_cached"] = vae_cached

    t0 = time.perf_counter()
    clf, clf_cached = obtain_classifier(cfg, ds, cache, progress=progress, log=log)
    save_classifier(clf, folder / "classifier")
    timings["classifier"] = time.perf_counter() - t0
    timings["classifier_cached"] = clf_cached

    from lcengine.method.constraints import LatentConstraints

    model = LatentModel.from_module(vae)
    lc = None
    if _same_config(folder, cfg) and (folder / CONSTRAINTS_DIR).is_dir():
        try:
            lc = LatentConstraints.load(folder / CONSTRAINTS_DIR, model, device=device)
            log(
                f"resuming from {folder / CONSTRAINTS_DIR} (attribute step "
                f"{lc.trainer.attribute_step}, realism step {lc.trainer.realism_step})"
            )
        except ValueError as exc:
            log(f"not resuming: {exc}")
            lc = None
    write_run_file(folder, APPLICATION_PATH, cfg.to_dict())
    t0 = time.perf_counter()
    if lc is None:
        lc = LatentConstraints(
            model,
            ATTRIBUTES,
            training=cfg.training,
            sampling=cfg.sampling,
            transform=cfg.transform,
            device=device,
        )
        log("training the critics and the actor")
        lc.fit(
            ds.train_images,
            ds.train_attributes,
            progress=progress,
            checkpoint_dir=folder / CONSTRAINTS_DIR,
            checkpoint_every=checkpoint_every,
            stop_requested=stop_requested,
        )
    else:  # checkpoints hold no training rows: the data again
        lc.fit(
            ds.train_images,
            ds.train_attributes,
            progress=progress,
            checkpoint_dir=folder / CONSTRAINTS_DIR,
            checkpoint_every=checkpoint_every,
            stop_requested=stop_requested,
        )
    timings["constraints"] = time.perf_counter() - t0
    run = Run(
        folder, APPLICATION, APPLICATION_PATH, cfg.to_dict(), lc, DigitsContext(cfg, ds, vae, clf)
    )
    if lc.fit_stopped or (stop_requested is not None and stop_requested()):
        log(f"stopped; the constraints are saved in {folder / CONSTRAINTS_DIR}")
        return run

    t0 = time.perf_counter()
    rule_name = cfg.zero_shot_rule
    if rule_name not in DIGIT_RULES:
        raise ValueError(f"zero_shot_rule must be one of {sorted(DIGIT_RULES)}, got {rule_name!r}")
    if rule_name in [c.name for c in lc.zero_shot]:
        lc.attach_rule(rule_name, DIGIT_RULES[rule_name])
    else:
        log(f"learning the zero-shot constraint {rule_name!r} from decoded prior samples")
        lc.add_zero_shot_constraint(
            rule_name,
            DIGIT_RULES[rule_name],
            num_samples=cfg.zero_shot_samples,
            steps=cfg.zero_shot_steps,
            seed=cfg.seed,
            progress=progress,
        )
        lc.save(folder / CONSTRAINTS_DIR)
    timings["zero_shot"] = time.perf_counter() - t0

    if cfg.gan:
        _prepare_gan(run, folder, cache, progress, log, timings, checkpoint_every,
                     stop_requested, device)  # fmt: skip
    return run


def _prepare_gan(
    run: Run,
    folder: Path,
    cache: Optional[Path],
    progress: bool,
    log: Callable[[str], None],
    timings: dict,
    checkpoint_every: int,
    stop_requested: Optional[Callable[[], bool]],
    device: torch.device,
) -> None:
    """The decoder-only stage: the generator and its constraints, fitted on prior samples
    labelled by the pixel classifier and the shape measurements (resumed like the VAE's)."""
    ctx: DigitsContext = run.context
    cfg, ds = ctx.config, ctx.data
    t0 = time.perf_counter()
    gen, gan_cached = obtain_gan(cfg, ds, cache, progress=progress, log=log)
    save_gan(gen, folder / GAN_DIR)
    timings["gan"] = time.perf_counter() - t0
    timings["gan_cached"] = gan_cached

    t0 = time.perf_counter()
    from lcengine.method.constraints import LatentConstraints

    model = gan_latent_model(gen)
    target = folder / GAN_CONSTRAINTS_DIR
    lc = None
    if has_constraints_checkpoint(target):
        try:
            lc = LatentConstraints.load(target, model, device=device)
            log(f"resuming the generator's constraints from {target}")
        except ValueError as exc:
            log(f"not resuming the generator's constraints: {exc}")
            lc = None
        if lc is not None and lc.training.to_dict() != _decoder_only(cfg.gan_training).to_dict():
            log(f"not resuming {target}: its training configuration differs")
            lc = None
    if lc is None:
        lc = LatentConstraints(
            model,
            ATTRIBUTES,
            training=cfg.gan_training,
            sampling=cfg.sampling,
            transform=cfg.transform,
            device=device,
        )
        log(
            f"fitting the generator's constraints on {cfg.gan_label_samples} prior samples "
            "labelled by the pixel classifier"
        )
    lc.fit_decoder_only(
        cfg.gan_label_samples,
        digits_label_fn(ctx.classifier, ds.shape_thresholds),
        seed=cfg.seed,
        progress=progress,
        checkpoint_dir=target,
        checkpoint_every=checkpoint_every,
        stop_requested=stop_requested,
    )
    timings["gan_constraints"] = time.perf_counter() - t0
    ctx.gan = gen
    ctx.gan_constraints = lc if not lc.fit_stopped else None


def _decoder_only(training: TrainingConfig) -> TrainingConfig:
    """The training configuration ``fit_decoder_only`` trains with (no prior fakes)."""
    return dataclasses.replace(training, prior_fake_prob=0.0)


class DigitsApplication:
    """The digits' side of a run folder (the :class:`lcengine.method.run.Application` hooks)."""

    def default_config(
        self, *, fast: bool, seed: int, training_overrides: Mapping[str, Any]
    ) -> dict:
        """The demo preset (``fast`` or full) with the given training step totals."""
        cfg = demo_config(fast=fast, seed=seed)
        for key, value in training_overrides.items():
            if not hasattr(cfg.training, key):
                raise ValueError(f"unknown TrainingConfig field {key!r}")
            setattr(cfg.training, key, value)
        return cfg.to_dict()

    def prepare_run(
        self,
        folder: Path,
        config: Mapping[str, Any],
        *,
        cache_dir: Optional[Path],
        use_cache: bool,
        progress: bool,
        log: Callable[[str], None],
        checkpoint_every: int = 1000,
        stop_requested: Optional[Callable[[], bool]] = None,
        device: DeviceLike = "cpu",
    ) -> Run:
        """:func:`prepare_run` with the cache resolved (``cache_dir`` None: the default)."""
        cache = None
        if use_cache:
            cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return prepare_run(
            folder,
            config_from_dict(config, source=str(Path(folder) / RUN_FILE)),
            cache=cache,
            progress=progress,
            log=log,
            checkpoint_every=checkpoint_every,
            stop_requested=stop_requested,
            device=device,
        )

    def training_data(self, run: Run) -> dict:
        """The training split's images and attributes (``lcengine fit`` continuing a run)."""
        ds = run.context.data
        return {"x": ds.train_images, "attributes": ds.train_attributes}

    def load_model(
        self, folder: Path, config: Mapping[str, Any]
    ) -> tuple[LatentModel, DigitsContext]:
        """The run's VAE (wrapped) and its context: data split, VAE, classifier, and the
        generator with its constraints when the folder holds them (on the CPU)."""
        folder = Path(folder)
        cfg = config_from_dict(config, source=str(folder / RUN_FILE))
        ds = load_mnist(cfg.seed, cfg.heldout_fraction)
        vae = load_vae(folder / "vae")
        clf = load_classifier(folder / "classifier")
        ctx = DigitsContext(cfg, ds, vae, clf)
        if cfg.gan and has_gan_checkpoint(folder / GAN_DIR):
            from lcengine.method.constraints import LatentConstraints

            ctx.gan = load_gan(folder / GAN_DIR)
            if has_constraints_checkpoint(folder / GAN_CONSTRAINTS_DIR):
                ctx.gan_constraints = LatentConstraints.load(
                    folder / GAN_CONSTRAINTS_DIR, gan_latent_model(ctx.gan)
                )
        return LatentModel.from_module(vae), ctx

    def load_decoder(self, folder: Path, config: Mapping[str, Any]) -> LatentModel:
        """The run's VAE alone (on the CPU): what inference needs (no data, no classifier)."""
        return LatentModel.from_module(load_vae(Path(folder) / "vae"))

    def zero_shot_rules(self) -> Mapping[str, Rule]:
        return DIGIT_RULES

    def measure(self, run: Run, outputs: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Classifier digits, measured shapes, and rules of zero-shot attributes."""
        from .evaluation import measure_attributes

        ctx = run.context
        return measure_attributes(
            outputs, ctx.classifier, ctx.data.shape_thresholds, names, run.constraints.rules()
        )

    def example_inputs(self, run: Run, n: int) -> np.ndarray:
        """The first ``n`` held-out digits. # [n, 28, 28]"""
        return run.context.data.heldout_images[:n]

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        """Images in [0, 1]; 0..255 images are divided by 255."""
        if x.min() < 0 or x.max() > 1:
            if x.min() >= 0 and x.max() <= 255:
                return x / 255.0
            raise ValueError("--input images must be in [0, 1] (or 0..255)")
        return x

    def updated_config(self, config: Mapping[str, Any], lc: LatentConstraints) -> dict:
        """The settings with the training configuration ``lcengine fit`` continued to."""
        cfg = config_from_dict(config)
        cfg.training = lc.training
        return cfg.to_dict()


APPLICATION = DigitsApplication()


__all__ = [
    "APPLICATION",
    "APPLICATION_PATH",
    "DigitsApplication",
    "ConditionalModel",
    "GAN_CONSTRAINTS_DIR",
    "GAN_DIR",
    "DigitsContext",
    "default_cache_dir",
    "obtain_classifier",
    "obtain_conditional_models",
    "recorded_seconds",
    "obtain_gan",
    "obtain_vae",
    "prepare_run",
]
