"""Flax stimulus encoders (docs/model.md; paper appendix B).

An encoder is any ``flax.linen.Module`` whose ``__call__`` maps one stimulus clip
``[T + R − 1, H, W]`` to features ``[T, F]``, where ``R = receptive_field`` is the number of
frames that bin t sees (frames t − R + 1 .. t, current frame included). The encoder never
sees future frames. A custom encoder declares ``receptive_field`` as a module attribute
(``receptive_field_of`` assumes 1, i.e. frame-by-frame, when it is absent).

The stimulus is shared by all trials of a repeated movie, so the encoder runs once per time
bin, not once per trial.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def receptive_field_of(encoder: nn.Module) -> int:
    """Frames each bin's features depend on: the clip has ``T + receptive_field − 1`` frames."""
    return int(getattr(encoder, "receptive_field", 1))


def _check_clip(name: str, stimulus: jax.Array, receptive_field: int) -> None:
    if stimulus.ndim != 3:
        raise ValueError(
            f"{name}: stimulus must be one clip [T + {receptive_field - 1}, H, W], "
            f"got shape {list(stimulus.shape)}"
        )
    if stimulus.shape[0] < receptive_field:
        raise ValueError(
            f"{name}: a clip needs at least receptive_field = {receptive_field} frames "
            f"(T + {receptive_field - 1}), got {stimulus.shape[0]}"
        )


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of a "SAME" window on one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def _pool_max(x, window, stride):
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "SAME"
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_same(x: jax.Array, window: int, stride: int) -> jax.Array:
    """Max-pool ``window``×``window``, stride ``stride``, "SAME": [B, H, W, C] → [B, ⌈H/s⌉,
    ⌈W/s⌉, C]; the values and gradients of ``flax.linen.max_pool(..., padding="SAME")``.

    Why a custom VJP: XLA:CPU runs the autodiff gradient (``select_and_scatter``) at a
    fraction of memory speed (about 0.2 s of the V1 CNN's backward on 2 cores, more than the
    whole pooled layer's forward). This one sends each window's cotangent to the first
    maximum of the window in row-major order (the element ``select_and_scatter`` picks), as
    a few fused elementwise passes.
    """
    return _pool_max(x, window, stride)


def _max_pool_fwd(x, window, stride):
    pooled = _pool_max(x, window, stride)
    return pooled, (x, pooled)


