# SPDX-License-Identifier: Apache-2.0
"""Training of the attribute critic, the realism critic and the actor.

The recipe is the one of Engel et al. (and of their released implementation):

* attribute critic ``D_attr(z)``: multi-label ``constraint_loss`` on ``z ~ q(z|x)`` (sampled with
  :func:`lcengine.reparameterize`) of labelled data;
* realism critic ``D(z, y)``: each batch holds three blocks of ``batch_size`` rows,
  ``[z ~ q(z|x), y] -> 1``, ``[fake, y] -> 0`` (fake = a prior sample with probability
  ``prior_fake_prob``, else ``G(prior sample, y)``) and ``[z ~ q(z|x), y of other rows] -> 0``;
  loss = ``constraint_loss`` + ``gp_weight`` * WGAN-GP penalty ``(|grad_z D(z_hat, y)| - 1)^2`` on
  interpolates ``z_hat`` between the real and the fake block; Adam, betas (0, 0.9);
* actor ``G(z, y)``: one update every ``actor_every`` critic updates, on prior samples *and* real
  encodings, each paired with the attributes of a random data row; loss
  ``constraint_loss(D(z', y), 1) + actor_attribute_weight * constraint_loss(D_attr(z'), y) +
  lambda_dist * distance_penalty(z', z, sigma_bar)``. With ``actor_attribute_weight`` 0 (the
  default) this is the objective of the paper and of the released notebook: the realism critic
  and the distance penalty; a positive weight adds the attribute critic as a second target.

Every source of Gaussian noise is :func:`lcengine.reparameterize` / :func:`lcengine.standard_normal`
keyed by a seed derived from ``(config.seed, purpose, step)``, and every index draw uses a
generator seeded the same way, so training is deterministic and a resumed run continues with
exactly the batches an uninterrupted one would have used.

The ``train_*`` methods poll an optional ``stop_requested`` callable before each update and
return ``False`` when it asks them to stop: a stop always falls on a step boundary (an actor
update belongs to the realism update that triggers it), so the state saved afterwards resumes
exactly.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Optional

import torch
from tqdm.auto import tqdm

import lcengine

from .config import TrainingConfig
from .critics import NETWORKS, constraint_networks, load_network_tensors
from .data import DeviceLike, LatentSource, TrainingData, resolve_device
from .steps import (
    actor_step_grads,
    apply_grads,
    attribute_step_grads,
    realism_step_grads,
    supports_hand_derived,
)
from .streams import derive_seed

StopRequested = Callable[[], bool]


def check_autocast(mode: str, device: torch.device) -> None:
    """bfloat16 autocast needs a CPU or a CUDA device that computes in bfloat16 (a
    ``ValueError`` naming ``training.autocast`` otherwise)."""
    if mode == "off":
        return
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"training.autocast={mode!r} needs device cpu or cuda, got device {str(device)!r}"
        )
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"training.autocast={mode!r}: {torch.cuda.get_device_name(device)} has no "
            "bfloat16 support; use autocast='off'"
        )


def process_rank() -> tuple[int, int]:
    """``(rank, world size)`` of the initialized default process group; ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fused_adam_available(device: torch.device) -> bool:
    """Adam's fused kernel runs on CPUs and CUDA devices (one kernel for every parameter:
    0.24 ms against 1.27 ms per step of a 4 x 256 critic on one CPU thread)."""
    return device.type in ("cpu", "cuda")


def _adam(net: torch.nn.Module, device: torch.device, **kw: Any) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), fused=fused_adam_available(device), **kw)


def _empty_history() -> dict[str, dict[str, list]]:
    return {
        "attribute": {"step": [], "loss": [], "accuracy": []},
        "realism": {
            "step": [],
            "loss": [],
            "gp": [],
            "real_prob": [],
            "fake_prob": [],
            "mismatch_prob": [],
        },
        "actor": {"step": [], "loss": [], "realism": [], "attribute": [], "distance": []},
    }


