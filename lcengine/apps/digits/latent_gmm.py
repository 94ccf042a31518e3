# SPDX-License-Identifier: Apache-2.0
"""A conditional baseline without retraining: one Gaussian per attribute vector in the latent
space of the (unconditional, already trained) VAE, method name ``latent_gmm``.

:func:`fit_latent_gmm` encodes the training images with the VAE (the encoder means, or one
posterior sample each with ``use_means=False``) and groups the latents by their 15-column
attribute vector (``digit_0`` .. ``digit_9``, then the shape attributes): each distinct vector
seen in training is a *class*, and each class gets a Gaussian ``N(m_k, S_k + eps I)`` with full
covariance; together they form a Gaussian mixture whose weights are the class row counts.
:meth:`LatentGMM.generate` draws ``z`` from the requested class's Gaussian and decodes it with
the VAE's decoder mean. Pure numpy (fit) and torch (sampling); no scikit-learn.

Fallbacks:

* **small classes**: a class with fewer than ``D + 1`` rows (``D`` the latent dimension) cannot
  estimate a full covariance; it keeps its own mean and uses the *pooled within-class*
  covariance ``sum_k sum_{i in k} (z_i - m_k)(z_i - m_k)^T / (N - K)`` (``K`` classes, ``N``
  rows; the covariance of all latents about their mean when every row is its own class).
  ``LatentGMM.pooled`` marks those classes. Every covariance gets ``eps I`` added, so it is
  positive definite.
* **unseen requests**: a requested vector never seen in training uses the seen class at the
  smallest Hamming distance over the 15 columns; ties go to the class with the smallest Hamming
  distance over the digit columns (the requested digit first), then to the class with more rows,
  then to the first class in lexicographic order of the vectors (:meth:`LatentGMM.nearest`).

Noise comes from :func:`lcengine.standard_normal` keyed by the seed, row ``r`` at stream offset
``r * D``, so the samples do not depend on the batching (1,024 rows at a time).

Its checkpoint (:func:`save_latent_gmm`, :func:`load_latent_gmm`) is a folder committed by
:func:`lcengine.method.store.commit_checkpoint` with stem ``latent_gmm``: ``latent_gmm.json``
(format, ``config``, ``history``, ``vae_sha256``: a checksum of the VAE's weights,
``weights_file``, ``weights_sha256``), ``latent_gmm.previous.json`` and
``latent_gmm.<sha256[:16]>.safetensors`` holding ``classes`` int8 ``[K, 15]``, ``counts`` int64
``[K]``, ``means`` float64 ``[K, D]``, ``cholesky`` float64 ``[K, D, D]`` (lower Cholesky factors
of the regularized covariances) and ``pooled`` bool ``[K]``. The VAE is not stored: it is passed
to the loader, which refuses one of another latent dimension or with other weights than the
fitted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

import lcengine
from lcengine.method.io import check_tensors_match, record_value, record_width
from lcengine.method.latent_model import as_int
from lcengine.method.store import (
    CheckpointFiles,
    LoadedCheckpoint,
    commit_checkpoint,
    load_checkpoint,
)
from lcengine.validation import (
    MAX_ROWS,
    check_bool,
    check_int,
    check_positive_float,
)

from .data import ATTRIBUTE_NAMES, DIGIT_COLUMNS, IMAGE_SIDE, check_images

ArrayLike = Union[np.ndarray, torch.Tensor]

METHOD = "latent_gmm"
LATENT_GMM_STEM = "latent_gmm"
_GMM_FORMAT = "lcengine.LatentGMM/1"
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)  # 15
GENERATE_BATCH = 1024  # rows decoded at a time

# The demo's settings (keyword arguments of fit_latent_gmm). With the demo's VAE (D = 16) on the
# 4,000 training digits, one thread: 0.15 s (encoding included); 238 classes, 162 of them with
# fewer than 17 rows (pooled covariance); 99% of the first 500 held-out vectors were seen. Digit
# identity of 500 images generated for them, read by the pixel classifier: 93% (seed 0), 91%
# (seed 1); use_means=False gave 93% too.
FULL = {"use_means": True, "eps": 1e-3}
# The smoke tests' settings: the same (the fit is already fast).
FAST = {"use_means": True, "eps": 1e-3}


# --------------------------------------------------------------------------------------------
# Checks shared with lcengine.apps.digits.vae_head
# --------------------------------------------------------------------------------------------


def check_attributes(
    attributes: Any, name: str = "attributes", rows: Optional[int] = None
) -> np.ndarray:
    """A 0/1 attribute array ``[N, 15]`` (numpy or torch, any bool, integer or float dtype
    holding only 0 and 1) as int8 numpy.

    Args:
        attributes: the array. # [N, 15]
        name: how errors name it.
        rows: the required N (``None``: any N >= 0).

    Raises:
        TypeError: not an array of numbers.
        ValueError: another shape, another N than ``rows``, or a value other than 0 and 1.
    """
    a = attributes
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array or torch tensor of shape [N, {NUM_ATTRIBUTES}], "
            f"got {type(attributes).__name__}"
        )
    if not (
        a.dtype == np.bool_
        or np.issubdtype(a.dtype, np.integer)
        or np.issubdtype(a.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold 0/1 numbers, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != NUM_ATTRIBUTES:
        raise ValueError(
            f"{name} must have shape [N, {NUM_ATTRIBUTES}] (columns {', '.join(ATTRIBUTE_NAMES)}),"
            f" got {list(a.shape)}"
        )
    if rows is not None and a.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows (one per image), got {a.shape[0]}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return a.astype(np.int8)


def check_training_images(images: Any, name: str = "images") -> torch.Tensor:
    """Training images ``[N >= 2, 28, 28]``, finite, in [0, 1], as a float32 CPU tensor.

    Raises:
        TypeError: not an array of numbers.
        ValueError: another shape, fewer than two images, NaN/inf or values outside [0, 1].
    """
    x = check_images(images, name)  # [N, 28, 28] float64
    if x.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 images, got {x.shape[0]}")
    return torch.from_numpy(np.clip(x, 0.0, 1.0).astype(np.float32))  # [N, 28, 28]


def check_seed(seed: Any) -> int:
    """A noise seed: an int in ``[0, 2**63)`` (numpy integers accepted)."""
    return check_int("seed", as_int(seed))


def _check_vae(vae: Any) -> int:
    """The VAE's latent dimension; ``vae`` needs ``encode(x) -> (mu, logvar)``, ``decode(z)``
    and ``latent_dim``."""
    for attr in ("encode", "decode"):
        if not callable(getattr(vae, attr, None)):
            raise TypeError(
                f"vae must have encode(x) -> (mu, logvar) and decode(z), got "
                f"{type(vae).__name__} without {attr}"
            )
    d = getattr(vae, "latent_dim", None)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise TypeError(f"vae must have an int latent_dim >= 1, got {d!r}")
    return d


def module_device(module: Any) -> torch.device:
    """The device of a module's first parameter (CPU for a module without any)."""
    params = getattr(module, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def _vae_sha256(vae: Any) -> Optional[str]:
    """SHA-256 of a module's ``state_dict`` (names, dtypes, shapes, bytes), ``None`` without
    one."""
    state = getattr(vae, "state_dict", None)
    if not callable(state):
        return None
    h = hashlib.sha256()
    for k, t in sorted(state().items()):
        t = t.detach().to("cpu").contiguous().reshape(-1)  # [numel]
        h.update(f"{k}|{t.dtype}|{t.numel()}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class LatentGMM:
    """One Gaussian per seen attribute vector in a VAE's latent space (see the module
    docstring).

    Attributes:
        vae: the VAE whose decoder renders the samples.
        classes: the seen attribute vectors, sorted lexicographically. # [K, 15] int8
        counts: training rows of each class. # [K] int64
        means: class means. # [K, D] float64
        cholesky: lower Cholesky factors of the regularized class covariances. # [K, D, D]
        pooled: the class uses the pooled covariance (fewer than D + 1 rows). # [K] bool
        eps: the ridge added to every covariance.
        use_means: fitted on encoder means (else on one posterior sample per image).
        seed: the seed of the posterior samples (unused with ``use_means``).
        history: ``[{"rows", "classes", "pooled_classes", "seconds"}]``.
    """

    def __init__(
        self,
        vae: Any,
        classes: np.ndarray,
        counts: np.ndarray,
        means: np.ndarray,
        cholesky: np.ndarray,
        pooled: np.ndarray,
        *,
        eps: float,
        use_means: bool,
        seed: int = 0,
        history: Optional[list] = None,
    ) -> None:
        d = _check_vae(vae)
        self.vae = vae
        self.classes = check_attributes(classes, "classes")  # [K, 15]
        k = self.classes.shape[0]
        if k < 1:
            raise ValueError("classes must hold at least one attribute vector")
        self.counts = np.asarray(counts, dtype=np.int64).reshape(-1)  # [K]
        self.means = np.asarray(means, dtype=np.float64)  # [K, D]
        self.cholesky = np.asarray(cholesky, dtype=np.float64)  # [K, D, D]
        self.pooled = np.asarray(pooled, dtype=bool).reshape(-1)  # [K]
        for name, arr, shape in (
            ("counts", self.counts, (k,)),
            ("means", self.means, (k, d)),
            ("cholesky", self.cholesky, (k, d, d)),
            ("pooled", self.pooled, (k,)),
        ):
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {list(shape)}, got {list(arr.shape)}")
        self.eps = check_positive_float("eps", eps)
        self.use_means = check_bool("use_means", use_means)
        self.seed = check_seed(seed)
        self.history = list(history or [])

    @property
    def latent_dim(self) -> int:
        """D."""
        return int(self.means.shape[1])

    @property
    def num_classes(self) -> int:
        """K, the number of seen attribute vectors."""
        return int(self.classes.shape[0])

    def config(self) -> dict:
        """The method and its settings (JSON-able)."""
        return {
            "method": METHOD,
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "num_attributes": NUM_ATTRIBUTES,
            "eps": self.eps,
            "use_means": self.use_means,
            "seed": self.seed,
        }

    def nearest(self, attributes: ArrayLike) -> np.ndarray:
        """The class that serves each requested vector: the vector itself when seen, else the
        seen class at the smallest Hamming distance (ties: smallest distance over the digit
        columns, then more rows, then the first class).

        Args:
            attributes: requested 0/1 vectors. # [N, 15]

        Returns:
            Indices into :attr:`classes`. # [N] int64
        """
        a = check_attributes(attributes)  # [N, 15]
        if a.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        wanted, inverse = np.unique(a, axis=0, return_inverse=True)  # [U, 15], [N]
        c = self.classes.astype(np.int64)  # [K, 15]
        digits = np.asarray(DIGIT_COLUMNS)
        top = int(self.counts.max())
        chosen = np.empty(wanted.shape[0], dtype=np.int64)  # [U]
        step = max(1, (1 << 22) // (c.shape[0] * NUM_ATTRIBUTES))  # bounded [u, K, 15] blocks
        for i in range(0, wanted.shape[0], step):
            w = wanted[i : i + step].astype(np.int64)  # [u, 15]
            diff = w[:, None, :] != c[None, :, :]  # [u, K, 15]
            hamming = diff.sum(-1)  # [u, K]
            digit_hamming = diff[:, :, digits].sum(-1)  # [u, K]
            # lexicographic (hamming, digit hamming, -rows); argmin keeps the first class of a tie
            key = (hamming * (NUM_ATTRIBUTES + 1) + digit_hamming) * (top + 1) + (
                top - self.counts[None, :]
            )  # [u, K]
            chosen[i : i + step] = key.argmin(1)
        return chosen[inverse.reshape(-1)]  # [N]

    def sample_latents(self, attributes: ArrayLike, seed: int) -> torch.Tensor:
        """Latents drawn from the serving classes' Gaussians (float64 CPU).

        Args:
            attributes: requested 0/1 vectors. # [N, 15]
            seed: noise seed; row r uses the stream at offset ``r * D``.

        Returns:
            ``z``. # [N, D]
        """
        seed = check_seed(seed)
        idx = torch.from_numpy(self.nearest(attributes))  # [N]
        n, d = idx.shape[0], self.latent_dim
        means = torch.from_numpy(self.means)  # [K, D]
        chol = torch.from_numpy(self.cholesky)  # [K, D, D]
        out = [torch.zeros(0, d, dtype=torch.float64)]
        for i in range(0, n, GENERATE_BATCH):
            ib = idx[i : i + GENERATE_BATCH]  # [b]
            noise = lcengine.standard_normal((ib.shape[0], d), seed=seed, offset=i * d)  # [b, D]
            out.append(means[ib] + torch.einsum("bij,bj->bi", chol[ib], noise.double()))  # [b, D]
        return torch.cat(out)  # [N, D]

    @torch.no_grad()
    def generate(self, attributes: ArrayLike, seed: int) -> np.ndarray:
        """Images for the requested attribute vectors.

        Args:
            attributes: 0/1 vectors, columns ``ATTRIBUTE_NAMES``. # [N, 15]
            seed: noise seed (the same seed gives the same images).

        Returns:
            float32 images in [0, 1]. # [N, 28, 28]
        """
        z = self.sample_latents(attributes, seed)  # [N, D]
        if z.shape[0] == 0:
            return np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
        device = module_device(self.vae)
        out = []
        for i in range(0, z.shape[0], GENERATE_BATCH):
            zb = z[i : i + GENERATE_BATCH].to(device=device, dtype=torch.float32)  # [b, D]
            out.append(self.vae.decode(zb).float().clamp(0.0, 1.0).cpu())  # [b, 28, 28]
        return torch.cat(out).numpy()  # [N, 28, 28]


@torch.no_grad()
def encode_latents(
    vae: Any, images: torch.Tensor, *, use_means: bool, seed: int, progress: bool = False
) -> np.ndarray:
    """The VAE's latents of checked images: encoder means, or one posterior sample each
    (``lcengine.reparameterize`` keyed by ``seed``, row r at offset ``r * D``).

    Args:
        images: float32 images in [0, 1]. # [N, 28, 28]

    Returns:
        float64 latents. # [N, D]
    """
    from tqdm.auto import tqdm

    d = _check_vae(vae)
    device = module_device(vae)
    was_training = bool(getattr(vae, "training", False))
    if callable(getattr(vae, "eval", None)):
        vae.eval()
    out = []
    try:
        starts = range(0, images.shape[0], GENERATE_BATCH)
        for i in tqdm(starts, desc="encode", disable=None if progress else True):
            xb = images[i : i + GENERATE_BATCH].to(device)  # [b, 28, 28]
            mu, logvar = vae.encode(xb)  # [b, D], [b, D]
            mu, logvar = mu.float(), logvar.float()
            if tuple(mu.shape) != (xb.shape[0], d):
                raise ValueError(
                    f"vae.encode returned means of shape {list(mu.shape)}, expected "
                    f"{[xb.shape[0], d]}"
                )
            z = mu if use_means else lcengine.reparameterize(mu, logvar, seed=seed, offset=i * d)
            out.append(z.double().cpu())  # [b, D]
    finally:
        if was_training:
            vae.train()
    z = torch.cat(out).numpy()  # [N, D]
    if not np.isfinite(z).all():
        raise ValueError("vae.encode returned NaN or infinite latents")
    return z


def fit_latent_gmm(
    vae: Any,
    images: ArrayLike,
    attributes: ArrayLike,
    *,
    use_means: bool = True,
    eps: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> LatentGMM:
    """Fits one full-covariance Gaussian per seen attribute vector to the VAE's latents of the
    training images (see the module docstring for the fallbacks).

    Args:
        vae: a trained VAE (``encode(x) -> (mu, logvar)``, ``decode(z)``, ``latent_dim``), e.g.
            a :class:`~lcengine.apps.digits.vae.MnistVAE`; it is not modified.
        images: training images in [0, 1]. # [N >= 2, 28, 28]
        attributes: their 0/1 attribute vectors (``ATTRIBUTE_NAMES`` columns). # [N, 15]
        use_means: fit on the encoder means (else one posterior sample per image).
        eps: ridge added to every covariance (> 0).
        seed: seed of the posterior samples (``use_means=False``).
        progress: a tqdm bar over the encoding batches.

    Returns:
        The fitted :class:`LatentGMM`, ``history`` holding its fit time.

    Raises:
        ValueError: bad images, attributes (or a mismatch of their row counts) or settings;
            a covariance that is not positive definite even with ``eps``.
    """
    d = _check_vae(vae)
    x = check_training_images(images)  # [N, 28, 28]
    a = check_attributes(attributes, rows=x.shape[0])  # [N, 15]
    check_bool("use_means", use_means)
    eps = check_positive_float("eps", eps)
    seed = check_seed(seed)
    t0 = time.perf_counter()
    z = encode_latents(vae, x, use_means=use_means, seed=seed, progress=progress)  # [N, D]
    n = z.shape[0]
    classes, inverse, counts = np.unique(a, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)  # [N]
    k = classes.shape[0]
    means = np.zeros((k, d))  # [K, D]
    np.add.at(means, inverse, z)
    means /= counts[:, None]
    centered = z - means[inverse]  # [N, D]
    if n > k:
        pooled_cov = centered.T @ centered / (n - k)  # [D, D] within-class
    else:  # every row its own class
        c = z - z.mean(0)  # [N, D]
        pooled_cov = c.T @ c / (n - 1)  # [D, D]
    ridge = eps * np.eye(d)  # [D, D]
    cholesky = np.zeros((k, d, d))  # [K, D, D]
    pooled = counts < d + 1  # [K]
    order = np.argsort(inverse, kind="stable")  # rows grouped by class
    bounds = np.concatenate([[0], np.cumsum(counts)])  # [K + 1]
    for j in range(k):
        if pooled[j]:
            cov = pooled_cov
        else:
            cj = centered[order[bounds[j] : bounds[j + 1]]]  # [n_j, D]
            cov = cj.T @ cj / (counts[j] - 1)  # [D, D]
        cov = 0.5 * (cov + cov.T) + ridge
        try:
            cholesky[j] = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError as e:
            raise ValueError(
                f"fit_latent_gmm: the covariance of class {classes[j].tolist()} is not positive "
                f"definite with eps={eps:g}; raise eps"
            ) from e
    history = [
        {
            "rows": int(n),
            "classes": int(k),
            "pooled_classes": int(pooled.sum()),
            "seconds": time.perf_counter() - t0,
        }
    ]
    return LatentGMM(
        vae,
        classes.astype(np.int8),
        counts.astype(np.int64),
        means,
        cholesky,
        pooled,
        eps=eps,
        use_means=use_means,
        seed=seed,
        history=history,
    )


# --------------------------------------------------------------------------------------------
# Checkpoint
# --------------------------------------------------------------------------------------------


def save_latent_gmm(gmm: LatentGMM, folder: Union[str, os.PathLike]) -> Path:
    """Commits a :class:`LatentGMM` (without its VAE) into ``folder`` (see the module
    docstring). Returns the folder."""
    if not isinstance(gmm, LatentGMM):
        raise TypeError(f"gmm must be a LatentGMM, got {type(gmm).__name__}")
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ValueError(f"save_latent_gmm: {d} exists and is not a folder")
    config = gmm.config()
    commit_checkpoint(
        d,
        LATENT_GMM_STEM,
        {
            "classes": torch.from_numpy(gmm.classes),  # [K, 15] int8
            "counts": torch.from_numpy(gmm.counts),  # [K] int64
            "means": torch.from_numpy(gmm.means),  # [K, D] float64
            "cholesky": torch.from_numpy(gmm.cholesky),  # [K, D, D] float64
            "pooled": torch.from_numpy(gmm.pooled),  # [K] bool
        },
        {
            "format": _GMM_FORMAT,
            "config": config,
            "history": gmm.history,
            "vae_sha256": _vae_sha256(gmm.vae),
        },
        metadata={"format": _GMM_FORMAT, "config": json.dumps(config, sort_keys=True)},
        what="save_latent_gmm",
    )
    return d


def has_latent_gmm_checkpoint(folder: Union[str, os.PathLike]) -> bool:
    """The folder holds a mixture record (``latent_gmm.json`` or ``latent_gmm.previous.json``)."""
    return CheckpointFiles(Path(folder), LATENT_GMM_STEM).exists()


def _build_gmm(ck: LoadedCheckpoint, vae: Any) -> LatentGMM:
    what, path, w_path, tensors = "load_latent_gmm", ck.record_path, ck.weights_path, ck.tensors
    meta = ck.record
    if meta.get("format") != _GMM_FORMAT:
        raise ValueError(
            f"{what}: {path} is not an lcengine latent mixture record (key 'format' is "
            f"{meta.get('format')!r}, expected {_GMM_FORMAT!r})"
        )
    config = record_value(meta, "config", path, what)
    if not isinstance(config, dict):
        raise ValueError(f"{what}: {path} key 'config' must be an object")
    if record_value(meta, "config.method", path, what) != METHOD:
        raise ValueError(f"{what}: {path} key 'config.method' must be {METHOD!r}")
    d = record_width(
        record_value(meta, "config.latent_dim", path, what), "config.latent_dim", path, what
    )
    k = record_value(meta, "config.num_classes", path, what)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_ROWS:
        raise ValueError(
            f"{what}: {path} key 'config.num_classes' must be an integer in [1, {MAX_ROWS}], "
            f"got {k!r}"
        )
    if record_value(meta, "config.num_attributes", path, what) != NUM_ATTRIBUTES:
        raise ValueError(f"{what}: {path} key 'config.num_attributes' must be {NUM_ATTRIBUTES}")
    eps = record_value(meta, "config.eps", path, what)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
        raise ValueError(f"{what}: {path} key 'config.eps' must be a finite number, got {eps!r}")
    if eps <= 0:
        raise ValueError(f"{what}: {path} key 'config.eps' must be > 0, got {eps!r}")
    use_means = record_value(meta, "config.use_means", path, what)
    if not isinstance(use_means, bool):
        raise ValueError(f"{what}: {path} key 'config.use_means' must be true or false")
    seed = record_value(meta, "config.seed", path, what)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{what}: {path} key 'config.seed' must be an integer >= 0")
    history = meta.get("history", [])
    if not isinstance(history, list):
        raise ValueError(f"{what}: {path} key 'history' must be a list")
    if d != vae.latent_dim:
        raise ValueError(
            f"{what}: {path} was fitted in a {d}-dimensional latent space, but vae has "
            f"latent_dim {vae.latent_dim}"
        )
    recorded = meta.get("vae_sha256")
    if recorded is not None:
        actual = _vae_sha256(vae)
        if actual is not None and actual != recorded:
            raise ValueError(
                f"{what}: vae is not the VAE {path} was fitted with (its weights' checksum "
                f"differs from 'vae_sha256')"
            )
    expected = {
        "classes": torch.empty(k, NUM_ATTRIBUTES, dtype=torch.int8, device="meta"),
        "counts": torch.empty(k, dtype=torch.int64, device="meta"),
        "means": torch.empty(k, d, dtype=torch.float64, device="meta"),
        "cholesky": torch.empty(k, d, d, dtype=torch.float64, device="meta"),
        "pooled": torch.empty(k, dtype=torch.bool, device="meta"),
    }
    check_tensors_match(tensors, expected, w_path, what)
    for name, ref in expected.items():
        if tensors[name].dtype != ref.dtype:
            raise ValueError(
                f"{what}: {w_path} tensor {name!r} has dtype {tensors[name].dtype}, "
                f"expected {ref.dtype}"
            )
    classes = tensors["classes"].numpy()
    if not np.isin(classes, (0, 1)).all() or np.unique(classes, axis=0).shape[0] != k:
        raise ValueError(f"{what}: {w_path} tensor 'classes' must hold distinct 0/1 vectors")
    counts = tensors["counts"].numpy()
    if (counts < 1).any():
        raise ValueError(f"{what}: {w_path} tensor 'counts' must be >= 1")
    chol = tensors["cholesky"].numpy()
    diag = np.diagonal(chol, axis1=1, axis2=2)  # [K, D]
    if (np.triu(chol, 1) != 0).any() or not (diag > 0).all():
        raise ValueError(
            f"{what}: {w_path} tensor 'cholesky' must hold lower-triangular factors with a "
            "positive diagonal"
        )
    return LatentGMM(
        vae,
        classes,
        counts,
        tensors["means"].numpy(),
        chol,
        tensors["pooled"].numpy(),
        eps=float(eps),
        use_means=use_means,
        seed=seed,
        history=history,
    )


def load_latent_gmm(folder: Union[str, os.PathLike], vae: Any) -> LatentGMM:
    """Loads a :class:`LatentGMM` saved by :func:`save_latent_gmm` onto ``vae`` (the VAE it was
    fitted with: same latent dimension, same weights when the record names their checksum).

    Checksum, record keys, tensor names, shapes, dtypes and values are checked; falls back to
    ``latent_gmm.previous.json`` (with a warning) when the current record cannot be loaded.

    Raises:
        ValueError: nothing loadable; the message names the file (and the key at fault).
    """
    _check_vae(vae)
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ValueError(f"load_latent_gmm: {d} is not a folder")
    return load_checkpoint(d, LATENT_GMM_STEM, "load_latent_gmm", lambda ck: _build_gmm(ck, vae))


__all__ = [
    "FAST",
    "FULL",
    "LATENT_GMM_STEM",
    "LatentGMM",
    "check_attributes",
    "check_training_images",
    "encode_latents",
    "fit_latent_gmm",
    "has_latent_gmm_checkpoint",
    "load_latent_gmm",
    "save_latent_gmm",
]
