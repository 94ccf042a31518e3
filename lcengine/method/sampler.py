# SPDX-License-Identifier: Apache-2.0
""":class:`ConditionalSampler`: a fitted run for inference, and its exportable module.

    from lcengine.method.sampler import ConditionalSampler

    sampler = ConditionalSampler.from_run("RUN")              # decoder, actor, critics
    out = sampler.sample("7 thick", 16, seed=0)                # images, latents, accepted
    images = sampler(targets, latents)                          # [B, A], [B, D] -> images
    out = sampler.generate(targets, latents, mode="optimize")   # images, latents, accepted

The sampler holds what inference needs and nothing else: the decoder, the actor, the realism
and attribute critics (for ``mode="optimize"``), ``sigma_bar``, the attribute specification,
the sampling settings and the training set's attribute combinations (to complete partial
requests). It reads the run's checkpoint with :func:`lcengine.method.checkpoint.read_contents`
and imports none of the training code (:mod:`.training`, :mod:`.steps`, :mod:`.zeroshot`,
:mod:`.constraints`).

For a seed, :meth:`ConditionalSampler.sample` draws what
:meth:`LatentConstraints.sample <lcengine.method.constraints.LatentConstraints.sample>` draws
(the same prior latents and completed targets), so both give the same images. Calls share no
mutable state: many threads may call one sampler at once.

:class:`SamplerModule` is the actor-mode graph, ``(targets, latents) -> images``, as a plain
``nn.Module``: what ``lcengine export`` hands to ``torch.export`` (:mod:`.export`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

import lcengine
from lcengine.validation import check_int

from .checkpoint import STEM, CheckpointContents, read_contents, zero_shot_critics
from .config import SamplingConfig
from .critics import StackedAttributeCritic, constraint_networks, load_network_tensors
from .data import DeviceLike, resolve_device
from .latent_model import LatentModel
from .requests import complete_requests, parse_request
from .run import CONSTRAINTS_DIR, load_run_decoder
from .sampling import constraint_satisfied, run_optimizer
from .store import load_checkpoint
from .streams import derive_seed

MODES = ("actor", "optimize")
ArrayLike = Union[np.ndarray, torch.Tensor]
_WHAT = "ConditionalSampler"


class SamplerModule(nn.Module):
    """The actor, then the decoder: ``(targets [B, A], latents [B, D]) -> images
    [B, *data_shape]``, float32. ``A`` is the actor's attributes (the data's columns).

    A plain module of ``nn.Linear`` layers and the model's decoder, so ``torch.export``,
    AOTInductor and the ONNX exporter trace it as it is.
    """

    def __init__(self, actor: nn.Module, model: LatentModel) -> None:
        super().__init__()
        if model.module is None:
            raise ValueError(
                f"{_WHAT}: the decoder must be an nn.Module (LatentModel.from_module or "
                "LatentModel.from_decoder with a module) to build the exportable module; this "
                "model wraps plain functions"
            )
        self.actor = actor
        self.decoder = model.module  # registered: its parameters belong to the graph
        self._decode: Callable[[torch.Tensor], torch.Tensor] = model._decode_fn
        self.latent_shape = tuple(model.latent_shape)
        self.num_attributes = int(actor.num_attributes)
        self.latent_dim = int(actor.latent_dim)
        self.eval()  # an inference graph: no layer acts differently in training mode

    def forward(self, targets: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        z = self.actor(latents, targets)  # [B, D]
        return self._decode(z.reshape((z.shape[0],) + self.latent_shape))  # [B, *data_shape]


@dataclass
class SamplerOutput:
    """What :meth:`ConditionalSampler.sample` and :meth:`~ConditionalSampler.generate` return
    (tensors on the sampler's device).

    Attributes:
        images: decoded samples, float32. # [N, *data_shape]
        latents: the final latents. # [N, D]
        targets: full target vectors (requested values, the rest completed from the training
            set's combinations). # [N, A] float32
        mask: the requested attributes. # [N, A] bool
        accepted: both critics accept the row (the optimizer's stopping rule). # [N] bool
        steps: the optimizer's Adam updates per row (0 in actor mode). # [N] int64
        mode: "actor" or "optimize".
        backend: the backend that ran the optimizer ("native", "triton", "eager"); None in
            actor mode.
    """

    images: torch.Tensor
    latents: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    accepted: torch.Tensor
    steps: torch.Tensor
    mode: str
    backend: Optional[str] = None


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


class ConditionalSampler:
    """Conditional samples of a fitted run, for inference (see the module docstring).

    Build it with :meth:`from_run` (a run folder) or :meth:`from_checkpoint` (a constraints
    checkpoint and its model).

    Attributes:
        attribute_names: the columns of target vectors: the data's attributes, then the
            zero-shot constraints'.
        num_data_attributes: how many of them the actor knows (the data's).
        latent_dim, data_shape: the model's.
        sampling: the settings of ``mode="optimize"`` (the run's sampling configuration).
        attribute_table: the training set's attribute vectors, grouped by combination: what
            partial requests are completed from. # [N_train, A_data] int8
        device: where the networks live and outputs are returned.
    """

    def __init__(
        self,
        model: LatentModel,
        contents: CheckpointContents,
        *,
        device: DeviceLike = "cpu",
        sampling: Optional[SamplingConfig] = None,
    ) -> None:
        self.device = resolve_device(device)
        self.spec = contents.spec
        self.sampling = sampling if sampling is not None else contents.sampling
        if not isinstance(self.sampling, SamplingConfig):
            raise TypeError(f"sampling must be a SamplingConfig, got {type(self.sampling)}")
        d, a = model.latent_dim, len(contents.spec.columns)
        nets = constraint_networks(d, a, contents.training)
        load_network_tensors(nets, contents.tensors, str(contents.weights_path))
        zero_shot = zero_shot_critics(contents)
        for net in list(nets.values()) + [c for _, c in zero_shot]:
            net.eval().requires_grad_(False).to(self.device)
        self.realism, self.actor = nets["realism"], nets["actor"]
        self.attribute_critic: nn.Module = (
            StackedAttributeCritic([nets["attribute"]] + [c for _, c in zero_shot])
            if zero_shot
            else nets["attribute"]
        )
        self.zero_shot_names = tuple(str(info["name"]) for info, _ in zero_shot)
        self.attribute_spec = self.spec.with_binary(self.zero_shot_names)
        self.attribute_names = self.attribute_spec.columns
        self.num_data_attributes = a
        self.sigma_bar = contents.sigma_bar.to(self.device)  # [D]
        self.attribute_table = contents.summary.attribute_table()  # [N_train, A_data] int8
        if model.module is not None:
            model.module.to(self.device)
            model.device = self.device
        self.model = model
        self.latent_dim, self.data_shape = d, tuple(model.data_shape)
        self._module = SamplerModule(self.actor, model) if model.module is not None else None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, Path],
        model: LatentModel,
        *,
        device: DeviceLike = "cpu",
        sampling: Optional[SamplingConfig] = None,
    ) -> "ConditionalSampler":
        """From a constraints checkpoint (what ``LatentConstraints.save`` writes) and the
        model it was fitted for.

        Raises:
            ValueError: no loadable record, or one that does not match ``model`` (naming the
                file and what differs).
        """
        if not isinstance(model, LatentModel):
            raise TypeError(f"model must be a LatentModel, got {type(model).__name__}")
        d = Path(path)
        if not d.is_dir():
            raise ValueError(f"{_WHAT}: checkpoint folder {d} does not exist")
        return load_checkpoint(
            d,
            STEM,
            f"{_WHAT}.from_checkpoint",
            lambda ck: cls(model, read_contents(ck, model), device=device, sampling=sampling),
        )

    @classmethod
    def from_run(
        cls,
        folder: Union[str, Path],
        *,
        device: DeviceLike = "cpu",
        sampling: Optional[SamplingConfig] = None,
    ) -> "ConditionalSampler":
        """From a run folder (``lcengine fit``): the application's decoder
        (:func:`~lcengine.method.run.load_run_decoder`) and the run's constraints.

        Args:
            folder: the run folder.
            device: "cpu", "cuda", "cuda:N", "auto" or a ``torch.device``.
            sampling: settings of ``mode="optimize"`` (default: the run's).
        """
        folder = Path(folder)
        model = load_run_decoder(folder)
        return cls.from_checkpoint(
            folder / CONSTRAINTS_DIR, model, device=device, sampling=sampling
        )

    # ------------------------------------------------------------------ inputs
    def module(self) -> SamplerModule:
        """The actor-mode graph as an ``nn.Module``: what :meth:`__call__` computes in actor
        mode, without its input checks; ValueError when the decoder is not an ``nn.Module``."""
        if self._module is None:
            return SamplerModule(self.actor, self.model)  # raises, naming the reason
        return self._module

    def parse(self, request: Any) -> tuple[np.ndarray, np.ndarray]:
        """A request (``"7 thick !wide"``, a mapping, a list of words) -> ``(values [A] int8,
        mask [A] bool)`` over :attr:`attribute_names`; ValueError naming a refused word."""
        return parse_request(request, self.attribute_spec)

    def inputs(self, request: Any, n: int, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """The targets, mask and starting latents of ``n`` samples of a request for a seed:
        the unrequested attributes completed from the training set's combinations, the
        latents prior samples (the draws of ``LatentConstraints.sample`` for that seed).

        Returns:
            ``(targets [n, A] float32, mask [n, A] bool, latents [n, D] float32)`` on the
            sampler's device.
        """
        check_int("n", n, minimum=1)
        check_int("seed", seed, minimum=0)
        values, mask = self.parse(request)
        full = complete_requests(
            values, mask, self.attribute_table, n, seed=derive_seed(seed, "sample/complete")
        )  # [n, A] int8
        targets = torch.from_numpy(full.astype(np.float32)).to(self.device)  # [n, A]
        mask_t = torch.from_numpy(np.array(np.broadcast_to(mask, full.shape)))  # writable copy
        latents = lcengine.standard_normal(
            (n, self.latent_dim), seed=derive_seed(seed, "sample/prior"), device=self.device
        )  # [n, D]
        return targets, mask_t.to(self.device), latents

    def _check(self, targets: Any, latents: Any, mask: Any) -> tuple[torch.Tensor, ...]:
        a = len(self.attribute_names)
        for name, t, width in (("targets", targets, a), ("latents", latents, self.latent_dim)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor [B, {width}], got {type(t)}")
            if t.dim() != 2 or t.shape[1] != width or t.shape[0] < 1:
                raise ValueError(f"{name} must have shape [B, {width}], got {list(t.shape)}")
            if not t.is_floating_point():
                raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
        if targets.shape[0] != latents.shape[0]:
            raise ValueError(
                f"targets has {targets.shape[0]} rows and latents {latents.shape[0]}; "
                "they must match"
            )
        targets = targets.to(self.device, torch.float32)
        latents = latents.to(self.device, torch.float32)
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise ValueError("targets must be 0/1 attribute vectors")
        if not bool(torch.isfinite(latents).all()):
            raise ValueError("latents must be finite")
        if mask is None:
            mask = torch.ones_like(targets, dtype=torch.bool)
        elif not isinstance(mask, torch.Tensor) or mask.shape != targets.shape:
            raise ValueError(f"mask must be a bool tensor of shape {list(targets.shape)}")
        return targets, latents, mask.to(self.device, torch.bool)

    # ------------------------------------------------------------------ sampling
    def _refuse_zero_shot(self, mask: torch.Tensor, mode: str) -> None:
        a = self.num_data_attributes
        if mode == "actor" and mask.shape[1] > a and bool(mask[:, a:].any()):
            raise ValueError(
                f"mode='actor' cannot satisfy the zero-shot attributes "
                f"{list(self.zero_shot_names)}: the actor knows only the data's attributes; "
                "use mode='optimize'"
            )

    def _latents(self, targets, latents, mask, mode: str) -> tuple[torch.Tensor, Optional[Any]]:
        with torch.no_grad():
            z = self.actor(latents, targets[:, : self.num_data_attributes])  # [B, D]
        if mode == "actor":
            return z, None
        cfg = self.sampling
        z0 = z if cfg.start == "actor" else latents
        res = run_optimizer(
            z0, targets, mask, self.realism, self.attribute_critic, self.sigma_bar, cfg,
            realism_attributes=self.num_data_attributes,
        )  # fmt: skip
        return res.latents, res

    def __call__(
        self,
        targets: torch.Tensor,
        latents: torch.Tensor,
        *,
        mode: str = "actor",
        mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Images for full target vectors and starting latents.

        Args:
            targets: 0/1 attribute vectors over :attr:`attribute_names`. # [B, A]
            latents: starting latents (prior samples, or encodings to edit). # [B, D]
            mode: "actor" (one pass of the actor) or "optimize" (the latent optimizer
                against both critics, with :attr:`sampling`, from the actor's output when
                its ``start`` is "actor").
            mask: the requested attributes: in optimize mode those the attribute critic must
                satisfy (default: all); in actor mode a requested zero-shot attribute is
                refused (the actor does not know it). # [B, A] bool

        Returns:
            Decoded images, float32, on the sampler's device. # [B, *data_shape]
        """
        mode = _check_mode(mode)
        given = mask is not None
        targets, latents, mask = self._check(targets, latents, mask)
        if given:
            self._refuse_zero_shot(mask, mode)
        z, _ = self._latents(targets, latents, mask, mode)
        return self.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images of latents, float32 on the sampler's device. # [B, D] -> [B, *data_shape]"""
        with torch.no_grad():
            return self.model.decode(z).to(self.device, torch.float32)

    def generate(
        self,
        targets: torch.Tensor,
        latents: torch.Tensor,
        *,
        mode: str = "actor",
        mask: Optional[torch.Tensor] = None,
    ) -> SamplerOutput:
        """:meth:`__call__` with the final latents and the critics' verdict: a
        :class:`SamplerOutput` (``accepted`` is the optimizer's stopping rule, evaluated on the
        result in actor mode, at ``sampling.tau_r`` and ``sampling.tau_a``)."""
        mode = _check_mode(mode)
        given = mask is not None
        targets, latents, mask = self._check(targets, latents, mask)
        if given:
            self._refuse_zero_shot(mask, mode)
        return self._output(targets, latents, mask, mode)

    def sample(self, request: Any, n: int, *, seed: int = 0, mode: str = "actor") -> SamplerOutput:
        """``n`` samples of a request (``"7 thick"``, a mapping, a list of words), the same
        for the same seed (see :meth:`inputs`)."""
        mode = _check_mode(mode)
        targets, mask, latents = self.inputs(request, n, seed=seed)
        self._refuse_zero_shot(mask, mode)
        return self._output(targets, latents, mask, mode)

    def _output(self, targets, latents, mask, mode: str) -> SamplerOutput:
        z, res = self._latents(targets, latents, mask, mode)
        if res is not None:
            accepted, steps = res.converged, res.steps.to(torch.int64)
        else:
            steps = torch.zeros(z.shape[0], dtype=torch.int64, device=z.device)
            with torch.no_grad():
                accepted = constraint_satisfied(
                    self.realism(z, targets[:, : self.num_data_attributes]),
                    self.attribute_critic(z),
                    targets,
                    mask,
                    tau_r=self.sampling.tau_r,
                    tau_a=self.sampling.tau_a,
                )
        backend = res.backend if res is not None else None
        return SamplerOutput(self.decode(z), z, targets, mask, accepted, steps, mode, backend)

    def with_sampling(self, **overrides: Any) -> "ConditionalSampler":
        """A shallow copy sharing the networks, with :attr:`sampling` fields replaced
        (``steps``, ``lr``, ``w_dist``, ``tau_a``, ``start`` ...)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.sampling = dataclasses.replace(self.sampling, **overrides)
        return other

    def metadata(self) -> dict[str, Any]:
        """What a consumer of the exported graph needs to build its inputs: attribute columns
        (the actor's), latent dimension and shape, data shape."""
        return {
            "format": "lcengine.sampler/1",
            "attributes": list(self.attribute_names[: self.num_data_attributes]),
            "latent_dim": self.latent_dim,
            "data_shape": list(self.data_shape),
        }

    def __repr__(self) -> str:
        return (
            f"ConditionalSampler(attributes={list(self.attribute_names)}, "
            f"latent_dim={self.latent_dim}, data_shape={list(self.data_shape)}, "
            f"device={self.device})"
        )


__all__ = ["MODES", "ConditionalSampler", "SamplerModule", "SamplerOutput"]
