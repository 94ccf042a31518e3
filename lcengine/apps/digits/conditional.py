# SPDX-License-Identifier: Apache-2.0
"""The conditional models the method is compared against: what a user would retrain instead.

:data:`CONDITIONAL_METHODS` names them as they appear in the demo's report and ``samples.npz``:

- ``cvae``: a conditional VAE (:mod:`~lcengine.apps.digits.cvae`), encoder and decoder fed the
  attribute vector;
- ``cgan``: a conditional GAN whose generator concatenates a label embedding to its noise
  (:mod:`~lcengine.apps.digits.cgan`);
- ``latent_gmm``: one Gaussian per attribute vector in the unconditional VAE's latent space
  (:mod:`~lcengine.apps.digits.latent_gmm`; no retraining, fitted on the demo's VAE);
- ``vae_head``: a VAE trained with an attribute head on its latent, generating from the best of
  64 prior samples under the head (:mod:`~lcengine.apps.digits.vae_head`).

Each has ``generate(attributes [N, 15], seed) -> images [N, 28, 28]``. :data:`KINDS` holds how
each is trained, cached and described; :func:`default_settings` gives the demo presets'
settings (the modules' ``FULL`` and ``FAST``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

from lcengine.validation import (
    MAX_STEPS,
    check_int,
    check_positive_float,
    check_width,
    check_widths,
)

from . import cgan, cvae, latent_gmm, vae_head

CONDITIONAL_METHODS = ("cvae", "cgan", "latent_gmm", "vae_head")


@dataclass(frozen=True)
class ConditionalKind:
    """One conditional model of the comparison.

    Attributes:
        name: its method name (a member of :data:`CONDITIONAL_METHODS`).
        label: its row label in the report.
        train: ``train(data, vae, seed, progress, **settings) -> model``.
        files: ``(has_checkpoint, load, save)`` for caching trained models; None: fitted every
            run (fast, and bound to the run's VAE).
        retrains: it trains a generative model of its own (False: it reuses the VAE).
        full, fast: the demo presets' settings.
        settings_of: the function whose keyword arguments the settings are.
    """

    name: str
    label: str
    train: Callable[..., Any]
    files: Optional[tuple[Callable, Callable, Callable]]
    retrains: bool
    full: dict
    fast: dict
    settings_of: Callable[..., Any]


KINDS: dict[str, ConditionalKind] = {
    "cvae": ConditionalKind(
        "cvae",
        "conditional VAE (retrained with labels)",
        lambda ds, vae, seed, progress, **kw: cvae.train_cvae(
            ds.train_images, ds.train_attributes, seed=seed, progress=progress, **kw
        ),
        (cvae.has_cvae_checkpoint, cvae.load_cvae, cvae.save_cvae),
        True,
        dict(cvae.FULL),
        dict(cvae.FAST),
        cvae.train_cvae,
    ),
    "cgan": ConditionalKind(
        "cgan",
        "conditional GAN (label embedding + noise)",
        lambda ds, vae, seed, progress, **kw: cgan.train_cgan(
            ds.train_images, ds.train_attributes, seed=seed, progress=progress, **kw
        ),
        (cgan.has_cgan_checkpoint, cgan.load_cgan, cgan.save_cgan),
        True,
        dict(cgan.FULL),
        dict(cgan.FAST),
        cgan.train_cgan,
    ),
    "latent_gmm": ConditionalKind(
        "latent_gmm",
        "Gaussian per attribute vector in the VAE's latent space",
        lambda ds, vae, seed, progress, **kw: latent_gmm.fit_latent_gmm(
            vae, ds.train_images, ds.train_attributes, seed=seed, progress=progress, **kw
        ),
        None,
        False,
        dict(latent_gmm.FULL),
        dict(latent_gmm.FAST),
        latent_gmm.fit_latent_gmm,
    ),
    "vae_head": ConditionalKind(
        "vae_head",
        "VAE with an attribute head (retrained with labels)",
        lambda ds, vae, seed, progress, **kw: vae_head.train_vae_head(
            ds.train_images, ds.train_attributes, seed=seed, progress=progress, **kw
        ),
        (vae_head.has_vae_head_checkpoint, vae_head.load_vae_head, vae_head.save_vae_head),
        True,
        dict(vae_head.FULL),
        dict(vae_head.FAST),
        vae_head.train_vae_head,
    ),
}


def default_settings(fast: bool) -> dict[str, dict]:
    """Settings of every conditional model for the fast or the full demo preset."""
    return {name: dict(k.fast if fast else k.full) for name, k in KINDS.items()}


_WIDTH_KEYS = ("latent_dim", "channels", "embed_dim", "candidates")
_WIDTHS_KEYS = ("hidden", "head_hidden")
_STEP_KEYS = ("epochs",)
_ROW_KEYS = ("batch_size",)
_FLOAT_KEYS = ("lr", "eps", "head_weight", "decoder_scale")


def check_settings(name: str, value: Any) -> dict[str, dict]:
    """``{method: settings}`` read from a configuration: known methods, keyword arguments their
    training function takes, widths in range, positive rates; errors name ``name`` and the key.
    """
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(KINDS))
    if unknown:
        raise ValueError(f"{name}: unknown conditional models {unknown}; known {sorted(KINDS)}")
    out = {}
    for method, settings in value.items():
        where = f"{name}.{method}"
        if not isinstance(settings, dict):
            raise TypeError(f"{where} must be a JSON object, got {type(settings).__name__}")
        params = inspect.signature(KINDS[method].settings_of).parameters
        allowed = {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        allowed -= {"seed", "progress"}
        bad = sorted(set(settings) - allowed)
        if bad:
            raise ValueError(f"{where}: unknown keys {bad}; allowed {sorted(allowed)}")
        checked = {}
        for key, v in settings.items():
            k = f"{where}.{key}"
            if key in _WIDTH_KEYS:
                checked[key] = check_width(k, v)
            elif key in _WIDTHS_KEYS:
                checked[key] = check_widths(k, v)
            elif key in _STEP_KEYS:
                checked[key] = check_int(k, v, minimum=1, maximum=MAX_STEPS)
            elif key in _ROW_KEYS:
                checked[key] = check_int(k, v, minimum=1, maximum=1 << 20)
            elif key in _FLOAT_KEYS:
                checked[key] = check_positive_float(k, v)
            elif isinstance(v, bool):
                checked[key] = v
            else:
                raise TypeError(f"{k} must be a boolean, got {type(v).__name__} {v!r}")
        out[method] = checked
    return out


__all__ = ["CONDITIONAL_METHODS", "KINDS", "ConditionalKind", "check_settings", "default_settings"]