class ConstraintTrainer:
    """Owns the three networks, their optimizers, step counters and loss history.

    Training is resumable: :meth:`state_tensors` / :meth:`load_state_tensors` hold the weights
    and the Adam moments, :meth:`state_json` the step counters and history; ``train_*`` methods
    take a target *total* number of updates and continue from the current count.

    Args:
        latent_dim: D.
        num_attributes: A.
        sigma_bar: per-dimension average encoder scale, for the actor's distance penalty. # [D]
        config: hyperparameters.
        device: where the networks, their Adam state, ``sigma_bar`` and every batch live
            (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``, ``"meta"`` or a ``torch.device``).
            Weights are initialized on the CPU and then moved, and index draws use CPU
            generators, so a run draws the same batches and starts from the same weights on
            every device.
    """

    def __init__(
        self,
        latent_dim: int,
        num_attributes: int,
        sigma_bar: torch.Tensor,
        config: Optional[TrainingConfig] = None,
        *,
        device: DeviceLike = "cpu",
    ) -> None:
        self.config = config if config is not None else TrainingConfig()
        self.device = resolve_device(device)
        check_autocast(self.config.autocast, self.device)
        c = self.config
        # Weight init is part of the seeded run; the caller's global RNG state is left alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(c.seed, "init"))
            nets = constraint_networks(latent_dim, num_attributes, c)
            self.realism, self.attribute, self.actor = (nets[n] for n in NETWORKS)
        for module in (self.realism, self.attribute, self.actor):
            module.to(self.device)
        self.rank, self.world = process_rank()
        if self.world > 1:
            for name in ("batch_size", "attribute_batch_size"):
                if getattr(c, name) % self.world:
                    raise ValueError(
                        f"TrainingConfig.{name} ({getattr(c, name)}) must be a multiple of the "
                        f"world size ({self.world}): it is the global batch, split evenly "
                        "among the ranks"
                    )
            for module in (self.realism, self.attribute, self.actor):
                for t in module.state_dict().values():
                    torch.distributed.broadcast(t, src=0)  # one set of weights for all ranks
        self.sigma_bar = sigma_bar.detach().to(device=self.device, dtype=torch.float32)  # [D]
        self.opt_attribute = _adam(self.attribute, self.device, lr=c.attribute_lr)
        self.opt_realism = _adam(self.realism, self.device, lr=c.realism_lr, betas=c.betas)
        self.opt_actor = _adam(self.actor, self.device, lr=c.actor_lr, betas=c.betas)
        self.attribute_step = 0
        self.realism_step = 0
        self.actor_step = 0
        self.history = _empty_history()
        # Piecewise-linear critics and actor take the hand-derived gradients of
        # lcengine.method.steps (no double backward; equal to autograd's, see
        # tests/method/test_steps.py); any other activation takes autograd.
        self.hand_derived = all(
            supports_hand_derived(n) for n in (self.realism, self.attribute, self.actor)
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to bfloat16 on the trainer's device when the configuration's
        ``autocast`` is "bf16", else a no-op context."""
        if self.config.autocast == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def to(self, device: DeviceLike) -> "ConstraintTrainer":
        """Moves the networks, their Adam state and ``sigma_bar`` to ``device``. Returns self."""
        check_autocast(self.config.autocast, resolve_device(device))
        self.device = resolve_device(device)
        for module in self.modules().values():
            module.to(self.device)
        for opt in self.optimizers().values():
            fused = fused_adam_available(self.device)
            for group in opt.param_groups:
                group["fused"] = fused
            for st in opt.state.values():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor):  # fused Adam keeps its step on the device
                        st[k] = v.to(self.device if k != "step" or fused else "cpu")
        self.sigma_bar = self.sigma_bar.to(self.device)
        return self

    def _seed(self, *parts: Any) -> int:
        """The seed of one draw: this rank's own stream when there are several ranks (the
        single-process streams are unchanged)."""
        if self.world == 1:
            return derive_seed(self.config.seed, *parts)
        return derive_seed(self.config.seed, *parts, "rank", self.rank)

    def _generator(self, *parts: Any) -> torch.Generator:
        return torch.Generator().manual_seed(self._seed(*parts))

    def _local(self, rows: int) -> int:
        """This rank's share of a global batch of ``rows``."""
        return rows // self.world

    def _indices(self, data: LatentSource, count: int, gen: torch.Generator) -> torch.Tensor:
        """``count`` random row indices of this rank's shard (rows ``rank``, ``rank + world``,
        ...; all rows for one process). # -> [count] int64"""
        if self.world == 1:
            return torch.randint(data.num_rows, (count,), generator=gen)
        shard = max(1, (data.num_rows - self.rank + self.world - 1) // self.world)
        return self.rank + self.world * torch.randint(shard, (count,), generator=gen)

    def _synchronize(self, module: torch.nn.Module, stop: bool) -> bool:
        """Averages the module's gradients over the ranks in one all-reduce (what
        DistributedDataParallel does after a backward; here the gradients come from the
        hand-derived steps, which DDP's autograd hooks never see) and ORs the ranks' stop
        requests into it. Returns whether any rank asked to stop. One process: ``stop``."""
        if self.world == 1:
            return stop
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [
            torch.tensor([1.0 if stop else 0.0], device=self.device)])  # fmt: skip
        torch.distributed.all_reduce(flat)
        i = 0
        for g in grads:
            n = g.numel()
            g.copy_((flat[i : i + n] / self.world).view_as(g))
            i += n
        return bool(flat[-1].item() > 0)

    def _rows(
        self, data: LatentSource, idx: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``z ~ q(z|x)`` of rows ``idx`` (the stored samples for a source without ``logvar``)
        and their attributes, on the trainer's device. # [B] -> [B, D], [B, A]"""
        mu, logvar, y = data.read(idx)  # [B, D], [B, D] | None, [B, A]
        mu = mu.to(self.device, non_blocking=True)
        if logvar is None:
            z = mu
        else:
            z = lcengine.reparameterize(
                mu, logvar.to(self.device, non_blocking=True), seed=seed
            )  # [B, D]
        return z, y.to(self.device, non_blocking=True)

    def _attributes(self, data: LatentSource, idx: torch.Tensor) -> torch.Tensor:
        """Attributes of rows ``idx`` on the trainer's device. # [B] -> [B, A]"""
        return data.read_attributes(idx).to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ attribute critic
    def train_attribute(
        self,
        data: LatentSource,
        until: int,
        *,
        progress: bool = True,
        desc: str = "attribute critic",
        stop_requested: Optional[StopRequested] = None,
    ) -> bool:
        """Trains the attribute critic until it has made ``until`` updates in total.

        Args:
            data: training rows (a :class:`~lcengine.method.data.LatentSource`).
            until: target total number of updates.
            progress: show a tqdm bar (rate and ETA; it counts from the current total).
            desc: its label.
            stop_requested: polled before each update; True stops the loop there.

        Returns:
            True when ``until`` was reached, False when ``stop_requested`` stopped it first.
        """
        c = self.config
        _check_data(data, self.attribute.latent_dim, self.attribute.num_attributes)
        todo = max(0, until - self.attribute_step)
        if todo == 0:
            return True
        self.attribute.train()
        bar = _bar(self.attribute_step, until, desc, progress)
        while self.attribute_step < until:
            stop = stop_requested is not None and stop_requested()
            if stop and self.world == 1:
                break
            step = self.attribute_step
            gen = self._generator("attribute/index", step)
            idx = self._indices(data, self._local(c.attribute_batch_size), gen)  # [B]
            z, y = self._rows(data, idx, self._seed("attribute/q", step))  # [B, D], [B, A]
            self.opt_attribute.zero_grad(set_to_none=True)
            with self.autocast():
                if self.hand_derived:
                    out = attribute_step_grads(self.attribute, z, y, compiled=c.compile_steps)
                    logits, loss = out.logits, out.loss  # [B, A], []
                    apply_grads(self.attribute, out.grads)
                else:
                    logits = self.attribute(z)  # [B, A]
                    loss = lcengine.constraint_loss(logits.float(), y)
                    loss.backward()
            stop = self._synchronize(self.attribute, stop)
            self.opt_attribute.step()
            self.attribute_step += 1
            if step % c.log_every == 0 or self.attribute_step == until:
                acc = ((logits.detach() > 0).float() == y).float().mean().item()
                h = self.history["attribute"]
                h["step"].append(self.attribute_step)
                h["loss"].append(float(loss.item()))
                h["accuracy"].append(acc)
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
            bar.update(1)
            if stop:  # several ranks: every rank stops after the same update
                break
        bar.close()
        return self.attribute_step >= until

    # ------------------------------------------------------------------ realism critic + actor
    def _real_block(
        self, data: LatentSource, purpose: str, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z ~ q(z|x)`` of random rows, their attributes and indices. # [B, D], [B, A], [B]"""
        idx = self._indices(data, self._local(self.config.batch_size), gen)  # [B]
        z, y = self._rows(data, idx, self._seed(purpose, step))
        return z, y, idx

    def _realism_update(self, data: LatentSource, stop: bool = False) -> bool:
        c = self.config
        step = self.realism_step
        gen = self._generator("realism/index", step)
        b, d = self._local(c.batch_size), self.realism.latent_dim
        z_real, y_real, _ = self._real_block(data, "realism/real", step, gen)  # [B, D], [B, A]

        # Fakes carry the real block's attributes, so y alone never gives a fake away.
        z_prior = lcengine.standard_normal(
            (b, d), seed=self._seed("realism/prior", step), device=self.device
        )  # [B, D]
        with torch.no_grad(), self.autocast():
            z_actor = self.actor(z_prior, y_real).float()  # [B, D]
        use_prior = (torch.rand(b, generator=gen) < c.prior_fake_prob).to(self.device)  # [B]
        z_fake = torch.where(use_prior[:, None], z_prior, z_actor)  # [B, D]

        # Real encodings with the attributes of other rows; rows whose borrowed attributes
        # happen to equal their own are not mismatches and are left out of the loss.
        z_mis, y_own, _ = self._real_block(data, "realism/mismatch", step, gen)  # [B, D], [B, A]
        other = self._indices(data, b, gen)  # [B]
        y_mis = self._attributes(data, other)  # [B, A]
        differs = (y_mis != y_own).any(dim=1).float()  # [B]

        dev = self.device
        alpha = torch.rand(b, 1, generator=gen).to(dev)  # [B, 1]
        self.opt_realism.zero_grad(set_to_none=True)
        with self.autocast():
            if self.hand_derived:
                out = realism_step_grads(
                    self.realism, z_real, z_fake, z_mis, y_real, y_mis, differs, alpha,
                    gp_weight=c.gp_weight, compiled=c.compile_steps,
                )  # fmt: skip
                logits, bce, gp = out.logits, out.parts["bce"], out.parts["gp"]  # [3B], [], []
                apply_grads(self.realism, out.grads)
            else:
                z_all = torch.cat([z_real, z_fake, z_mis])  # [3B, D]
                y_all = torch.cat([y_real, y_real, y_mis])  # [3B, A]
                target = torch.cat([torch.ones(b, device=dev), torch.zeros(2 * b, device=dev)])
                weight = torch.cat([torch.ones(2 * b, device=dev), differs])  # [3B]
                logits = self.realism(z_all, y_all).float()  # [3B]
                bce = lcengine.constraint_loss(logits, target, weight=weight)
                z_hat = (alpha * z_real + (1.0 - alpha) * z_fake).requires_grad_(True)  # [B, D]
                d_hat = self.realism(z_hat, y_real).float()  # [B]
                (grad_hat,) = torch.autograd.grad(d_hat.sum(), z_hat, create_graph=True)  # [B, D]
                gp = ((grad_hat.norm(dim=1) - 1.0) ** 2).mean()
                (bce + c.gp_weight * gp).backward(inputs=list(self.realism.parameters()))
        stop = self._synchronize(self.realism, stop)
        self.opt_realism.step()
        self.realism_step += 1
        if step % c.log_every == 0:
            with torch.no_grad():
                p = torch.sigmoid(logits.detach())  # [3B]
                h = self.history["realism"]
                h["step"].append(self.realism_step)
                h["loss"].append(float(bce.item()))
                h["gp"].append(float(gp.item()))
                h["real_prob"].append(float(p[:b].mean()))
                h["fake_prob"].append(float(p[b : 2 * b].mean()))
                h["mismatch_prob"].append(
                    float((p[2 * b :] * differs).sum() / differs.sum().clamp_min(1.0))
                )
        return stop

    def actor_loss(
        self, z_in: torch.Tensor, y_in: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actor's loss on a batch and its three terms.

        Args:
            z_in: actor inputs (prior samples or encodings). # [B, D]
            y_in: requested attributes. # [B, A]
        """
        c = self.config
        z_out = self.actor(z_in, y_in).float()  # [B, D] (float32 under autocast too)
        realism = lcengine.constraint_loss(
            self.realism(z_out, y_in).float(), torch.ones(len(z_in), device=z_out.device)
        )
        attribute = (
            lcengine.constraint_loss(self.attribute(z_out).float(), y_in)
            if c.actor_attribute_weight > 0
            else torch.zeros((), device=z_out.device)
        )
        distance = lcengine.distance_penalty(z_out, z_in, self.sigma_bar)
        loss = realism + c.actor_attribute_weight * attribute + c.lambda_dist * distance
        return loss, {"realism": realism, "attribute": attribute, "distance": distance}

    def _actor_update(self, data: LatentSource) -> None:
        c = self.config
        step = self.actor_step
        gen = self._generator("actor/index", step)
        b, d = self._local(c.batch_size), self.actor.latent_dim
        z_prior = lcengine.standard_normal(
            (b, d), seed=self._seed("actor/prior", step), device=self.device
        )  # [B, D]
        z_real, _, _ = self._real_block(data, "actor/real", step, gen)  # [B, D]
        # Attributes of random rows: at sampling time any request meets any starting point.
        y_in = self._attributes(data, self._indices(data, 2 * b, gen))  # [2B, A]
        z_in = torch.cat([z_prior, z_real])  # [2B, D]
        self.opt_actor.zero_grad(set_to_none=True)
        with self.autocast():
            if self.hand_derived:
                out = actor_step_grads(
                    self.actor, self.realism, self.attribute, z_in, y_in, self.sigma_bar,
                    attribute_weight=c.actor_attribute_weight, lambda_dist=c.lambda_dist,
                    compiled=c.compile_steps,
                )  # fmt: skip
                loss, parts = out.loss, out.parts
                apply_grads(self.actor, out.grads)
            else:
                loss, parts = self.actor_loss(z_in, y_in)
                loss.backward(inputs=list(self.actor.parameters()))
        self._synchronize(self.actor, False)
        self.opt_actor.step()
        self.actor_step += 1
        if step % max(1, c.log_every // c.actor_every) == 0:
            h = self.history["actor"]
            h["step"].append(self.realism_step)
            h["loss"].append(float(loss.item()))
            for k, v in parts.items():
                h[k].append(float(v.item()))

    def train_realism_actor(
        self,
        data: LatentSource,
        until: int,
        *,
        progress: bool = True,
        desc: str = "realism critic + actor",
        callback: Optional[Callable[["ConstraintTrainer"], None]] = None,
        callback_every: int = 0,
        stop_requested: Optional[StopRequested] = None,
    ) -> bool:
        """Alternates realism-critic updates with an actor update every ``actor_every``.

        Args:
            data: training rows (a :class:`~lcengine.method.data.LatentSource`).
            until: target total number of realism-critic updates.
            progress: show a tqdm bar (rate and ETA; the postfix shows the actor's updates).
            desc: its label.
            callback: called with the trainer whenever the total number of realism updates is a
                multiple of ``callback_every`` (checkpoints).
            callback_every: 0 = never.
            stop_requested: polled before each realism update; True stops the loop there.

        Returns:
            True when ``until`` was reached, False when ``stop_requested`` stopped it first.
        """
        c = self.config
        _check_data(data, self.realism.latent_dim, self.realism.num_attributes)
        todo = max(0, until - self.realism_step)
        if todo == 0:
            return True
        self.realism.train()
        self.actor.train()
        bar = _bar(self.realism_step, until, desc, progress)
        while self.realism_step < until:
            stop = stop_requested is not None and stop_requested()
            if stop and self.world == 1:
                break
            stop = self._realism_update(data, stop)
            if self.realism_step % c.actor_every == 0:
                self._actor_update(data)
            bar.update(1)
            if self.realism_step % 50 == 0 and self.history["realism"]["step"]:
                h = self.history["realism"]
                bar.set_postfix(
                    real=f"{h['real_prob'][-1]:.2f}",
                    fake=f"{h['fake_prob'][-1]:.2f}",
                    mis=f"{h['mismatch_prob'][-1]:.2f}",
                    actor=self.actor_step,
                )
            if callback is not None and callback_every and self.realism_step % callback_every == 0:
                callback(self)
            if stop:  # several ranks: every rank stops after the same update
                break
        bar.close()
        return self.realism_step >= until

    # ------------------------------------------------------------------ state
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"realism": self.realism, "attribute": self.attribute, "actor": self.actor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "realism": self.opt_realism,
            "attribute": self.opt_attribute,
            "actor": self.opt_actor,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights (``net.<module>.<param>``) and Adam moments (``opt.<name>.<i>.<key>``)."""
        out: dict[str, torch.Tensor] = {}
        for name, module in self.modules().items():
            for k, v in module.state_dict().items():
                out[f"net.{name}.{k}"] = v.detach().cpu().contiguous().clone()
        for name, opt in self.optimizers().items():
            for i, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    t = v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                    out[f"opt.{name}.{i}.{k}"] = t.detach().cpu().contiguous().clone()
        return out

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor], source: str) -> None:
        """Restores :meth:`state_tensors` (CPU tensors, copied onto the trainer's device); a
        missing or mis-shaped tensor raises ValueError."""
        load_network_tensors(self.modules(), tensors, source)
        for name, opt in self.optimizers().items():
            prefix = f"opt.{name}."
            state: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in tensors.items():
                if k.startswith(prefix):
                    i, _, key = k[len(prefix) :].partition(".")
                    state.setdefault(int(i), {})[key] = v.clone()
            if state:
                sd = opt.state_dict()
                params = [p for g in opt.param_groups for p in g["params"]]
                for i, st in state.items():
                    if i >= len(params) or (
                        "exp_avg" in st and st["exp_avg"].shape != params[i].shape
                    ):
                        raise ValueError(
                            f"{source}: optimizer state {prefix}{i} does not match "
                            "the configured network"
                        )
                sd["state"] = state
                opt.load_state_dict(sd)

    def state_json(self) -> dict:
        return {
            "attribute_step": self.attribute_step,
            "realism_step": self.realism_step,
            "actor_step": self.actor_step,
            "history": self.history,
        }

    def load_state_json(self, d: Mapping[str, Any], source: str) -> None:
        try:
            self.attribute_step = int(d["attribute_step"])
            self.realism_step = int(d["realism_step"])
            self.actor_step = int(d["actor_step"])
            history = d.get("history") or _empty_history()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: bad training state ({exc})") from exc
        base = _empty_history()
        for group, cols in base.items():
            for col in cols:
                cols[col] = list(history.get(group, {}).get(col, []))
        self.history = base


def _bar(start: int, until: int, desc: str, progress: bool) -> tqdm:
    """A tqdm bar over updates ``start..until`` (rate and ETA from the updates made here)."""
    return tqdm(
        total=until,
        initial=start,
        desc=desc,
        unit="step",
        disable=None if progress else True,
        leave=False,
        dynamic_ncols=True,
    )


def _check_data(data: LatentSource, latent_dim: int, num_attributes: int) -> None:
    if not isinstance(data, LatentSource):
        raise TypeError(
            f"data must be a LatentSource (e.g. TrainingData), got {type(data).__name__}"
        )
    if data.latent_dim != latent_dim:
        raise ValueError(
            f"data has latent dimension {data.latent_dim}, the critics expect {latent_dim}"
        )
    if data.num_attributes != num_attributes:
        raise ValueError(
            f"data has {data.num_attributes} attributes, the critics expect {num_attributes}"
        )


__all__ = [
    "ConstraintTrainer",
    "LatentSource",
    "check_autocast",
    "StopRequested",
    "TrainingConfig",
    "TrainingData",
    "fused_adam_available",
    "process_rank",
]
