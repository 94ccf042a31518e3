# SPDX-License-Identifier: Apache-2.0
""":class:`LatentConstraints`: the one Python object of the method.

    from lcengine.method import LatentConstraints, LatentModel

    lc = LatentConstraints(LatentModel.from_module(my_vae), attribute_names)
    lc.fit(train_x, train_attributes)                  # critics + actor (resumable)
    out = lc.sample("a !b", n=16, method="actor")      # or method="optimize"
    edit = lc.transform(x, "b")                        # identity-preserving edit
    lc.add_zero_shot_constraint("c", rule)             # learned from a rule, no labels
    lc.save("run/constraints"); lc = LatentConstraints.load("run/constraints", model)

The model is never modified: the method learns *in its latent space* which regions decode to
realistic data with the requested attributes. Checkpoints are written and read by
:mod:`lcengine.method.checkpoint`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

import lcengine
from lcengine.validation import check_int

from . import checkpoint, generation
from .attributes import AttributeSpec, as_attribute_spec
from .baseline import AttributeVectorBaseline
from .config import DEFAULT_TRANSFORM, SamplingConfig, TrainingConfig
from .critics import StackedAttributeCritic
from .data import (
    DataSummary,
    DeviceLike,
    LabelFn,
    LatentSamples,
    LatentSource,
    encode_batches,
    label_latents,
    open_latents,
    resolve_device,
    summarize,
)
from .latent_model import LatentModel
from .requests import (
    RequestVocabulary,
    as_binary_array,
    check_targets,
    complete_requests,
    parse_request,
    vocabulary_of,
)
from .sampling import (
    METHODS,
    SampleResult,
    TransformResult,
    constraint_satisfied,
    optimizer_arguments,
    run_optimizer,
)
from .streams import derive_seed
from .training import ConstraintTrainer, TrainingData
from .zeroshot import Rule, ZeroShotConstraint, learn_zero_shot_constraint

ArrayLike = Union[np.ndarray, torch.Tensor]
Request = Union[str, Mapping[str, int], Sequence[str], np.ndarray, torch.Tensor]


def as_latent_model(model: Any) -> LatentModel:
    """A :class:`LatentModel`, wrapping an ``nn.Module`` with ``encode``/``decode`` if needed."""
    if isinstance(model, LatentModel):
        return model
    if isinstance(model, nn.Module):
        return LatentModel.from_module(model)
    raise TypeError(
        "model must be a LatentModel or an nn.Module with encode/decode, got "
        f"{type(model).__name__}"
    )


class LatentConstraints:
    """Conditional generation and attribute edits from an unconditional latent-variable model.

    Args:
        model: a :class:`LatentModel` (or an ``nn.Module`` with ``encode``/``decode`` and
            ``latent_dim``, wrapped by :meth:`LatentModel.from_module`).
        attributes: the data's attributes, an :class:`~lcengine.method.attributes.AttributeSpec`
            (binary attributes, categorical groups with their classes, request words): its
            ``columns`` are the columns of the attribute arrays given to :meth:`fit` and the
            attribute critic's outputs. For compatibility, a sequence of column names (plus
            ``vocabulary``) is converted by :meth:`AttributeSpec.from_names
            <lcengine.method.attributes.AttributeSpec.from_names>`.
        vocabulary: only with column names: the older form of one-hot groups, aliases and
            shorthands (see :class:`~lcengine.method.requests.RequestVocabulary`).
        training: critic/actor hyperparameters.
        sampling: defaults of :meth:`sample` with ``method="optimize"``.
        transform: defaults of :meth:`transform`.
        device: where the critics, the actor, the zero-shot critics and every latent of
            training, sampling and transforms live: ``"cpu"`` (default), ``"cuda"``,
            ``"cuda:N"``, ``"auto"`` (CUDA when ``torch.cuda.is_available()``, else the CPU) or
            a ``torch.device``; :meth:`load` takes it too and :meth:`to` moves a fitted object.
            The model keeps its own device (:class:`LatentModel` moves inputs there). A bad
            string, or CUDA without CUDA, raises ValueError naming ``device``.
    """

    def __init__(
        self,
        model: Any,
        attributes: Union[AttributeSpec, Sequence[str]],
        *,
        vocabulary: Optional[RequestVocabulary] = None,
        training: Optional[TrainingConfig] = None,
        sampling: Optional[SamplingConfig] = None,
        transform: Optional[SamplingConfig] = None,
        device: DeviceLike = "cpu",
    ) -> None:
        self.model = as_latent_model(model)
        self.device = resolve_device(device)
        if vocabulary is not None and not isinstance(vocabulary, RequestVocabulary):
            raise TypeError(
                f"vocabulary must be a RequestVocabulary, got {type(vocabulary).__name__}"
            )
        self.spec = as_attribute_spec(attributes, vocabulary)  # the data's attributes
        self.base_attribute_names = self.spec.columns
        self.training = training if training is not None else TrainingConfig()
        self.sampling = sampling if sampling is not None else SamplingConfig()
        self.transform_config = (
            transform if transform is not None else dataclasses.replace(DEFAULT_TRANSFORM)
        )
        for name, cfg, cls in (
            ("training", self.training, TrainingConfig),
            ("sampling", self.sampling, SamplingConfig),
            ("transform", self.transform_config, SamplingConfig),
        ):
            if not isinstance(cfg, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, got {type(cfg).__name__}")
        self.data: Optional[LatentSource] = None  # the attached training rows
        self.summary: Optional[DataSummary] = None  # what is kept of them (checkpointed)
        self.sigma_bar: Optional[torch.Tensor] = None
        self.trainer: Optional[ConstraintTrainer] = None
        self.baseline: Optional[AttributeVectorBaseline] = None
        self.zero_shot: list[ZeroShotConstraint] = []
        self._valid_rows: Optional[np.ndarray] = None
        self._table: Optional[np.ndarray] = None
        self._stacked: Optional[tuple[tuple[int, ...], nn.Module]] = None
        self.fit_stopped = False  # the last fit() ended early on stop_requested

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Data attributes followed by the zero-shot constraints' names."""
        return self.base_attribute_names + tuple(c.name for c in self.zero_shot)

    @property
    def attribute_spec(self) -> AttributeSpec:
        """:attr:`spec` with the zero-shot constraints appended as binary attributes: the
        spec of :attr:`attribute_names` (requests and metrics use it)."""
        return self.spec.with_binary(c.name for c in self.zero_shot)

    @property
    def vocabulary(self) -> RequestVocabulary:
        """The spec's groups and request words in the older :class:`RequestVocabulary` form."""
        return vocabulary_of(self.spec)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    @property
    def is_fitted(self) -> bool:
        """The critics and actor have been trained for the configured number of steps."""
        t = self.trainer
        return (
            t is not None
            and t.attribute_step >= self.training.attribute_steps
            and t.realism_step >= self.training.realism_steps
        )

    def require_trainer(self, what: str) -> ConstraintTrainer:
        if self.trainer is None:
            raise RuntimeError(f"{what} needs trained critics: call fit() (or load()) first")
        return self.trainer

    @property
    def attribute_critic(self) -> nn.Module:
        """Data attribute critic plus zero-shot critics: logits ``[B, num_attributes]``.

        The stack is built once per set of critics, not on every call.
        """
        t = self.require_trainer("attribute_critic")
        if not self.zero_shot:
            return t.attribute
        critics = [t.attribute] + [c.critic for c in self.zero_shot]
        key = tuple(id(c) for c in critics)
        if self._stacked is None or self._stacked[0] != key:
            self._stacked = (key, StackedAttributeCritic(critics))
        return self._stacked[1]

    # ------------------------------------------------------------------ data and fitting
    def as_source(
        self,
        x: Any = None,
        attributes: Optional[ArrayLike] = None,
        *,
        mu: Optional[ArrayLike] = None,
        logvar: Optional[ArrayLike] = None,
        batch_size: int = 512,
        progress: bool = False,
    ) -> LatentSource:
        """Training rows from any accepted form of training data.

        Args:
            x: one of
                * data ``[N, *data_shape]`` (with ``attributes``), encoded in batches of
                  ``batch_size`` and kept in memory (:class:`TrainingData`);
                * a :class:`~lcengine.method.data.LatentSource` (used as it is);
                * a path (``str`` / ``Path``): latent files opened by
                  :func:`~lcengine.method.data.open_latents` (a ``.safetensors`` file, or a
                  folder of ``.npy`` files), memory-mapped;
                * any other iterable of ``(x, attributes)`` batches, such as a
                  ``torch.utils.data.DataLoader``: encoded once, batch by batch, into
                  temporary files (:func:`~lcengine.method.data.encode_batches`).
            attributes: 0/1 labels, columns ``attribute_names``, with array ``x`` or
                ``mu``/``logvar``. # [N, A]
            mu, logvar: precomputed posterior parameters in memory instead of ``x``. # [N, D]
            batch_size: encoding batch size of array ``x``.
            progress: a bar while encoding batches.
        """
        a = len(self.base_attribute_names)
        if x is not None and (mu is not None or logvar is not None):
            raise ValueError("pass either x or (mu, logvar), not both")
        if isinstance(x, LatentSource) or isinstance(x, (str, Path)):
            if attributes is not None:
                raise ValueError(
                    "attributes must be None when x is a latent source or a path (the "
                    "attributes come with the latents)"
                )
            return x if isinstance(x, LatentSource) else open_latents(x)
        if (
            x is not None
            and not isinstance(x, (np.ndarray, torch.Tensor))
            and hasattr(x, "__iter__")
        ):
            if attributes is not None:
                raise ValueError(
                    "attributes must be None when x is an iterable of (x, attributes) batches"
                )
            return encode_batches(self.model, x, num_attributes=a, progress=progress)
        if attributes is None:
            raise ValueError(
                f"attributes is required: the 0/1 labels of the training data, shape [N, {a}]"
            )
        if x is not None:
            mu_t, lv_t = self.model.encode_dataset(x, batch_size=batch_size)  # [N, D] each
        elif mu is not None and logvar is not None:
            mu_t = self.model.check_latents(mu, "mu")  # [N, D]
            lv_t = self.model.check_latents(logvar, "logvar")  # [N, D]
            if mu_t.shape != lv_t.shape:
                raise ValueError(
                    f"mu and logvar must have the same shape, got "
                    f"{list(mu_t.shape)} and {list(lv_t.shape)}"
                )
        else:
            raise ValueError("fit needs training data: x, or both mu and logvar")
        att = as_binary_array(attributes, "attributes")  # [N, A]
        if att.shape != (mu_t.shape[0], a):
            raise ValueError(
                f"attributes must have shape [{mu_t.shape[0]}, {a}] (one row per "
                f"training item, one column per attribute name), got "
                f"{list(att.shape)}"
            )
        return TrainingData(
            mu_t.detach().cpu(), lv_t.detach().cpu(), torch.from_numpy(att.astype(np.float32))
        )

    def set_data(
        self,
        x: Any = None,
        attributes: Optional[ArrayLike] = None,
        *,
        mu: Optional[ArrayLike] = None,
        logvar: Optional[ArrayLike] = None,
        batch_size: int = 512,
        progress: bool = False,
    ) -> None:
        """Takes the labelled training data and starts a new training run.

        One streaming pass over the rows (:func:`~lcengine.method.data.summarize`) checks them
        and sets ``sigma_bar`` (per-dimension mean encoder scale), the attribute-vector
        baseline and the table of attribute combinations; then the (untrained) critics and
        actor are created on :attr:`device`.

        Args:
            x, attributes, mu, logvar, batch_size: the training data in any form
                :meth:`as_source` accepts.
            progress: bars for the encoding and the pass.
        """
        source = self.as_source(
            x, attributes, mu=mu, logvar=logvar, batch_size=batch_size, progress=progress
        )
        if source.latent_dim != self.latent_dim or source.num_attributes != len(
            self.base_attribute_names
        ):
            raise ValueError(
                f"the training data has latent dimension {source.latent_dim} and "
                f"{source.num_attributes} attributes; the model has {self.latent_dim} and "
                f"attribute_names {len(self.base_attribute_names)}"
            )
        summary = summarize(source, progress=progress)
        trainer = ConstraintTrainer(
            self.latent_dim,
            len(self.base_attribute_names),
            summary.sigma_bar,
            self.training,
            device=self.device,
        )
        self._restore(summary, trainer)
        self.data = source

    def _restore(self, summary: DataSummary, trainer: ConstraintTrainer) -> None:
        """Installs the data summary (``sigma_bar``, baseline, attribute combinations) and the
        trainer (fitting or loading)."""
        self.summary, self.trainer = summary, trainer
        self.sigma_bar = trainer.sigma_bar  # [D] on the device
        self.baseline = AttributeVectorBaseline(
            self.base_attribute_names, one_hot_groups=self.spec.group_members()
        ).fit_statistics(
            num_rows=summary.num_rows,
            sum_all=summary.sum_all,
            sum_pos=summary.sum_pos,
            count_pos=summary.count_pos,
        )
        self._valid_rows = summary.attribute_rows  # [K, A]
        self._table = None

    def attach_data(self, x: Any = None, attributes: Optional[ArrayLike] = None, **kw: Any) -> None:
        """Gives a loaded (or fitted) object its training rows again, to continue training.

        Checkpoints hold no training rows; ``fit`` after :meth:`load` needs them. The rows are
        not scanned again: ``sigma_bar``, the baseline and the attribute combinations stay
        those of the checkpoint. Takes what :meth:`as_source` takes.
        """
        self.require_trainer("attach_data")
        source = self.as_source(x, attributes, **kw)
        if source.latent_dim != self.latent_dim or source.num_attributes != len(
            self.base_attribute_names
        ):
            raise ValueError(
                f"the training data has latent dimension {source.latent_dim} and "
                f"{source.num_attributes} attributes; the checkpoint has {self.latent_dim} and "
                f"{len(self.base_attribute_names)}"
            )
        if self.data is not None and self.data is not source:
            self.data.close()
        self.data = source

    def fit(
        self,
        x: Any = None,
        attributes: Optional[ArrayLike] = None,
        *,
        mu: Optional[ArrayLike] = None,
        logvar: Optional[ArrayLike] = None,
        attribute_steps: Optional[int] = None,
        realism_steps: Optional[int] = None,
        progress: bool = True,
        checkpoint_dir: Union[str, Path, None] = None,
        checkpoint_every: int = 0,
        stop_requested: Optional[Callable[[], bool]] = None,
    ) -> "LatentConstraints":
        """Trains the attribute critic, then the realism critic and the actor.

        The first call needs the training data, in any form :meth:`as_source` takes: arrays
        (``x`` or ``mu``/``logvar``, plus ``attributes``), a
        :class:`~lcengine.method.data.LatentSource`, a path of latent files, or an iterable
        of ``(x, attributes)`` batches. Later calls *continue*: step counts are totals, so
        ``fit(realism_steps=8000)`` on a run saved at 6000 trains 2000 more. Checkpoints hold
        no training rows, so continuing a loaded object takes the data again
        (``fit(x, attributes, ...)``, see :meth:`attach_data`); an object that keeps its data
        continues with ``fit()``.

        Args:
            x, attributes, mu, logvar: training data (see :meth:`as_source`).
            attribute_steps: total attribute-critic updates (default: the config's).
            realism_steps: total realism-critic updates (default: the config's).
            progress: tqdm bars with rate and ETA (data pass, attribute critic, realism
                critic + actor).
            checkpoint_dir: if given, :meth:`save` here whenever the total number of realism
                updates is a multiple of ``checkpoint_every``, and at the end (also after a
                stop), so an interrupted fit can be resumed.
            checkpoint_every: see ``checkpoint_dir`` (0: at the end only).
            stop_requested: polled before each update (e.g. ``threading.Event().is_set``);
                when it returns True, training stops at that step boundary, the checkpoint is
                saved and fit returns (:attr:`fit_stopped` is then True). A later ``fit()``
                continues from there.

        Inside an initialized ``torch.distributed`` process group (``torchrun``), every rank
        calls ``fit`` with the same data: the configured batch sizes are the global batches,
        split evenly among the ranks, each rank draws its rows from its own shard, the
        gradients are averaged over the ranks in one all-reduce per update, a stop request
        of any rank stops every rank after the same update, and only rank 0 writes the
        checkpoints.

        Returns:
            self.
        """
        if x is not None or mu is not None or logvar is not None or attributes is not None:
            trained = self.trainer is not None and (
                self.trainer.attribute_step or self.trainer.realism_step
            )
            if trained and self.data is not None:
                raise ValueError(
                    "fit was already given training data and has trained on it; "
                    "call fit() without data to continue, or make a new "
                    "LatentConstraints for new data"
                )
            if trained:
                self.attach_data(x, attributes, mu=mu, logvar=logvar, progress=progress)
            else:
                self.set_data(x, attributes, mu=mu, logvar=logvar, progress=progress)
        if self.trainer is None:
            raise ValueError(
                "fit needs training data: fit(x, attributes), fit(mu=..., logvar=..., "
                "attributes=...), fit(path_of_latent_files) or fit(batches)"
            )
        for name, v in (("attribute_steps", attribute_steps), ("realism_steps", realism_steps)):
            if v is not None:
                check_int(name, v)
        if attribute_steps is not None:
            self.training.attribute_steps = attribute_steps
        if realism_steps is not None:
            self.training.realism_steps = realism_steps
        check_int("checkpoint_every", checkpoint_every)
        t = self.trainer
        remaining = (
            t.attribute_step < self.training.attribute_steps
            or t.realism_step < self.training.realism_steps
        )
        if remaining and self.data is None:
            raise ValueError(
                "fit needs the training data again to continue: checkpoints hold no training "
                "rows; pass them as for the first fit (fit(x, attributes, ...), a latent "
                "source, a path or batches)"
            )
        self.fit_stopped = False
        done = True
        if remaining:
            done = t.train_attribute(
                self.data,
                self.training.attribute_steps,
                progress=progress,
                stop_requested=stop_requested,
            )
        callback = None
        if checkpoint_dir is not None and t.rank != 0:
            checkpoint_dir = None  # several ranks train one set of weights: rank 0 saves it
        if checkpoint_dir is not None:

            def callback(_t: ConstraintTrainer) -> None:
                self.save(checkpoint_dir)

        if done and remaining:
            done = t.train_realism_actor(
                self.data,
                self.training.realism_steps,
                progress=progress,
                callback=callback,
                callback_every=checkpoint_every,
                stop_requested=stop_requested,
            )
        self.fit_stopped = not done
        for module in t.modules().values():
            module.eval()
        if checkpoint_dir is not None:
            self.save(checkpoint_dir)
        return self

    def prior_training_latents(self, num_samples: int, seed: int = 0) -> torch.Tensor:
        """The prior samples ``z ~ N(0, I)`` that :meth:`fit_decoder_only` trains on for
        ``num_samples`` and ``seed`` (on the CPU), e.g. to label their decoded outputs
        yourself. # [N, D]"""
        check_int("num_samples", num_samples, minimum=2)
        return lcengine.standard_normal(
            (num_samples, self.latent_dim), seed=derive_seed(seed, "decoder_only/prior")
        )

    def fit_decoder_only(
        self,
        num_samples: Optional[int] = None,
        label_fn: Optional[LabelFn] = None,
        *,
        z: Optional[ArrayLike] = None,
        attributes: Optional[ArrayLike] = None,
        seed: int = 0,
        sigma_bar: Optional[ArrayLike] = None,
        label_batch_size: int = 1000,
        attribute_steps: Optional[int] = None,
        realism_steps: Optional[int] = None,
        progress: bool = True,
        checkpoint_dir: Union[str, Path, None] = None,
        checkpoint_every: int = 0,
        stop_requested: Optional[Callable[[], bool]] = None,
    ) -> "LatentConstraints":
        """:meth:`fit` on labelled latent samples instead of encoded data: the path of models
        without an encoder (:meth:`LatentModel.from_decoder
        <lcengine.method.latent_model.LatentModel.from_decoder>`, a GAN generator); any model
        may use it.

        The training rows are latents ``z`` used as drawn (a
        :class:`~lcengine.method.data.LatentSamples`): ``num_samples`` prior samples
        ``z ~ N(0, I)`` (:meth:`prior_training_latents` for ``seed``), or the given ``z``. Every
        row counts as real for the realism critic. Their attributes are given (``attributes``)
        or come from ``label_fn`` on the decoded latents
        (:func:`~lcengine.method.data.label_latents`). ``sigma_bar`` defaults to ones, the
        prior's scale (a decoder-only model has no encoder scale). A first fit sets the training
        configuration's ``prior_fake_prob`` to 0: prior samples are real rows here, so the
        realism critic's fakes are the actor's outputs (and the mismatched attributes).

        Continuing a loaded object works as with :meth:`fit`: pass the same rows again (the
        same ``num_samples``, ``seed`` and ``label_fn`` give the same rows).

        Args:
            num_samples: N prior samples to draw (exclusive with ``z``).
            label_fn: ``label_fn(x [B, *data_shape] float32 numpy) -> [B, A]`` 0/1 with the
                columns :attr:`base_attribute_names` (exclusive with ``attributes``).
            z: latents to train on instead of drawn prior samples. # [N, D]
            attributes: 0/1 labels of the latents. # [N, A]
            seed: Philox key of the drawn prior samples.
            sigma_bar: per-dimension scale of the distance penalty. # [D]; default ones
            label_batch_size: latents decoded per ``label_fn`` call.
            attribute_steps, realism_steps, progress, checkpoint_dir, checkpoint_every,
                stop_requested: as in :meth:`fit`.

        Returns:
            self.
        """
        if (num_samples is None) == (z is None):
            raise ValueError("fit_decoder_only needs exactly one of num_samples and z")
        if (label_fn is None) == (attributes is None):
            raise ValueError("fit_decoder_only needs exactly one of label_fn and attributes")
        if z is not None:
            z_t = self.model.check_latents(z, "z").detach().cpu().to(torch.float32)  # [N, D]
        else:
            z_t = self.prior_training_latents(num_samples, seed)  # [N, D]
        if label_fn is not None:
            attributes = label_latents(
                self.model,
                z_t,
                label_fn,
                num_attributes=len(self.base_attribute_names),
                batch_size=label_batch_size,
                progress=progress,
            )  # [N, A]
        source = LatentSamples(z_t, attributes, sigma_bar=sigma_bar)
        if self.trainer is None and self.training.prior_fake_prob > 0:
            # the rows are prior samples: prior samples among the fakes would be real rows
            # labelled fake, so the realism critic's fakes are the actor's outputs only
            self.training = dataclasses.replace(self.training, prior_fake_prob=0.0)
        return self.fit(
            source,
            attribute_steps=attribute_steps,
            realism_steps=realism_steps,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            stop_requested=stop_requested,
        )

    def to(self, device: DeviceLike) -> "LatentConstraints":
        """Moves the critics, the actor (with their Adam state), the zero-shot critics and
        ``sigma_bar`` to ``device`` (see the constructor). Returns self."""
        self.device = resolve_device(device)
        if self.trainer is not None:
            self.trainer.to(self.device)
            self.sigma_bar = self.trainer.sigma_bar
        for c in self.zero_shot:
            c.critic.to(self.device)
        self._stacked = None
        return self

    # ------------------------------------------------------------------ requests
    def parse(self, request: Request) -> tuple[np.ndarray, np.ndarray]:
        """A request -> ``(values [A] int8, mask [A] bool)`` over :attr:`attribute_names`.

        Accepts what :func:`~lcengine.method.requests.parse_request` accepts with
        :attr:`attribute_spec` (``"a !b"``, ``["a", "b=0"]``, ``{"a": 1}``, ``"group=class"``),
        or a full 0/1 vector of length A (every attribute requested; at most one class per
        group).

        Raises:
            ValueError: a request the spec refuses (unknown word, two classes of one group, a
                class with its group's negation, ...), naming the word or the group.
        """
        spec = self.attribute_spec
        names = spec.columns
        if isinstance(request, (np.ndarray, torch.Tensor)):
            v = as_binary_array(request, "request")
            if v.shape != (len(names),):
                raise ValueError(
                    f"an attribute vector request must have length {len(names)} "
                    f"(attributes {list(names)}), got shape {list(v.shape)}"
                )
            spec.check_values(v)
            return v, np.ones(len(names), dtype=bool)
        return parse_request(request, spec)

    def check_targets(
        self, y: ArrayLike, mask: Optional[ArrayLike], n: Optional[int] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-row targets over :attr:`attribute_names`: ``(y int8, mask bool)``. # [N, A] x2"""
        return check_targets(y, mask, self.attribute_names, n)

    def prior_latents(self, n: int, seed: int) -> torch.Tensor:
        """The ``n`` prior samples every sampling method starts from for ``seed``. # [N, D]"""
        return lcengine.standard_normal(
            (n, self.latent_dim), seed=derive_seed(seed, "sample/prior"), device=self.device
        )

    def decode(self, z: torch.Tensor) -> np.ndarray:
        if z.shape[0] == 0:
            return np.zeros((0,) + self.model.data_shape, dtype=np.float32)
        return self.model.decode_batched(z).detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def accepted(
        self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, cfg: SamplingConfig
    ) -> torch.Tensor:
        t = self.require_trainer("sampling")
        r = t.realism(z, y[:, : len(self.base_attribute_names)])  # [B]
        a = self.attribute_critic(z)  # [B, A]
        return constraint_satisfied(r, a, y, mask, tau_r=cfg.tau_r, tau_a=cfg.tau_a)

    def optimizer_arguments(self, cfg: SamplingConfig) -> dict:
        """Keyword arguments of :func:`lcengine.optimize_latents` for a sampling config."""
        return optimizer_arguments(cfg, len(self.base_attribute_names))

    def run_optimizer(
        self,
        z0: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor,
        cfg: SamplingConfig,
        *,
        progress: bool,
        desc: str,
    ) -> lcengine.OptimizeResult:
        """:func:`~lcengine.method.sampling.run_optimizer` with this object's critics."""
        t = self.require_trainer("optimize")
        return run_optimizer(
            z0, y, mask, t.realism, self.attribute_critic, self.sigma_bar, cfg,
            realism_attributes=len(self.base_attribute_names), progress=progress, desc=desc,
        )  # fmt: skip

    # ------------------------------------------------------------------ generating
    def sample(
        self,
        request: Request,
        n: int,
        *,
        method: str = "actor",
        seed: int = 0,
        progress: bool = False,
        **overrides: Any,
    ) -> SampleResult:
        """``n`` samples satisfying a request.

        Args:
            request: e.g. ``"a !b"``, ``{"a": 1}``, or a full 0/1 vector.
            n: number of samples.
            method: "actor" (one pass of G), "optimize" (Adam on z against both critics),
                "prior" (unconstrained samples, for comparison) or "baseline" (attribute-vector
                arithmetic on prior samples). A request naming a zero-shot attribute takes
                "optimize" (or "prior"): the actor and the baseline know only the attributes
                they were fitted with and raise ValueError naming the combination.
            seed: seed of the prior samples and of the completion of unrequested attributes.
            progress: tqdm bar for the optimizer.
            **overrides: :class:`SamplingConfig` fields for ``method="optimize"`` (``steps``,
                ``lr``, ``w_dist``, ``tau_r``, ``start`` ...).

        Returns:
            :class:`~lcengine.method.sampling.SampleResult`.
        """
        check_int("n", n, minimum=1)
        values, mask = self.parse(request)
        return self.generate(
            np.broadcast_to(values, (n, values.size)),
            np.broadcast_to(mask, (n, mask.size)),
            method=method,
            seed=seed,
            progress=progress,
            complete=True,
            **overrides,
        )

    def complete(self, values: np.ndarray, mask: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Fills unrequested data attributes from training rows matching the request.

        Args:
            values: requested values. # [N, A]
            mask: requested attributes. # [N, A] bool

        Returns:
            Full target vectors. # [N, A] int8
        """
        if self.summary is None:
            raise RuntimeError("complete needs the training attributes: call fit() first")
        if self._table is None:  # every training row's attributes, grouped by combination
            self._table = self.summary.attribute_table()  # [N_train, A_data] int8
        table = self._table
        return complete_requests(
            values, mask, table, values.shape[0], seed=derive_seed(seed, "sample/complete")
        )

    def generate(
        self,
        y: ArrayLike,
        mask: Optional[ArrayLike] = None,
        *,
        method: str = "actor",
        seed: int = 0,
        z_start: Optional[ArrayLike] = None,
        complete: bool = False,
        progress: bool = False,
        **overrides: Any,
    ) -> SampleResult:
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
            :class:`~lcengine.method.sampling.SampleResult`.
        """
        return generation.generate(
            self,
            y,
            mask,
            method=method,
            seed=seed,
            z_start=z_start,
            complete=complete,
            progress=progress,
            **overrides,
        )

    @torch.no_grad()
    def source_attributes(self, z: torch.Tensor) -> np.ndarray:
        """Data attributes of latents as the attribute critic sees them, projected onto the
        attribute combinations that occur in the training data (so one-hot groups stay
        one-hot): the training combination of highest likelihood under the critic's
        probabilities. # [B, D] -> [B, A_data] int8
        """
        t = self.require_trainer("source_attributes")
        assert self._valid_rows is not None
        logp = torch.nn.functional.logsigmoid(t.attribute(z))  # [B, A]
        log1mp = torch.nn.functional.logsigmoid(-t.attribute(z))  # [B, A]
        rows = torch.from_numpy(self._valid_rows.astype(np.float32)).to(logp.device)  # [K, A]
        score = logp @ rows.T + log1mp @ (1.0 - rows).T  # [B, K]
        return self._valid_rows[score.argmax(dim=1).cpu().numpy()]

    def transform(
        self,
        x: ArrayLike,
        changes: Request,
        *,
        source_attributes: Optional[ArrayLike] = None,
        method: str = "optimize",
        progress: bool = False,
        **overrides: Any,
    ) -> TransformResult:
        """Identity-preserving transformation: change only the requested attributes of inputs.

        Starts from the encoder mean of each input (with ``start="actor"`` in the transform
        config, from the actor's output for it) and optimizes its latent against the
        realism critic (conditioned on the input's own attributes with the changes applied),
        the attribute critic on the *requested* attributes only (the others are left out of
        the loss), and the distance penalty to the start.

        Args:
            x: real inputs. # [B, *data_shape]
            changes: the requested attributes, e.g. ``"b"`` or ``{"a": 1}``; one request for
                all rows, or a ``(values, mask)`` tuple of ``[B, A]`` arrays.
            source_attributes: known data attributes of the inputs ``[B, A_data]`` (e.g.
                labels); by default they are read off the latent by the attribute critic.
            method: "optimize" (default), "actor" (one pass of G from the encoding) or
                "baseline" (attribute-vector arithmetic from the encoding).
            progress: tqdm bar.
            **overrides: :class:`SamplingConfig` fields (``steps``, ``w_dist`` ...).

        Returns:
            :class:`~lcengine.method.sampling.TransformResult`.

        Raises:
            EncoderUnavailableError: a decoder-only model (a transform starts from encodings).
        """
        self.model.require_encoder("transform")
        return generation.transform(
            self,
            x,
            changes,
            source_attributes=source_attributes,
            method=method,
            progress=progress,
            **overrides,
        )

    # ------------------------------------------------------------------ zero-shot
    def add_zero_shot_constraint(
        self,
        name: str,
        rule: Rule,
        *,
        num_samples: int = 20000,
        hidden: Sequence[int] = (128, 128),
        steps: int = 1500,
        seed: int = 0,
        progress: bool = True,
    ) -> ZeroShotConstraint:
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
        if isinstance(name, str):
            try:  # nor a group name or a request word of the spec
                self.attribute_spec.with_binary([name])
            except ValueError as exc:
                raise ValueError(f"attribute name {name!r} cannot be added: {exc}") from exc
        c = learn_zero_shot_constraint(
            self.model,
            rule,
            name,
            num_samples=num_samples,
            hidden=hidden,
            steps=steps,
            seed=seed,
            progress=progress,
            device=self.device,
        )
        self.zero_shot.append(c)
        return c

    def rules(self) -> dict[str, Rule]:
        """Rules of the zero-shot constraints that carry one (for measuring them)."""
        return {c.name: c.rule for c in self.zero_shot if c.rule is not None}

    def attach_rule(self, name: str, rule: Rule) -> None:
        """Re-attaches the rule of a loaded zero-shot constraint (rules are not saved)."""
        for c in self.zero_shot:
            if c.name == name:
                c.rule = rule
                return
        raise ValueError(
            f"no zero-shot constraint named {name!r}; have {[c.name for c in self.zero_shot]}"
        )

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Union[str, Path]) -> Path:
        """Saves critics, actor, optimizer state, ``sigma_bar``, the data summary, zero-shot
        critics and the configuration, from CPU copies: no training rows
        (see :func:`lcengine.method.checkpoint.save_constraints`). Returns the folder."""
        self.require_trainer("save")
        return checkpoint.save_constraints(self, path)

    @classmethod
    def load(
        cls, path: Union[str, Path], model: Any, *, device: DeviceLike = "cpu"
    ) -> "LatentConstraints":
        """Loads a checkpoint written by :meth:`save` for ``model`` onto ``device`` (see the
        constructor; checkpoints do not depend on the device they were saved from)
        (see :func:`lcengine.method.checkpoint.load_constraints`). Continuing training needs
        the training data again (:meth:`fit` with data, or :meth:`attach_data`)."""
        return checkpoint.load_constraints(cls, path, as_latent_model(model), device=device)


__all__ = ["LatentConstraints", "METHODS", "as_latent_model"]
