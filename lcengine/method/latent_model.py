# SPDX-License-Identifier: Apache-2.0
"""Bring-your-own generative model: the :class:`LatentModel` wrapper and ``sigma_bar``.

The method needs ``decode(z) -> x`` of a model with a standard-normal prior on its latent, and,
for fitting on labelled data and for transforms, ``encode(x) -> (mu, logvar)``. Three forms:

* an encoder/decoder pair (a VAE): :meth:`LatentModel.from_module`,
  :meth:`LatentModel.from_callables`;
* a decoder only (a GAN generator): :meth:`LatentModel.from_decoder`; :meth:`LatentModel.encode`
  raises :class:`EncoderUnavailableError`;
* spatial latents ``[C, H, W]`` (any of the above with ``latent_shape``): the method sees flat
  rows of ``D = prod(latent_shape)`` (C order, ``z.reshape(B, -1)``), the user's functions see
  ``[B, *latent_shape]``; the wrapper reshapes at the boundary.

:class:`LatentModel` validates every call (shapes, finiteness) and gives the training-set
average encoder scale ``sigma_bar`` through :func:`compute_sigma_bar`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from lcengine.validation import check_finite_tensor, check_int

ArrayLike = Union[np.ndarray, torch.Tensor]

ENCODER_RETURNS = ("logvar", "scale")


class EncoderUnavailableError(RuntimeError):
    """An encoder was needed (encoding data, a transform) but the model is decoder-only."""


def _shape_tuple(value: Sequence[int], name: str) -> tuple[int, ...]:
    """A non-empty tuple of positive ints (TypeError / ValueError naming ``name``)."""
    try:
        shape = tuple(int(as_int(s)) for s in value)
    except TypeError as e:
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}") from e
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"{name} must be non-empty positive sizes, got {value!r}")
    return shape


def _latent_sizes(
    latent_dim: Optional[int], latent_shape: Optional[Sequence[int]]
) -> tuple[int, tuple[int, ...]]:
    """``(D, latent_shape)`` from either or both (they must agree: ``D = prod(latent_shape)``)."""
    if latent_shape is None:
        if latent_dim is None:
            raise ValueError("latent_dim is required (or latent_shape)")
        d = check_int("latent_dim", as_int(latent_dim), minimum=1)
        return int(d), (int(d),)
    shape = _shape_tuple(latent_shape, "latent_shape")
    d = int(np.prod(shape))
    if latent_dim is not None and check_int("latent_dim", as_int(latent_dim), minimum=1) != d:
        raise ValueError(
            f"latent_dim {latent_dim} differs from prod(latent_shape) = {d} "
            f"(latent_shape={list(shape)})"
        )
    return d, shape


def as_int(value):
    """numpy integers as Python ints (they pass the int checks of lcengine.validation)."""
    return int(value) if isinstance(value, np.integer) else value


def to_tensor(x: ArrayLike, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A numpy array or real tensor as a tensor of ``dtype`` on ``device`` (TypeError otherwise)."""
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{name} must hold numbers, got numpy dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not (
        x.is_floating_point()
        or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    ):
        raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
    return x.to(device=device, dtype=dtype)


