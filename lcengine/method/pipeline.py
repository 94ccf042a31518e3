# SPDX-License-Identifier: Apache-2.0
""":class:`LatentConstraints`: the one Python object of the method.

    from lcengine.method import LatentConstraints, LatentModel

    lc = LatentConstraints(LatentModel.from_module(my_vae), attribute_names)
    lc.fit(train_x, train_attributes)                  # critics + actor (resumable)
    out = lc.sample("7 thick", n=16, method="actor")   # or method="optimize"
    edit = lc.transform(x, "slant_right")              # identity-preserving edit
    lc.add_zero_shot_constraint("top_heavy", rule)     # learned from a rule, no labels
    lc.save("run/constraints"); lc = LatentConstraints.load("run/constraints", model)

The model is never modified: the method learns *in its latent space* which regions decode to
realistic data with the requested attributes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

import lcengine

from .baseline import AttributeVectorBaseline
from .critics import AttributeCritic, StackedAttributeCritic
from .data import parse_request
from .evaluation import attribute_metrics, frechet_distance
from .models import (
    LatentModel,
    atomic_write_bytes,
    atomic_write_json,
    read_json_file,
    sigma_bar_from_logvar,
)
from .sampling import (
    actor_latents,
    complete_requests,
    constraint_satisfied,
    optimize_latents_eager,
)
from .training import ConstraintTrainer, TrainingConfig, TrainingData, derive_seed
from .zeroshot import Rule, ZeroShotConstraint, learn_zero_shot_constraint

ArrayLike = Union[np.ndarray, torch.Tensor]
Request = Union[str, Mapping[str, int], Sequence[str], np.ndarray, torch.Tensor]

METHODS = ("prior", "actor", "optimize", "baseline")
CONFIG_FILE = "constraints.json"
WEIGHTS_FILE = "constraints.safetensors"
_FORMAT = "lcengine.LatentConstraints/1"


@dataclass
class SamplingConfig:
    """Settings of gradient-based latent optimization (:func:`optimize_latents_eager`).

    The defaults (for sampling from the prior) were tuned on the embedded digits (VAE with
    ``sigma_bar`` ~ 0.08): a large step size and a weak distance penalty let prior samples travel
    to the data, and ``tau_r = 0.9`` keeps them going until they are well inside the region the
    realism critic accepts (stopping at 0.5 leaves them on its border: worse FCD).

    Attributes:
        steps: maximum Adam updates per row.
        lr: Adam learning rate on latents.
        w_realism: weight of ``constraint_loss(D(z, y), 1)``.
        w_attr: weight of the masked attribute-critic loss.
        w_dist: weight of ``distance_penalty(z, z_start, sigma_bar)``.
        tau_r: a row stops once ``sigmoid(D(z, y)) > tau_r`` ...
        tau_a: ... and every requested attribute has confidence ``tau_a`` on its side.
    """

    steps: int = 300
    lr: float = 0.3
    w_realism: float = 1.0
    w_attr: float = 1.0
    w_dist: float = 0.001
    tau_r: float = 0.9
    tau_a: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {self.steps!r}")
        for name in ("lr", "w_realism", "w_attr", "w_dist", "tau_r", "tau_a"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite float, got {v!r}")
            setattr(self, name, float(v))
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if min(self.w_realism, self.w_attr, self.w_dist) < 0:
            raise ValueError("w_realism, w_attr and w_dist must be >= 0")
        if not 0.0 < self.tau_r < 1.0:
            raise ValueError(f"tau_r must be in (0, 1), got {self.tau_r}")
        if not 0.5 <= self.tau_a < 1.0:
            raise ValueError(f"tau_a must be in [0.5, 1), got {self.tau_a}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SamplingConfig keys {unknown}; expected some of "
                             f"{sorted(known)}")
        return cls(**dict(d))


# Transforms stay closer to the input (10x the distance weight, smaller steps), stop as soon as
# the critic finds the edit realistic (tau_r 0.5) but demand a confident requested attribute
# (tau_a 0.99), so that the edit is visible rather than barely across the critic's boundary.
# Measured on the demo: w_dist 0.03 / 0.1 cut convergence within 300 steps to 90% / 76%
# without preserving the digit better; 0.01 converges on 99%.
DEFAULT_TRANSFORM = SamplingConfig(steps=300, lr=0.05, w_dist=0.01, tau_r=0.5, tau_a=0.99)


@dataclass
class SampleResult:
    """Conditional samples.

    Attributes:
        latents: final latents. # [N, D]
        images: decoded outputs, float32. # [N, *data_shape]
        attributes: full target attribute vectors (requested values, the rest completed from
            data). # [N, A] int8
        mask: requested attributes. # [N, A] bool
        converged: the critics accept the row (for ``optimize``: the stopping rule was met
            within the step limit; for the other methods: the same rule evaluated on the
            result). # [N] bool
        steps: optimizer updates per row (0 for the one-pass methods). # [N] int64
        method: "prior" | "actor" | "optimize" | "baseline".
        seconds: wall time of the generation (decoding included).
    """

    latents: torch.Tensor
    images: np.ndarray
    attributes: np.ndarray
    mask: np.ndarray
    converged: np.ndarray
    steps: np.ndarray
    method: str
    seconds: float = 0.0


@dataclass
class TransformResult:
    """Identity-preserving transformations of real inputs.

    Attributes:
        latents: edited latents. # [B, D]
        images: decoded edits, float32. # [B, *data_shape]
        source_latents: encoder means of the inputs (the starting points). # [B, D]
        source_images: their reconstructions. # [B, *data_shape]
        attributes: target attribute vectors (source attributes with the changes). # [B, A]
        mask: the requested changes. # [B, A] bool
        converged: the stopping rule was met within the step limit. # [B] bool
        steps: optimizer updates per row. # [B] int64
        latent_distance: L2 distance from the source latent. # [B]
        pixel_distance: mean absolute per-pixel difference from the reconstruction. # [B]
    """

    latents: torch.Tensor
    images: np.ndarray
    source_latents: torch.Tensor
    source_images: np.ndarray
    attributes: np.ndarray
    mask: np.ndarray
    converged: np.ndarray
    steps: np.ndarray
    latent_distance: np.ndarray
    pixel_distance: np.ndarray
    method: str = "optimize"

    def summary(self) -> dict:
        """Converged fraction, mean steps, mean latent and pixel distances."""
        return {"converged_fraction": float(self.converged.mean()),
                "mean_steps": float(self.steps.mean()),
                "mean_latent_distance": float(self.latent_distance.mean()),
                "mean_pixel_distance": float(self.pixel_distance.mean()),
                "num_rows": int(self.converged.shape[0])}


def _as_model(model: Any) -> LatentModel:
    if isinstance(model, LatentModel):
        return model
    if isinstance(model, nn.Module):
        return LatentModel.from_module(model)
    raise TypeError("model must be a LatentModel or an nn.Module with encode/decode, got "
                    f"{type(model).__name__}")


def _as_binary_array(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.astype(np.int8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name} must be a 0/1 array, got dtype {a.dtype}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return a.astype(np.int8)


class LatentConstraints:
    """Conditional generation and attribute edits from an unconditional latent-variable model.

    Args:
        model: a :class:`LatentModel` (or an ``nn.Module`` with ``encode``/``decode`` and
            ``latent_dim``, wrapped by :meth:`LatentModel.from_module`).
        attribute_names: names of the data's binary attributes (the columns of the attribute
            arrays given to :meth:`fit`). ``digit_<k>``-style names form one-hot groups in
            requests (see :func:`lcengine.method.data.parse_request`).
        training: critic/actor hyperparameters.
        sampling: defaults of :meth:`sample` with ``method="optimize"``.
        transform: defaults of :meth:`transform`.
    """

    def __init__(self, model: Any, attribute_names: Sequence[str], *,
                 training: Optional[TrainingConfig] = None,
                 sampling: Optional[SamplingConfig] = None,
                 transform: Optional[SamplingConfig] = None) -> None:
        self.model = _as_model(model)
        names = tuple(attribute_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError("attribute_names must be a non-empty sequence of non-empty strings")
        if len({n.lower() for n in names}) != len(names):
            raise ValueError(f"attribute_names has duplicates: {names}")
        self.base_attribute_names = names
        self.training = training if training is not None else TrainingConfig()
        self.sampling = sampling if sampling is not None else SamplingConfig()
        self.transform_config = transform if transform is not None else dataclasses.replace(
            DEFAULT_TRANSFORM)
        for name, cfg, cls in (("training", self.training, TrainingConfig),
                               ("sampling", self.sampling, SamplingConfig),
                               ("transform", self.transform_config, SamplingConfig)):
            if not isinstance(cfg, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, got {type(cfg).__name__}")
        self.data: Optional[TrainingData] = None
        self.sigma_bar: Optional[torch.Tensor] = None
        self.trainer: Optional[ConstraintTrainer] = None
        self.baseline: Optional[AttributeVectorBaseline] = None
        self.zero_shot: list[ZeroShotConstraint] = []
        self._valid_rows: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Data attributes followed by the zero-shot constraints' names."""
        return self.base_attribute_names + tuple(c.name for c in self.zero_shot)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    @property
    def is_fitted(self) -> bool:
        """The critics and actor have been trained for the configured number of steps."""
        t = self.trainer
        return (t is not None and t.attribute_step >= self.training.attribute_steps
                and t.realism_step >= self.training.realism_steps)

    def _require_trainer(self, what: str) -> ConstraintTrainer:
        if self.trainer is None:
            raise RuntimeError(f"{what} needs trained critics: call fit() (or load()) first")
        return self.trainer

    @property
    def attribute_critic(self) -> nn.Module:
        """Data attribute critic plus zero-shot critics: logits ``[B, num_attributes]``."""
        t = self._require_trainer("attribute_critic")
        if not self.zero_shot:
            return t.attribute
        return StackedAttributeCritic([t.attribute] + [c.critic for c in self.zero_shot])

    # ------------------------------------------------------------------ data and fitting
    def set_data(self, x: Optional[ArrayLike] = None, attributes: Optional[ArrayLike] = None,
                 *, mu: Optional[ArrayLike] = None, logvar: Optional[ArrayLike] = None,
                 batch_size: int = 512) -> None:
        """Encodes the labelled training data (or takes precomputed ``mu``/``logvar``).

        Sets ``sigma_bar`` (per-dimension mean encoder scale), fits the attribute-vector
        baseline and creates the (untrained) critics and actor.

        Args:
            x: training data. # [N, *data_shape]
            attributes: 0/1 labels, columns ``attribute_names``. # [N, A]
            mu, logvar: precomputed posterior parameters instead of ``x``. # [N, D] each
            batch_size: encoding batch size.
        """
        if attributes is None:
            raise ValueError("attributes is required: the 0/1 labels of the training data, "
                             f"shape [N, {len(self.base_attribute_names)}]")
        if x is not None and (mu is not None or logvar is not None):
            raise ValueError("pass either x or (mu, logvar), not both")
        if x is not None:
            mu_t, lv_t = self.model.encode_dataset(x, batch_size=batch_size)  # [N, D] each
        elif mu is not None and logvar is not None:
            mu_t = self.model.check_latents(mu, "mu")
            lv_t = self.model.check_latents(logvar, "logvar")
            if mu_t.shape != lv_t.shape:
                raise ValueError(f"mu and logvar must have the same shape, got "
                                 f"{list(mu_t.shape)} and {list(lv_t.shape)}")
        else:
            raise ValueError("fit needs training data: x, or both mu and logvar")
        att = _as_binary_array(attributes, "attributes")
        a = len(self.base_attribute_names)
        if att.shape != (mu_t.shape[0], a):
            raise ValueError(f"attributes must have shape [{mu_t.shape[0]}, {a}] (one row per "
                             f"training item, one column per attribute name), got "
                             f"{list(att.shape)}")
        self.data = TrainingData(mu_t.detach().cpu(), lv_t.detach().cpu(),
                                 torch.from_numpy(att.astype(np.float32)))
        self.sigma_bar = sigma_bar_from_logvar(self.data.logvar)  # [D]
        self.trainer = ConstraintTrainer(self.latent_dim, a, self.sigma_bar, self.training)
        self._fit_baseline()

    def _fit_baseline(self) -> None:
        assert self.data is not None
        self.baseline = AttributeVectorBaseline(self.base_attribute_names).fit(
            self.data.mu.numpy(), self.data.attributes.numpy().astype(np.int8))
        self._valid_rows = np.unique(self.data.attributes.numpy().astype(np.int8), axis=0)

    def fit(self, x: Optional[ArrayLike] = None, attributes: Optional[ArrayLike] = None, *,
            mu: Optional[ArrayLike] = None, logvar: Optional[ArrayLike] = None,
            attribute_steps: Optional[int] = None, realism_steps: Optional[int] = None,
            progress: bool = True, checkpoint_dir: Union[str, Path, None] = None,
            checkpoint_every: int = 0) -> "LatentConstraints":
        """Trains the attribute critic, then the realism critic and the actor.

        The first call needs the training data (``x`` or ``mu``/``logvar``, plus
        ``attributes``). Later calls (e.g. after :meth:`load`) *continue*: step counts are
        totals, so ``fit(realism_steps=8000)`` on a run saved at 6000 trains 2000 more.

        Args:
            x, attributes, mu, logvar: training data (see :meth:`set_data`).
            attribute_steps: total attribute-critic updates (default: the config's).
            realism_steps: total realism-critic updates (default: the config's).
            progress: tqdm bars.
            checkpoint_dir: if given, :meth:`save` here every ``checkpoint_every`` realism
                updates and at the end, so an interrupted fit can be resumed.
            checkpoint_every: see ``checkpoint_dir``.

        Returns:
            self.
        """
        if x is not None or mu is not None or logvar is not None or attributes is not None:
            if self.trainer is not None and (self.trainer.attribute_step
                                             or self.trainer.realism_step):
                raise ValueError("fit was already given training data and has trained on it; "
                                 "call fit() without data to continue, or make a new "
                                 "LatentConstraints for new data")
            self.set_data(x, attributes, mu=mu, logvar=logvar)
        if self.data is None or self.trainer is None:
            raise ValueError("fit needs training data: fit(x, attributes) or "
                             "fit(mu=..., logvar=..., attributes=...)")
        for name, v in (("attribute_steps", attribute_steps), ("realism_steps", realism_steps)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if attribute_steps is not None:
            self.training.attribute_steps = attribute_steps
        if realism_steps is not None:
            self.training.realism_steps = realism_steps
        t = self.trainer
        t.train_attribute(self.data, self.training.attribute_steps, progress=progress)
        callback = None
        if checkpoint_dir is not None:
            def callback(_t: ConstraintTrainer) -> None:
                self.save(checkpoint_dir)
        t.train_realism_actor(self.data, self.training.realism_steps, progress=progress,
                              callback=callback, callback_every=checkpoint_every)
        for module in t.modules().values():
            module.eval()
        if checkpoint_dir is not None:
            self.save(checkpoint_dir)
        return self

    # ------------------------------------------------------------------ requests
    def parse(self, request: Request) -> tuple[np.ndarray, np.ndarray]:
        """A request -> ``(values [A] int8, mask [A] bool)`` over :attr:`attribute_names`.

        Accepts what :func:`~lcengine.method.data.parse_request` accepts (``"7 thick"``,
        ``["digit_7", "!thick"]``, ``{"thick": 1}``), or a full 0/1 vector of length A (every
        attribute requested).
        """
        names = self.attribute_names
        if isinstance(request, (np.ndarray, torch.Tensor)):
            v = _as_binary_array(request, "request")
            if v.shape != (len(names),):
                raise ValueError(f"an attribute vector request must have length {len(names)} "
                                 f"(attributes {list(names)}), got shape {list(v.shape)}")
            return v, np.ones(len(names), dtype=bool)
        return parse_request(request, names)

    def _check_targets(self, y: ArrayLike, mask: Optional[ArrayLike], n: Optional[int] = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        a = self.num_attributes
        yy = _as_binary_array(y, "y")
        if yy.ndim != 2 or yy.shape[1] != a or (n is not None and yy.shape[0] != n):
            raise ValueError(f"y must have shape [N, {a}] (one column per attribute "
                             f"{list(self.attribute_names)}), got {list(yy.shape)}")
        if mask is None:
            mm = np.ones_like(yy, dtype=bool)
        else:
            mm = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
            if mm.dtype != np.bool_:
                mm = _as_binary_array(mm, "mask").astype(bool)
            if mm.shape != yy.shape:
                raise ValueError(f"mask must have the shape of y {list(yy.shape)}, got "
                                 f"{list(mm.shape)}")
        mm = np.array(mm, dtype=bool)  # a writable copy (broadcast views are read-only)
        if not mm.any(axis=1).all():
            raise ValueError("every row needs at least one requested attribute (mask row of all "
                             "False = empty request)")
        return yy, mm

    def _prior(self, n: int, seed: int) -> torch.Tensor:
        return lcengine.standard_normal((n, self.latent_dim),
                                        seed=derive_seed(seed, "sample/prior"))  # [N, D]

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        if z.shape[0] == 0:
            return np.zeros((0,) + self.model.data_shape, dtype=np.float32)
        return self.model.decode_batched(z).detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def _accepted(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  cfg: SamplingConfig) -> torch.Tensor:
        t = self._require_trainer("sampling")
        r = t.realism(z, y[:, :len(self.base_attribute_names)])
        a = self.attribute_critic(z)
        return constraint_satisfied(r, a, y, mask, tau_r=cfg.tau_r, tau_a=cfg.tau_a)

    def _optimize_kwargs(self, cfg: SamplingConfig) -> dict:
        """The optimizer's keyword arguments for a sampling config."""
        return dict(w_realism=cfg.w_realism, w_attr=cfg.w_attr, w_dist=cfg.w_dist,
                    tau_r=cfg.tau_r, tau_a=cfg.tau_a, steps=cfg.steps, lr=cfg.lr,
                    realism_attributes=len(self.base_attribute_names))

    def _optimize(self, z0: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  cfg: SamplingConfig, *, progress: bool, desc: str):
        """Latent optimization through the foundation op :func:`lcengine.optimize_latents`
        (fused where built, else the eager loop). The op runs the whole loop in one call, so
        ``progress`` shows no per-step bar there; it takes ``steps >= 1``, so ``steps == 0``
        (evaluate the start, no update) goes through
        :func:`~lcengine.method.sampling.optimize_latents_eager`."""
        t = self._require_trainer("optimize")
        kwargs = self._optimize_kwargs(cfg)
        if cfg.steps == 0:
            return optimize_latents_eager(z0, y, mask, t.realism, self.attribute_critic,
                                          self.sigma_bar, progress=progress, desc=desc, **kwargs)
        return lcengine.optimize_latents(z0, y, mask, t.realism, self.attribute_critic,
                                         self.sigma_bar, **kwargs)

    # ------------------------------------------------------------------ generating
    def sample(self, request: Request, n: int, *, method: str = "actor", seed: int = 0,
               progress: bool = False, **overrides: Any) -> SampleResult:
        """``n`` samples satisfying a request.

        Args:
            request: e.g. ``"7 thick !slant_right"``, ``{"digit_7": 1}``, or a full 0/1 vector.
            n: number of samples.
            method: "actor" (one pass of G), "optimize" (Adam on z against both critics),
                "prior" (unconstrained samples, for comparison) or "baseline" (attribute-vector
                arithmetic on prior samples).
            seed: seed of the prior samples and of the completion of unrequested attributes.
            progress: tqdm bar for the optimizer.
            **overrides: :class:`SamplingConfig` fields for ``method="optimize"`` (``steps``,
                ``lr``, ``w_dist``, ``tau_r`` ...).

        Returns:
            :class:`SampleResult`.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        values, mask = self.parse(request)
        return self.generate(np.broadcast_to(values, (n, values.size)),
                             np.broadcast_to(mask, (n, mask.size)), method=method, seed=seed,
                             progress=progress, complete=True, **overrides)

    def complete(self, values: np.ndarray, mask: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Fills unrequested data attributes from training rows matching the request.

        Args:
            values: requested values. # [N, A]
            mask: requested attributes. # [N, A] bool

        Returns:
            Full target vectors. # [N, A] int8
        """
        if self.data is None:
            raise RuntimeError("complete needs the training attributes: call fit() first")
        table = self.data.attributes.numpy().astype(np.int8)
        return complete_requests(values, mask, table, values.shape[0],
                                 seed=derive_seed(seed, "sample/complete"))

    def generate(self, y: ArrayLike, mask: Optional[ArrayLike] = None, *, method: str = "actor",
                 seed: int = 0, z_start: Optional[ArrayLike] = None, complete: bool = False,
                 progress: bool = False, **overrides: Any) -> SampleResult:
        """Samples for per-row targets (the batch form of :meth:`sample`).

        Args:
            y: target attribute vectors. # [N, A]
            mask: requested attributes (None = all). # [N, A] bool
            method: "prior" | "actor" | "optimize" | "baseline".
            seed: seed of the prior samples (and of the completion).
            z_start: starting latents instead of prior samples. # [N, D]
            complete: fill unrequested attributes of ``y`` from data first (the realism critic
                reads full vectors); if False they are used as given.
            progress: tqdm bar for the optimizer.
            **overrides: :class:`SamplingConfig` fields.

        Returns:
            :class:`SampleResult`.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self._require_trainer(f"sample(method={method!r})")
        cfg = dataclasses.replace(self.sampling, **overrides) if overrides else self.sampling
        yy, mm = self._check_targets(y, mask)
        n = yy.shape[0]
        if complete:
            yy = self.complete(yy, mm, seed=seed)
        t0 = time.perf_counter()
        if z_start is None:
            z0 = self._prior(n, seed)  # [N, D]
        else:
            z0 = self.model.check_latents(z_start, "z_start").detach().cpu().to(torch.float32)
            if z0.shape[0] != n:
                raise ValueError(f"z_start has {z0.shape[0]} rows, y has {n}")
        y_t = torch.from_numpy(yy.astype(np.float32))  # [N, A]
        m_t = torch.from_numpy(mm)  # [N, A]
        steps = np.zeros(n, dtype=np.int64)
        a_base = len(self.base_attribute_names)
        if method == "prior":
            z = z0
        elif method == "actor":
            z = actor_latents(self.trainer.actor, z0, y_t)  # [N, D]
        elif method == "baseline":
            z = torch.as_tensor(self.baseline.apply(z0.numpy(), yy[:, :a_base],
                                                    mm[:, :a_base]), dtype=torch.float32)
        else:
            res = self._optimize(z0, y_t, m_t, cfg, progress=progress, desc="optimize")
            z, steps = res.latents, res.steps.numpy()
        if not torch.isfinite(z).all():
            raise FloatingPointError(f"method {method!r} produced non-finite latents")
        if method == "optimize":
            converged = res.converged.numpy()
        else:
            converged = self._accepted(z, y_t, m_t, cfg).numpy()
        images = self._decode(z)
        return SampleResult(latents=z, images=images, attributes=yy, mask=mm,
                            converged=converged, steps=steps, method=method,
                            seconds=time.perf_counter() - t0)

    def time_optimizer(self, y: ArrayLike, mask: Optional[ArrayLike] = None, *, seed: int = 0,
                       repeats: int = 2, **overrides: Any) -> dict:
        """Wall time of optimizer sampling: :func:`lcengine.optimize_latents` as
        :meth:`generate` runs it (``auto`` backend) against its eager autograd loop
        (``backend="eager"``) on the same prior latents and targets; best of ``repeats`` each.

        Args:
            y: target attribute vectors (used as given). # [N, A]
            mask: requested attributes (None = all). # [N, A] bool
            seed: seed of the prior latents.
            repeats: timed calls per contender (>= 1).
            **overrides: :class:`SamplingConfig` fields.

        Returns:
            ``{"rows", "max_steps", "repeats", "backend", "fused_seconds", "eager_seconds", "speedup",
            "same_steps_fraction", "max_latent_difference"}``.
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be a positive int, got {repeats!r}")
        t = self._require_trainer("time_optimizer")
        cfg = dataclasses.replace(self.sampling, **overrides) if overrides else self.sampling
        yy, mm = self._check_targets(y, mask)
        z0 = self._prior(yy.shape[0], seed)  # [N, D]
        y_t = torch.from_numpy(yy.astype(np.float32))  # [N, A]
        m_t = torch.from_numpy(mm)  # [N, A]
        kwargs = self._optimize_kwargs(cfg)
        results, seconds = {}, {}
        for backend in ("auto", "eager"):
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                results[backend] = lcengine.optimize_latents(
                    z0, y_t, m_t, t.realism, self.attribute_critic, self.sigma_bar,
                    backend=backend, **kwargs)
                best = min(best, time.perf_counter() - t0)
            seconds[backend] = best
        fused, eager = results["auto"], results["eager"]
        return {"rows": int(yy.shape[0]), "max_steps": int(cfg.steps), "repeats": repeats,
                "backend": fused.backend, "fused_seconds": seconds["auto"],
                "eager_seconds": seconds["eager"],
                "speedup": seconds["eager"] / seconds["auto"],
                "same_steps_fraction": float((fused.steps == eager.steps).float().mean()),
                "max_latent_difference": float((fused.latents - eager.latents).abs().max())}

    @torch.no_grad()
    def source_attributes(self, z: torch.Tensor) -> np.ndarray:
        """Data attributes of latents as the attribute critic sees them, projected onto the
        attribute combinations that occur in the training data (so one-hot groups stay
        one-hot): the training combination of highest likelihood under the critic's
        probabilities. # [B, D] -> [B, A_data] int8
        """
        t = self._require_trainer("source_attributes")
        assert self._valid_rows is not None
        logp = torch.nn.functional.logsigmoid(t.attribute(z))  # [B, A]
        log1mp = torch.nn.functional.logsigmoid(-t.attribute(z))  # [B, A]
        rows = torch.from_numpy(self._valid_rows.astype(np.float32))  # [K, A]
        score = logp @ rows.T + log1mp @ (1.0 - rows).T  # [B, K]
        return self._valid_rows[score.argmax(dim=1).numpy()]

    def transform(self, x: ArrayLike, changes: Request, *, source_attributes: Optional[
                  ArrayLike] = None, method: str = "optimize", progress: bool = False,
                  **overrides: Any) -> TransformResult:
        """Identity-preserving transformation: change only the requested attributes of inputs.

        Starts from the encoder mean of each input and optimizes its latent against the
        realism critic (conditioned on the input's own attributes with the changes applied),
        the attribute critic on the *requested* attributes only (the others are left out of
        the loss), and the distance penalty to the start.

        Args:
            x: real inputs. # [B, *data_shape]
            changes: the requested attributes, e.g. ``"slant_right"`` or ``{"digit_3": 1}``;
                one request for all rows, or a ``[B, A]`` 0/1 array with ``mask`` semantics
                given by a ``(values, mask)`` tuple of arrays.
            source_attributes: known data attributes of the inputs ``[B, A_data]`` (e.g.
                labels); by default they are read off the latent by the attribute critic.
            method: "optimize" (default), "actor" (one pass of G from the encoding) or
                "baseline" (attribute-vector arithmetic from the encoding).
            progress: tqdm bar.
            **overrides: :class:`SamplingConfig` fields (``steps``, ``w_dist`` ...).

        Returns:
            :class:`TransformResult`.
        """
        if method not in ("optimize", "actor", "baseline"):
            raise ValueError(f"method must be 'optimize', 'actor' or 'baseline' for a "
                             f"transform, got {method!r}")
        t = self._require_trainer("transform")
        cfg = (dataclasses.replace(self.transform_config, **overrides) if overrides
               else self.transform_config)
        mu, _ = self.model.encode_dataset(x)  # [B, D]
        mu = mu.detach().cpu().to(torch.float32)
        b = mu.shape[0]
        a_base = len(self.base_attribute_names)
        if isinstance(changes, tuple) and len(changes) == 2 and all(
                isinstance(c, (np.ndarray, torch.Tensor)) for c in changes):
            values, mask = self._check_targets(changes[0], changes[1], b)
        else:
            v, m = self.parse(changes)
            values, mask = np.broadcast_to(v, (b, v.size)), np.broadcast_to(m, (b, m.size))
        if source_attributes is None:
            src = self.source_attributes(mu)  # [B, A_data]
        else:
            src = _as_binary_array(source_attributes, "source_attributes")
            if src.shape != (b, a_base):
                raise ValueError(f"source_attributes must have shape [{b}, {a_base}], got "
                                 f"{list(src.shape)}")
        full = np.zeros((b, self.num_attributes), dtype=np.int8)
        full[:, :a_base] = src
        y = np.where(mask, values, full).astype(np.int8)  # [B, A]
        y_t, m_t = torch.from_numpy(y.astype(np.float32)), torch.from_numpy(np.array(mask))
        steps = np.zeros(b, dtype=np.int64)
        if method == "optimize":
            res = self._optimize(mu, y_t, m_t, cfg, progress=progress, desc="transform")
            z, converged, steps = res.latents, res.converged.numpy(), res.steps.numpy()
        else:
            if method == "actor":
                z = actor_latents(t.actor, mu, y_t)
            else:
                z = torch.as_tensor(self.baseline.apply(mu.numpy(), y[:, :a_base],
                                                        np.array(mask[:, :a_base]),
                                                        source_attributes=src),
                                    dtype=torch.float32)
            converged = self._accepted(z, y_t, m_t, cfg).numpy()
        images = self._decode(z)
        source_images = self._decode(mu)
        lat = (z - mu).norm(dim=1).numpy()
        pix = np.abs(images - source_images).reshape(b, -1).mean(axis=1)
        return TransformResult(latents=z, images=images, source_latents=mu,
                               source_images=source_images, attributes=y,
                               mask=np.array(mask), converged=converged, steps=steps,
                               latent_distance=lat, pixel_distance=pix, method=method)

    # ------------------------------------------------------------------ zero-shot
    def add_zero_shot_constraint(self, name: str, rule: Rule, *, num_samples: int = 20000,
                                 hidden: Sequence[int] = (128, 128), steps: int = 1500,
                                 seed: int = 0, progress: bool = True) -> ZeroShotConstraint:
        """Learns a new attribute ``name`` from a rule on decoded prior samples (no labels).

        After this, ``name`` can be requested in :meth:`sample` and :meth:`transform` (the
        attribute critic gains a column; the realism critic is unchanged).

        Args:
            name: attribute name, not already used.
            rule: ``rule(x [N, *data_shape] float32 numpy) -> bool [N]``.
            num_samples, hidden, steps, seed, progress: see
                :func:`~lcengine.method.zeroshot.learn_zero_shot_constraint`.

        Returns:
            The new :class:`ZeroShotConstraint` (also kept in :attr:`zero_shot`).
        """
        if isinstance(name, str) and name.lower() in {n.lower() for n in self.attribute_names}:
            raise ValueError(f"attribute name {name!r} is already used; pick another name")
        c = learn_zero_shot_constraint(self.model, rule, name, num_samples=num_samples,
                                       hidden=hidden, steps=steps, seed=seed, progress=progress)
        self.zero_shot.append(c)
        return c

    def rules(self) -> dict[str, Rule]:
        """Rules of the zero-shot constraints that carry one (for measuring them)."""
        return {c.name: c.rule for c in self.zero_shot if c.rule is not None}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, y: ArrayLike, mask: Optional[ArrayLike], *,
                 measure: Callable[[np.ndarray], np.ndarray],
                 features: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 reference_features: Optional[np.ndarray] = None,
                 methods: Sequence[str] = METHODS, seed: int = 0, progress: bool = False
                 ) -> tuple[dict[str, dict], dict[str, SampleResult]]:
        """Generates with each method for targets ``y`` and measures the outputs independently.

        Args:
            y: target attribute vectors, e.g. attributes of held-out data. # [N, A]
            mask: which entries count (None = all). # [N, A]
            measure: ``images -> measured 0/1 attributes [N, A]`` (independent of the critics).
            features: ``images -> [N, F]`` features for the Frechet distance.
            reference_features: features of real held-out data. # [M, F]
            methods: subset of :data:`METHODS`.
            seed: seed of the prior samples (shared by all methods: same starting points).
            progress: tqdm bar for the optimizer.

        Returns:
            ``(metrics, samples)``: per method, :func:`attribute_metrics` plus ``fcd``,
            ``accepted_fraction`` (critics' verdict), ``mean_steps`` and ``seconds``; and the
            :class:`SampleResult` per method.
        """
        yy, mm = self._check_targets(y, mask)
        metrics: dict[str, dict] = {}
        samples: dict[str, SampleResult] = {}
        for method in methods:
            res = self.generate(yy, mm, method=method, seed=seed, progress=progress)
            measured = _as_binary_array(measure(res.images), "measure(images)")
            m = attribute_metrics(yy, measured, mm, self.attribute_names)
            if features is not None and reference_features is not None:
                m["fcd"] = frechet_distance(features(res.images), reference_features)
            m["accepted_fraction"] = float(res.converged.mean())
            m["mean_steps"] = float(res.steps.mean())
            m["seconds"] = res.seconds
            metrics[method] = m
            samples[method] = res
        return metrics, samples

    # ------------------------------------------------------------------ checkpoints
    def _config_json(self) -> dict:
        assert self.trainer is not None
        return {"format": _FORMAT, "latent_dim": self.latent_dim,
                "data_shape": list(self.model.data_shape),
                "attribute_names": list(self.base_attribute_names),
                "training": self.training.to_dict(), "sampling": self.sampling.to_dict(),
                "transform": self.transform_config.to_dict(),
                "state": self.trainer.state_json(),
                "zero_shot": [c.info() for c in self.zero_shot]}

    def save(self, path: Union[str, Path]) -> Path:
        """Saves critics, actor, optimizer state, training encodings and zero-shot critics.

        ``constraints.safetensors`` is written first, then ``constraints.json`` (configs, step
        counts, history, and the SHA-256 of the tensor file), each atomically (temporary file
        + ``os.replace``): an interrupted save leaves the previous checkpoint, or a pair whose
        checksum does not match, which :meth:`load` rejects.

        Returns:
            The folder.
        """
        t = self._require_trainer("save")
        assert self.data is not None and self.sigma_bar is not None
        d = Path(path)
        if d.exists() and not d.is_dir():
            raise ValueError(f"path {d} exists and is not a folder")
        d.mkdir(parents=True, exist_ok=True)
        tensors = dict(t.state_tensors())
        tensors["sigma_bar"] = self.sigma_bar
        tensors["data.mu"] = self.data.mu
        tensors["data.logvar"] = self.data.logvar
        tensors["data.attributes"] = self.data.attributes
        for i, c in enumerate(self.zero_shot):
            for k, v in c.critic.state_dict().items():
                tensors[f"zeroshot.{i}.{k}"] = v
        from safetensors.torch import save as st_save

        blob = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                       metadata={"format": _FORMAT})
        atomic_write_bytes(d / WEIGHTS_FILE, blob)
        cfg = self._config_json()
        cfg["weights_sha256"] = hashlib.sha256(blob).hexdigest()
        atomic_write_json(d / CONFIG_FILE, cfg)
        return d

    @classmethod
    def load(cls, path: Union[str, Path], model: Any) -> "LatentConstraints":
        """Loads a checkpoint written by :meth:`save` for ``model``.

        Raises:
            ValueError: missing/corrupted files, a checksum mismatch between the two files, a
                model whose latent dimension or data shape differs from the checkpoint's, or
                tensors that do not fit the configured networks (messages name the file).
        """
        from safetensors.torch import load as st_load

        d = Path(path)
        cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        cfg = read_json_file(cfg_path, "LatentConstraints.load")
        if cfg.get("format") != _FORMAT:
            raise ValueError(f"LatentConstraints.load: {cfg_path} is not a latent-constraints "
                             f"checkpoint (format {cfg.get('format')!r}, expected {_FORMAT!r})")
        if not w_path.is_file():
            raise ValueError(f"LatentConstraints.load: missing file {w_path}")
        blob = w_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != cfg.get("weights_sha256"):
            raise ValueError(f"LatentConstraints.load: {w_path} does not match {cfg_path} "
                             "(checksum mismatch: corrupted, or from another save)")
        try:
            tensors = st_load(blob)
        except Exception as exc:
            raise ValueError(f"LatentConstraints.load: corrupted safetensors file {w_path}: "
                             f"{exc}") from exc
        m = _as_model(model)
        if int(cfg.get("latent_dim", -1)) != m.latent_dim:
            raise ValueError(f"LatentConstraints.load: {cfg_path} was trained for latent_dim "
                             f"{cfg.get('latent_dim')}, the model has {m.latent_dim}")
        if list(cfg.get("data_shape", [])) != list(m.data_shape):
            raise ValueError(f"LatentConstraints.load: {cfg_path} was trained for data shape "
                             f"{cfg.get('data_shape')}, the model has {list(m.data_shape)}")
        try:
            lc = cls(m, cfg["attribute_names"],
                     training=TrainingConfig.from_dict(cfg["training"]),
                     sampling=SamplingConfig.from_dict(cfg["sampling"]),
                     transform=SamplingConfig.from_dict(cfg["transform"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"LatentConstraints.load: bad config in {cfg_path}: {exc}") from exc
        need = ("sigma_bar", "data.mu", "data.logvar", "data.attributes")
        missing = [k for k in need if k not in tensors]
        if missing:
            raise ValueError(f"LatentConstraints.load: {w_path} lacks tensors {missing}")
        for k, v in tensors.items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise ValueError(f"LatentConstraints.load: {w_path} tensor {k!r} contains NaN "
                                 "or infinite values")
        lc.data = TrainingData(tensors["data.mu"], tensors["data.logvar"],
                               tensors["data.attributes"])
        if lc.data.mu.shape[1] != m.latent_dim or lc.data.attributes.shape[1] != len(
                lc.base_attribute_names):
            raise ValueError(f"LatentConstraints.load: {w_path} training encodings do not match "
                             "the configuration")
        lc.sigma_bar = tensors["sigma_bar"].to(torch.float32)
        lc.trainer = ConstraintTrainer(m.latent_dim, len(lc.base_attribute_names), lc.sigma_bar,
                                       lc.training)
        lc.trainer.load_state_tensors(tensors, str(w_path))
        lc.trainer.load_state_json(cfg.get("state", {}), str(cfg_path))
        for module in lc.trainer.modules().values():
            module.eval()
        lc._fit_baseline()
        for i, info in enumerate(cfg.get("zero_shot", [])):
            try:
                critic = AttributeCritic(**info["critic"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"LatentConstraints.load: bad zero-shot entry {i} in "
                                 f"{cfg_path}: {exc}") from exc
            prefix = f"zeroshot.{i}."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            expected = critic.state_dict()
            if set(sd) != set(expected) or any(sd[k].shape != expected[k].shape for k in sd):
                raise ValueError(f"LatentConstraints.load: {w_path} zero-shot critic "
                                 f"{info.get('name')!r} does not match its config")
            critic.load_state_dict(sd)
            critic.eval()
            lc.zero_shot.append(ZeroShotConstraint(
                name=str(info["name"]), critic=critic,
                positive_rate=float(info.get("positive_rate", float("nan"))),
                heldout_accuracy=float(info.get("heldout_accuracy", float("nan"))),
                num_samples=int(info.get("num_samples", 0)),
                history=info.get("history", {"step": [], "loss": []})))
        return lc

    def attach_rule(self, name: str, rule: Rule) -> None:
        """Re-attaches the rule of a loaded zero-shot constraint (rules are not saved)."""
        for c in self.zero_shot:
            if c.name == name:
                c.rule = rule
                return
        raise ValueError(f"no zero-shot constraint named {name!r}; have "
                         f"{[c.name for c in self.zero_shot]}")


__all__ = ["DEFAULT_TRANSFORM", "LatentConstraints", "METHODS", "SampleResult",
           "SamplingConfig", "TransformResult"]