def _max_pool_bwd(window, stride, residuals, cotangent):
    x, pooled = residuals
    batch, height, width, channels = x.shape
    out_h, top, bottom = _same_padding(height, window, stride)
    out_w, left, right = _same_padding(width, window, stride)
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-jnp.inf)
    offsets = [(i, j) for i in range(window) for j in range(window)]
    # first[b, o, p, c]: index of the window's first maximum (reversed, so the first wins).
    first = jnp.zeros(pooled.shape, jnp.int32)
    for k in reversed(range(len(offsets))):
        i, j = offsets[k]
        tap = padded[:, i::stride, j::stride][:, :out_h, :out_w]  # [B, out_h, out_w, C]
        first = jnp.where(tap == pooled, k, first)
    # Padded row stride·m + a receives from the taps i ≡ a (mod stride) of windows
    # m − i // stride: gather each residue class as a shifted sum, then interleave the
    # stride² classes (no scatter, no strided writes).
    rows, cols = -(-(height + top + bottom) // stride), -(-(width + left + right) // stride)

    def tap_gradient(k, di, dj):  # [B, rows, cols, C]: tap k's cotangents, shifted
        masked = jnp.where(first == k, cotangent, 0.0)
        return jnp.pad(masked, ((0, 0), (di, rows - out_h - di), (dj, cols - out_w - dj), (0, 0)))

    zeros = jnp.zeros((batch, rows, cols, channels), cotangent.dtype)
    classes = [
        [
            sum(
                (
                    tap_gradient(k, i // stride, j // stride)
                    for k, (i, j) in enumerate(offsets)
                    if i % stride == a and j % stride == b
                ),
                zeros,
            )
            for b in range(stride)
        ]
        for a in range(stride)
    ]
    # [B, rows, s, cols, s, C]: padded row stride·m + a is grid[:, m, a].
    grid = jnp.stack([jnp.stack(row, axis=3) for row in classes], axis=2)
    grad = grid.reshape(batch, rows * stride, cols * stride, channels)
    return (grad[:, top : top + height, left : left + width],)


max_pool_same.defvjp(_max_pool_fwd, _max_pool_bwd)


def _weight_grad_chunks(batch: int) -> int:
    """Batch chunks for a convolution's weight gradient: ~20 images each, at most 32.

    Measured with the V1 CNN on a 2-core CPU (XLA:CPU, 641 images): the weight gradients
    summed over 32 chunks of 20 images take the CNN forward+backward from 5.1 to 3.7 times a
    2048² matmul (one piece: a single large reduction that XLA:CPU runs far below matmul
    speed). Other backends get one chunk (their convolution libraries need no help).
    """
    if jax.default_backend() != "cpu":
        return 1
    return int(min(32, max(1, batch // 20)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv_chunked(conv, lhs, rhs):
    return conv(lhs, rhs)


def _conv_chunked_fwd(conv, lhs, rhs):
    return conv(lhs, rhs), (lhs, rhs)


def _conv_chunked_bwd(conv, residuals, cotangent):
    lhs, rhs = residuals
    _, input_vjp = jax.vjp(lambda a: conv(a, rhs), lhs)
    # The weight gradient sums over the batch: one VJP per batch chunk (axis 0 of lhs and
    # of the output, NHWC), then the sum.
    chunks = _weight_grad_chunks(lhs.shape[0])
    pieces = [
        jax.vjp(lambda k, a=a: conv(a, k), rhs)[1](g)[0]
        for a, g in zip(jnp.array_split(lhs, chunks), jnp.array_split(cotangent, chunks))
    ]
    return input_vjp(cotangent)[0], sum(pieces[1:], pieces[0])


_conv_chunked.defvjp(_conv_chunked_fwd, _conv_chunked_bwd)


def conv_chunked_weight_grad(lhs, rhs, *args, **kwargs) -> jax.Array:
    """``lax.conv_general_dilated`` (same signature, same values and input gradient) whose
    weight gradient is summed over batch chunks (``_weight_grad_chunks``). For
    ``nn.Conv(conv_general_dilated=...)`` with batch-first inputs (flax's layout); no
    ``batch_group_count``."""
    if kwargs.get("batch_group_count", 1) != 1:
        raise ValueError("conv_chunked_weight_grad: batch_group_count is not supported")
    return _conv_chunked(lambda a, k: lax.conv_general_dilated(a, k, *args, **kwargs), lhs, rhs)


# Dense matrices of at most this many entries (16 MB in float32) replace a convolution.
_MAX_DENSE_ENTRIES = 1 << 22


def _dense_conv_matrix(rhs: jax.Array, in_hw: tuple, pads) -> jax.Array:
    """The matrix of a stride-1 convolution: [H·W·C_in, H_o·W_o·C_out] for flattened
    NHWC images, with entry ((i, j, c), (o, p, d)) = rhs[i − o + lo_h, j − p + lo_w, c, d]
    where that tap exists and 0 elsewhere (the zero padding)."""
    kh, kw = rhs.shape[:2]
    (h, w), ((lo_h, hi_h), (lo_w, hi_w)) = in_hw, pads
    tap_i = np.arange(h)[:, None] - np.arange(h + lo_h + hi_h - kh + 1)[None, :] + lo_h
    tap_j = np.arange(w)[:, None] - np.arange(w + lo_w + hi_w - kw + 1)[None, :] + lo_w
    taps = rhs[np.clip(tap_i, 0, kh - 1)][:, :, np.clip(tap_j, 0, kw - 1)]  # [h,ho,w,wo,ci,co]
    inside = ((tap_i >= 0) & (tap_i < kh))[:, :, None, None] & ((tap_j >= 0) & (tap_j < kw))[
        None, None
    ]
    taps = jnp.where(inside[..., None, None], taps, 0.0)
    return taps.transpose(0, 2, 4, 1, 3, 5).reshape(h * w * rhs.shape[2], -1)


def _matmul_pads(lhs, rhs, window_strides, padding, kwargs):
    """The explicit pads ((lo, hi), (lo, hi)) when ``conv_small_as_matmul`` takes the
    matmul path, else None: CPU, a plain stride-1 NHWC/HWIO 2-D convolution, small images."""
    plain = all(
        kwargs.get(name) in (None, 1, (1, 1))
        for name in ("lhs_dilation", "rhs_dilation", "feature_group_count", "batch_group_count")
    )
    if jax.default_backend() != "cpu" or lhs.ndim != 4 or not plain:
        return None
    numbers = kwargs.get("dimension_numbers") or ("NHWC", "HWIO", "NHWC")
    nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if tuple(window_strides) != (1, 1) or (
        lax.conv_dimension_numbers(lhs.shape, rhs.shape, numbers) != nhwc
    ):
        return None
    (h, w), (kh, kw, c_in, c_out) = lhs.shape[1:3], rhs.shape
    pads = (
        lax.padtype_to_pads((h, w), (kh, kw), (1, 1), padding)
        if isinstance(padding, str)
        else padding
    )
    outputs = (h + sum(pads[0]) - kh + 1) * (w + sum(pads[1]) - kw + 1)
    small = h * w <= 2 * kh * kw and h * w * c_in * outputs * c_out <= _MAX_DENSE_ENTRIES
    return pads if small else None


def conv_small_as_matmul(lhs, rhs, window_strides, padding, *, fallback=None, **kwargs):
    """``lax.conv_general_dilated`` (same signature and values) that computes a stride-1
    NHWC/HWIO convolution of *small* images on CPU as one matmul with its dense matrix
    (``_dense_conv_matrix``): the retina's 8×8 images under a 7×7 kernel. There the dense
    product does at most twice the convolution's arithmetic (H·W ≤ 2·k_h·k_w) but runs at
    matmul speed: measured on the 2-core CPU, a 16 → 16 layer on 2 400 8×8 images
    forward+backward 93 ms against 190 ms. Anything else (other layouts, strides,
    dilations, groups, larger images, other backends) goes to ``fallback`` (default
    ``lax.conv_general_dilated``)."""
    pads = _matmul_pads(lhs, rhs, window_strides, padding, kwargs)
    if pads is None:
        return (fallback or lax.conv_general_dilated)(lhs, rhs, window_strides, padding, **kwargs)
    (h, w), (kh, kw) = lhs.shape[1:3], rhs.shape[:2]
    matrix = _dense_conv_matrix(rhs, (h, w), pads)
    out = lhs.reshape(lhs.shape[0], -1) @ matrix
    shape = (h + sum(pads[0]) - kh + 1, w + sum(pads[1]) - kw + 1, rhs.shape[3])
    return out.reshape(lhs.shape[0], *shape)


class SpatialCNN(nn.Module):
    """Conv 7×7 "same" + ReLU → max-pool 3 stride 2 "same", per layer, then flatten.

    Input [B, H, W, C] → [B, F]. With H = W = 27 and (16, 32) filters, F = 7·7·32 = 1568.
    The layers are ``nn.Conv`` (parameters ``Conv_{i}/kernel`` [k, k, C_in, C_out] and
    ``Conv_{i}/bias``) and ``flax.linen.max_pool``'s values and gradients, computed faster on
    CPU: small images' convolutions as one matmul each (``conv_small_as_matmul``), larger
    images' weight gradients in batch chunks (``conv_chunked_weight_grad``), the pooling's
    gradient without ``select_and_scatter`` (``max_pool_same``).
    """

    features: Sequence[int] = (16, 32)
    kernel_size: int = 7
    pool_size: int = 3
    pool_stride: int = 2
    # False under ``jax.vmap`` (the retina's clips): a custom VJP is then batched per
    # example, and per-example weight gradients cost more than the chunks save.
    chunked_weight_grad: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fallback = (
            conv_chunked_weight_grad if self.chunked_weight_grad else lax.conv_general_dilated
        )
        conv = functools.partial(conv_small_as_matmul, fallback=fallback)
        for num_filters in self.features:
            x = nn.Conv(
                num_filters,
                (self.kernel_size, self.kernel_size),
                padding="SAME",
                conv_general_dilated=conv,
            )(x)
            x = nn.relu(x)
            x = max_pool_same(x, self.pool_size, self.pool_stride)
        return x.reshape(x.shape[0], -1)


class V1Encoder(nn.Module):
    """The V1 / synthetic CNN of appendix B.

    The ``num_frames`` most recent frames (t − 9 .. t for 10) are stacked on the channel axis
    in chronological order (channel 0 = oldest), then ``SpatialCNN``.

    Call: stimulus float32 [T + num_frames − 1, H, W] → features float32 [T, F]
    (27×27 frames → F = 1568).
    """

    num_frames: int = 10
    features: Sequence[int] = (16, 32)
    kernel_size: int = 7

    @property
    def receptive_field(self) -> int:
        return self.num_frames

    @nn.compact
    def __call__(self, stimulus: jax.Array) -> jax.Array:
        _check_clip("V1Encoder", stimulus, self.num_frames)
        num_bins = stimulus.shape[0] - self.num_frames + 1
        # [T, H, W, num_frames]: channel c of bin t is frame t + c of the clip, i.e. frame
        # t − (num_frames − 1) + c in the bin's own time.
        stacked = jnp.stack([stimulus[c : c + num_bins] for c in range(self.num_frames)], axis=-1)
        return SpatialCNN(self.features, self.kernel_size)(stacked)


def raised_cosine_temporal_init(key, shape, dtype=jnp.float32) -> jax.Array:
    """A smooth temporal filter bank: raised-cosine bumps, evenly spaced in log-lag.

    The classic GLM basis of retinal temporal filters (Pillow et al., Nature 2008): narrow
    bumps at short lags, wide at long lags, which together span smooth biphasic filters. As a
    start for the learned filters it replaces white-noise taps that carry no temporal
    structure. Each filter has unit L2 norm (the norm of a lecun-normal filter of this size).

    Args:
      key: unused (the basis is deterministic), kept for the Flax initialiser signature.
      shape: the temporal Conv kernel's (taps R, 1, filters); tap k has lag R − 1 − k.
    """
    del key
    taps, _, num_filters = shape
    offset = 10.0  # bins: sets how fast the bumps widen with lag
    lag = np.arange(taps)[::-1]  # tap k → lag R − 1 − k
    warped = np.log(lag + offset)
    centres = np.linspace(np.log(offset), np.log(0.8 * taps + offset), num_filters)
    spacing = centres[1] - centres[0] if num_filters > 1 else warped.max() - warped.min()
    phase = np.clip((warped[:, None] - centres) * np.pi / (2 * spacing), -np.pi, np.pi)
    bumps = 0.5 * (1 + np.cos(phase))
    bumps /= np.maximum(np.linalg.norm(bumps, axis=0), 1e-12)
    return jnp.asarray(bumps[:, None, :], dtype)


class RetinaEncoder(nn.Module):
    """The retina encoder of appendix B: a causal temporal convolution, then ``SpatialCNN``.

    Layout: each pixel's time series goes through the same temporal filter bank
    (``temporal_filters`` filters of ``temporal_kernel`` taps, "VALID" padding on a clip that
    carries ``temporal_kernel − 1`` frames of past context, so bin t sees frames
    t − temporal_kernel + 1 .. t and nothing later). The temporal stage is linear (no
    nonlinearity: it acts as the temporal half of a separable filter). Its output, one
    ``[H, W, temporal_filters]`` image per bin, goes through ``SpatialCNN`` (conv 7×7 + ReLU,
    max-pool 3/2, twice, then flatten): F = ceil(H/4)·ceil(W/4)·32.

    The temporal filters start as ``raised_cosine_temporal_init`` (``smooth_temporal_init``;
    False: Flax's lecun-normal white-noise taps).

    Call: stimulus float32 [T + temporal_kernel − 1, H, W] → features float32 [T, F].
    """

    temporal_kernel: int = 300
    temporal_filters: int = 16
    smooth_temporal_init: bool = True
    features: Sequence[int] = (16, 32)
    kernel_size: int = 7

    @property
    def receptive_field(self) -> int:
        return self.temporal_kernel

    @nn.compact
    def __call__(self, stimulus: jax.Array) -> jax.Array:
        _check_clip("RetinaEncoder", stimulus, self.temporal_kernel)
        frames, height, width = stimulus.shape
        num_bins = frames - self.temporal_kernel + 1
        pixels = stimulus.reshape(frames, height * width).T[..., None]  # [H·W, T', 1]
        init = (
            raised_cosine_temporal_init
            if self.smooth_temporal_init
            else nn.initializers.lecun_normal()
        )
        filtered = nn.Conv(
            self.temporal_filters,
            (self.temporal_kernel,),
            padding="VALID",
            kernel_init=init,
            name="temporal",
        )(pixels)  # [H·W, T, filters]
        images = filtered.reshape(height, width, num_bins, self.temporal_filters)
        images = images.transpose(2, 0, 1, 3)  # [T, H, W, filters]
        # Encoded once per clip under vmap (``model.encode``): plain convolution gradients.
        return SpatialCNN(self.features, self.kernel_size, chunked_weight_grad=False)(images)