class LatentModel:
    """A generative model with a Gaussian latent, seen through ``encode`` and ``decode``.

    Build it with :meth:`from_module`, :meth:`from_callables` or (no encoder)
    :meth:`from_decoder`. Every call is validated: inputs must be ``[B, *data_shape]``, latents
    ``[B, latent_dim]`` and finite, and the user's functions must return what they promise (a
    wrong shape raises a ValueError naming ``encode`` or ``decode``). Calls are not wrapped in
    ``no_grad``: gradients flow through ``decode`` when the caller wants them;
    :meth:`encode_dataset` is the no-grad batch path.

    Latents of the method are always flat rows ``[B, D]``. With ``latent_shape`` (e.g.
    ``(C, H, W)``), ``D = prod(latent_shape)``: :meth:`decode` hands the user's function
    ``z.reshape(B, *latent_shape)`` and :meth:`encode` flattens the user's ``mu``/``logvar``
    ``[B, *latent_shape]`` to ``[B, D]`` (C order; :meth:`unflatten` / :meth:`flatten` convert
    the method's latents).

    Attributes:
        latent_dim: D (``prod(latent_shape)``).
        latent_shape: shape of one latent as the user's functions see it; ``(D,)`` for flat
            latents.
        data_shape: shape of one data item, e.g. ``(28, 28)``.
        has_encoder: False for a decoder-only model (:meth:`encode` raises
            :class:`EncoderUnavailableError`).
        device, dtype: where and in which float type inputs are handed to the model: every
            call moves its inputs there (``encode``/``decode`` accept tensors on any device and
            numpy arrays) and returns the model's outputs where the model made them.
    """

    def __init__(
        self,
        encode_fn: Optional[Callable],
        decode_fn: Callable,
        latent_dim: Optional[int],
        *,
        data_shape: Sequence[int],
        encoder_returns: str = "logvar",
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        module: Optional[nn.Module] = None,
        latent_shape: Optional[Sequence[int]] = None,
    ):
        if (encode_fn is not None and not callable(encode_fn)) or not callable(decode_fn):
            raise TypeError("encode and decode must be callables")
        latent_dim, latent_shape = _latent_sizes(latent_dim, latent_shape)
        if encoder_returns not in ENCODER_RETURNS:
            raise ValueError(
                f"encoder_returns must be one of {ENCODER_RETURNS}, got {encoder_returns!r}"
            )
        shape = _shape_tuple(data_shape, "data_shape")
        self._encode_fn = encode_fn
        self._decode_fn = decode_fn
        self.latent_dim = int(latent_dim)
        self.latent_shape = latent_shape
        self.data_shape = shape
        self.encoder_returns = encoder_returns
        self.device = torch.device(device)
        self.dtype = dtype
        self.module = module

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        latent_dim: Optional[int] = None,
        *,
        data_shape: Optional[Sequence[int]] = None,
        encoder_returns: str = "logvar",
        latent_shape: Optional[Sequence[int]] = None,
    ) -> "LatentModel":
        """Wraps a module with ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x``.

        The module is switched to ``eval()`` mode (dropout/batch-norm must not act while
        encoding a data set or decoding samples); its parameters are not modified.

        Args:
            module: the model. ``latent_dim``, ``latent_shape`` and ``data_shape`` are read from
                attributes of the same names when not given; if ``data_shape`` is neither given
                nor an attribute, it is inferred by decoding one zero latent.
            latent_dim: D, overriding ``module.latent_dim`` (may be left out with
                ``latent_shape``).
            data_shape: shape of one data item, overriding ``module.data_shape``.
            encoder_returns: ``"logvar"`` if ``encode`` returns ``(mu, logvar)``, ``"scale"`` if
                it returns ``(mu, sigma)``.
            latent_shape: shape of one latent as ``encode``/``decode`` see it, e.g.
                ``(C, H, W)``, overriding ``module.latent_shape``.
        """
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        for name in ("encode", "decode"):
            if not callable(getattr(module, name, None)):
                raise TypeError(
                    f"module {type(module).__name__} has no callable .{name}(); "
                    "wrap plain functions with LatentModel.from_callables "
                    "(or a decoder alone with LatentModel.from_decoder)"
                )
        return cls._wrap_module(
            module,
            module.encode,
            module.decode,
            latent_dim,
            data_shape=data_shape,
            encoder_returns=encoder_returns,
            latent_shape=latent_shape,
        )

    @classmethod
    def _wrap_module(
        cls,
        module: nn.Module,
        encode: Optional[Callable],
        decode: Callable,
        latent_dim: Optional[int],
        *,
        data_shape: Optional[Sequence[int]],
        encoder_returns: str,
        latent_shape: Optional[Sequence[int]],
    ) -> "LatentModel":
        """A module's model: sizes from arguments, else the module's attributes, ``data_shape``
        else from one decoded zero latent; device and dtype of its first parameter."""
        name = type(module).__name__
        if latent_shape is None:
            latent_shape = getattr(module, "latent_shape", None)
        if latent_dim is None:
            latent_dim = getattr(module, "latent_dim", None)
            if latent_dim is None and latent_shape is None:
                raise ValueError(
                    f"module {name} has no latent_dim attribute; pass latent_dim explicitly"
                )
        latent_dim, latent_shape = _latent_sizes(latent_dim, latent_shape)
        module.eval()
        param = next(iter(module.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        if data_shape is None:
            data_shape = getattr(module, "data_shape", None)
        if data_shape is None:
            with torch.no_grad():
                out = decode(torch.zeros((1,) + latent_shape, device=device, dtype=dtype))
            if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 1:
                raise ValueError(
                    f"{name}.decode must return a tensor "
                    f"[B, *data_shape]; on one latent it returned "
                    f"{getattr(out, 'shape', type(out).__name__)}"
                )
            data_shape = tuple(out.shape[1:])
        return cls(
            encode,
            decode,
            latent_dim,
            data_shape=data_shape,
            encoder_returns=encoder_returns,
            device=device,
            dtype=dtype,
            module=module,
            latent_shape=latent_shape,
        )

    @classmethod
    def from_callables(
        cls,
        encode: Callable,
        decode: Callable,
        latent_dim: int,
        *,
        data_shape: Sequence[int],
        encoder_returns: str = "logvar",
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        latent_shape: Optional[Sequence[int]] = None,
    ) -> "LatentModel":
        """Wraps plain functions ``encode(x) -> (mu, logvar | sigma)`` and ``decode(z) -> x``.

        Args:
            encode: ``x [B, *data_shape] -> (mu [B, *latent_shape], logvar [B, *latent_shape])``,
                or ``(mu, sigma)`` with ``encoder_returns="scale"``.
            decode: ``z [B, *latent_shape] -> x [B, *data_shape]``.
            latent_dim: D; None with ``latent_shape`` (then ``prod(latent_shape)``).
            data_shape: shape of one data item.
            encoder_returns: ``"logvar"`` or ``"scale"``.
            device, dtype: where inputs are placed before calling the functions.
            latent_shape: shape of one latent as the functions see it (default ``(D,)``).
        """
        return cls(
            encode,
            decode,
            latent_dim,
            data_shape=data_shape,
            encoder_returns=encoder_returns,
            device=device,
            dtype=dtype,
            latent_shape=latent_shape,
        )

    @classmethod
    def from_decoder(
        cls,
        decode: Union[nn.Module, Callable],
        latent_dim: Optional[int] = None,
        *,
        data_shape: Optional[Sequence[int]] = None,
        latent_shape: Optional[Sequence[int]] = None,
        device: Union[str, torch.device, None] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> "LatentModel":
        """Wraps a decoder alone, ``decode(z) -> x`` with prior ``z ~ N(0, I)`` (a GAN
        generator). :meth:`encode` raises :class:`EncoderUnavailableError`; such a model is
        fitted on labelled prior samples
        (:meth:`LatentConstraints.fit_decoder_only
        <lcengine.method.constraints.LatentConstraints.fit_decoder_only>`) and has no
        transforms.

        Args:
            decode: an ``nn.Module`` (its ``decode`` method if it has one, else the module
                itself is called; switched to ``eval()``; sizes may come from its attributes
                ``latent_dim``, ``latent_shape``, ``data_shape``; device and dtype are those of
                its first parameter) or a callable. ``z [B, *latent_shape] -> x [B, *data_shape]``.
            latent_dim: D (may be left out with ``latent_shape``).
            data_shape: shape of one data item; inferred by decoding one zero latent when not
                given.
            latent_shape: shape of one latent as ``decode`` sees it (default ``(D,)``).
            device, dtype: for a callable: where inputs are placed (default CPU, float32).
        """
        if isinstance(decode, nn.Module):
            fn = getattr(decode, "decode", None)
            fn = fn if callable(fn) else decode
            model = cls._wrap_module(
                decode,
                None,
                fn,
                latent_dim,
                data_shape=data_shape,
                encoder_returns="logvar",
                latent_shape=latent_shape,
            )
            if device is not None or dtype is not None:
                model.device = torch.device(device) if device is not None else model.device
                model.dtype = dtype if dtype is not None else model.dtype
            return model
        if not callable(decode):
            raise TypeError(
                f"decode must be an nn.Module or a callable, got {type(decode).__name__}"
            )
        latent_dim, latent_shape = _latent_sizes(latent_dim, latent_shape)
        device = torch.device(device if device is not None else "cpu")
        dtype = dtype if dtype is not None else torch.float32
        if data_shape is None:
            with torch.no_grad():
                out = decode(torch.zeros((1,) + latent_shape, device=device, dtype=dtype))
            if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 1:
                raise ValueError(
                    "decode must return a tensor [B, *data_shape]; on one latent it returned "
                    f"{getattr(out, 'shape', type(out).__name__)} (or pass data_shape)"
                )
            data_shape = tuple(out.shape[1:])
        return cls(
            None,
            decode,
            latent_dim,
            data_shape=data_shape,
            device=device,
            dtype=dtype,
            latent_shape=latent_shape,
        )

    @property
    def has_encoder(self) -> bool:
        """The model can encode data (False for :meth:`from_decoder` models)."""
        return self._encode_fn is not None

    def require_encoder(self, what: str) -> None:
        """Raises :class:`EncoderUnavailableError` naming ``what`` for a decoder-only model."""
        if self._encode_fn is None:
            raise EncoderUnavailableError(
                f"{what} needs an encoder, but this model is decoder-only "
                "(LatentModel.from_decoder); fit it on labelled prior samples with "
                "LatentConstraints.fit_decoder_only, sample with method 'actor' or 'optimize'"
            )

    def flatten(self, z: torch.Tensor) -> torch.Tensor:
        """Latents as the method's flat rows (C order). # [B, *latent_shape] -> [B, D]"""
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"z must have shape [B, {', '.join(map(str, self.latent_shape))}], "
                f"got {list(z.shape)}"
            )
        return z.reshape(z.shape[0], self.latent_dim)

    def unflatten(self, z: torch.Tensor) -> torch.Tensor:
        """The method's flat rows as the user's latents. # [B, D] -> [B, *latent_shape]"""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape [B, {self.latent_dim}], got {list(z.shape)}")
        return z.reshape((z.shape[0],) + self.latent_shape)

    # -- calls --------------------------------------------------------------------------------

    def _check_x(self, x: ArrayLike) -> torch.Tensor:
        x = to_tensor(x, "x", self.device, self.dtype)
        if x.ndim != 1 + len(self.data_shape) or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.data_shape))}], "
                f"got {list(x.shape)}"
            )
        return check_finite_tensor("x", x)

    def check_latents(self, z: ArrayLike, name: str = "z") -> torch.Tensor:
        """Converts and validates latents: a finite ``[B, latent_dim]`` tensor on the model."""
        z = to_tensor(z, name, self.device, self.dtype)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{name} must have shape [B, {self.latent_dim}], got {list(z.shape)}")
        return check_finite_tensor(name, z)

    def encode(self, x: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of a batch.

        Args:
            x: data. # [B, *data_shape]

        Returns:
            ``(mu, logvar)`` as flat rows (the user's ``[B, *latent_shape]`` reshaped).
            # [B, D], [B, D]

        Raises:
            EncoderUnavailableError: a decoder-only model.
        """
        self.require_encoder("encode")
        x = self._check_x(x)  # [B, *data_shape]
        out = self._encode_fn(x)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(
                f"encode must return a pair (mu, logvar) or (mu, sigma), got {type(out).__name__}"
            )
        mu, second = out
        expect = (x.shape[0],) + self.latent_shape
        for name, t in (("mu", mu), (self.encoder_returns, second)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != expect:
                raise ValueError(
                    f"encode returned {name} of shape "
                    f"{list(getattr(t, 'shape', [])) or type(t).__name__}, "
                    f"expected [{', '.join(map(str, expect))}]"
                )
            if not torch.isfinite(t).all():
                raise ValueError(f"encode returned {name} with NaN or infinite values")
        mu = mu.reshape(x.shape[0], self.latent_dim)  # [B, D]
        second = second.reshape(x.shape[0], self.latent_dim)  # [B, D]
        if self.encoder_returns == "scale":
            if (second <= 0).any():
                raise ValueError(
                    "encode returned a non-positive scale sigma; with "
                    "encoder_returns='scale' it must return (mu, sigma > 0)"
                )
            logvar = 2.0 * torch.log(second)  # [B, D]
        else:
            logvar = second  # [B, D]
        return mu, logvar

    def decode(self, z: ArrayLike) -> torch.Tensor:
        """Decodes latents.

        Args:
            z: latents, flat rows; the user's function gets them as ``[B, *latent_shape]``.
                # [B, D]

        Returns:
            Decoded data. # [B, *data_shape]
        """
        z = self.check_latents(z)  # [B, D]
        x = self._decode_fn(z.reshape((z.shape[0],) + self.latent_shape))  # [B, *latent_shape]
        expect = (z.shape[0],) + self.data_shape
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != expect:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"decode returned {got}, expected shape {list(expect)} "
                f"([B, *data_shape] with data_shape={list(self.data_shape)})"
            )
        return x

    @torch.no_grad()
    def encode_dataset(
        self, x: ArrayLike, batch_size: int = 512
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode` of a whole data set in batches, without gradients.

        Args:
            x: data. # [N, *data_shape]

        Returns:
            ``(mu, logvar)`` on the model's device. # [N, D], [N, D]

        Raises:
            EncoderUnavailableError: a decoder-only model.
        """
        self.require_encoder("encode_dataset")
        check_int("batch_size", as_int(batch_size), minimum=1)
        n = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 0
        if n == 0:
            raise ValueError("x must hold at least one item")
        mus, lvs = [], []
        for i in range(0, n, batch_size):
            mu, lv = self.encode(x[i : i + batch_size])
            mus.append(mu.detach())
            lvs.append(lv.detach())
        return torch.cat(mus), torch.cat(lvs)

    @torch.no_grad()
    def decode_batched(self, z: ArrayLike, batch_size: int = 512) -> torch.Tensor:
        """:meth:`decode` in batches without gradients. # [N, D] -> [N, *data_shape]"""
        check_int("batch_size", as_int(batch_size), minimum=1)
        z = self.check_latents(z)
        return torch.cat(
            [self.decode(z[i : i + batch_size]).detach() for i in range(0, z.shape[0], batch_size)]
        )

    def __repr__(self) -> str:
        src = type(self.module).__name__ if self.module is not None else "callables"
        shape = f", latent_shape={self.latent_shape}" if len(self.latent_shape) > 1 else ""
        enc = f"encoder_returns={self.encoder_returns!r}" if self.has_encoder else "decoder-only"
        return (
            f"LatentModel({src}, latent_dim={self.latent_dim}{shape}, "
            f"data_shape={self.data_shape}, {enc})"
        )


def sigma_bar_from_logvar(logvar: ArrayLike) -> torch.Tensor:
    """Per-dimension mean encoder scale ``mean_n exp(logvar / 2)``. # [N, D] -> [D]"""
    lv = logvar if isinstance(logvar, torch.Tensor) else torch.as_tensor(np.asarray(logvar))
    if lv.ndim != 2 or lv.shape[0] < 1:
        raise ValueError(f"logvar must have shape [N, D] with N >= 1, got {list(lv.shape)}")
    check_finite_tensor("logvar", lv)
    return torch.exp(0.5 * lv.to(torch.float32)).mean(0)  # [D]


def compute_sigma_bar(model: LatentModel, x: ArrayLike, batch_size: int = 512) -> torch.Tensor:
    """sigma_bar: the training-set average encoder scale per latent dimension.

    It sets the length scale of the distance penalty ``log(1 + (z' - z)^2) / sigma_bar^2``: a
    move of one typical posterior width costs about the same in every dimension.

    Args:
        model: the wrapped model.
        x: training data. # [N, *data_shape]

    Returns:
        ``mean_n exp(logvar_n / 2)`` (accumulated in float64 over batches, so the data set's
        encodings are never held at once), float32 on the model's device. # [D]
    """
    if not isinstance(model, LatentModel):
        raise TypeError(f"model must be a LatentModel, got {type(model).__name__}")
    model.require_encoder("compute_sigma_bar")
    check_int("batch_size", as_int(batch_size), minimum=1)
    n = int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 0
    if n == 0:
        raise ValueError("x must hold at least one item")
    total = torch.zeros(model.latent_dim, dtype=torch.float64, device=model.device)  # [D]
    with torch.no_grad():
        for i in range(0, n, batch_size):  # one batch of encodings in memory at a time
            _, logvar = model.encode(x[i : i + batch_size])  # [B, D]
            total += torch.exp(0.5 * logvar.to(torch.float64)).sum(0)
    return (total / n).to(torch.float32)
