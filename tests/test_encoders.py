import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsnn_jax import encoders


def test_v1_encoder_shape_and_layer_list():
    encoder = encoders.V1Encoder()
    clip = jnp.ones((5 + 9, 27, 27))
    variables = encoder.init(jax.random.key(0), clip)
    features = encoder.apply(variables, clip)
    assert features.shape == (5, 1568)  # 7·7·32
    kernels = [leaf.shape for leaf in jax.tree.leaves(variables) if leaf.ndim == 4]
    assert kernels == [(7, 7, 10, 16), (7, 7, 16, 32)]


def test_v1_encoder_bin_sees_its_ten_frames_only():
    encoder = encoders.V1Encoder()
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(6 + 9, 27, 27)).astype(np.float32)
    variables = encoder.init(jax.random.key(0), clip)
    base = np.asarray(encoder.apply(variables, clip))
    changed = clip.copy()
    changed[12] += 1.0  # frame 12 is seen by bins 3..5 (bin t sees frames t..t+9)
    diff = np.abs(np.asarray(encoder.apply(variables, changed)) - base).max(axis=1)
    assert np.all(diff[:3] == 0) and np.all(diff[3:] > 0)


def test_v1_channel_order_is_chronological():
    # Bin 0's features equal the CNN applied to frames 0..9 stacked on channels in order.
    encoder = encoders.V1Encoder()
    clip = np.random.default_rng(1).normal(size=(10, 27, 27)).astype(np.float32)
    variables = encoder.init(jax.random.key(0), clip)
    stacked = np.moveaxis(clip, 0, -1)[None]  # [1, 27, 27, 10]
    direct = encoders.SpatialCNN().apply({"params": variables["params"]["SpatialCNN_0"]}, stacked)
    np.testing.assert_allclose(encoder.apply(variables, clip), direct, rtol=1e-5, atol=1e-6)


def test_retina_encoder_is_causal_with_300_bin_receptive_field():
    encoder = encoders.RetinaEncoder()
    num_bins = 8
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(num_bins + 299, 8, 8)).astype(np.float32)
    variables = encoder.init(jax.random.key(0), clip)
    base = np.asarray(encoder.apply(variables, clip))
    assert base.shape == (num_bins, 2 * 2 * 32)
    # Frame index f of the clip is seen by bins t with t <= f <= t + 299.
    for frame, seen_by in [(0, [0]), (299, list(range(num_bins))), (303, [4, 5, 6, 7])]:
        changed = clip.copy()
        changed[frame] += 1.0
        diff = np.abs(np.asarray(encoder.apply(variables, changed)) - base).max(axis=1)
        np.testing.assert_array_equal(np.flatnonzero(diff > 0), seen_by)
    assert encoders.receptive_field_of(encoder) == 300


def test_retina_temporal_kernel_shape():
    encoder = encoders.RetinaEncoder(temporal_kernel=300, temporal_filters=16)
    variables = encoder.init(jax.random.key(0), jnp.zeros((305, 6, 6)))
    assert variables["params"]["temporal"]["kernel"].shape == (300, 1, 16)


def test_short_clip_is_a_clear_error():
    encoder = encoders.V1Encoder()
    with pytest.raises(ValueError, match="receptive_field = 10"):
        encoder.init(jax.random.key(0), jnp.zeros((5, 27, 27)))


def test_custom_encoder_defaults_to_frame_by_frame():
    class Mean(nn.Module):
        @nn.compact
        def __call__(self, stimulus):
            return nn.Dense(3)(stimulus.reshape(stimulus.shape[0], -1))

    assert encoders.receptive_field_of(Mean()) == 1


def test_raised_cosine_temporal_basis():
    kernel = np.asarray(encoders.raised_cosine_temporal_init(None, (300, 1, 8)))[:, 0, :]
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-6)
    assert np.all(kernel >= 0)
    # Tap k has lag 299 − k: the first bump peaks at lag 0 (the last tap), later bumps at
    # longer lags, and widen with lag.
    peak_lags = 299 - np.argmax(kernel, axis=0)
    assert peak_lags[0] == 0 and np.all(np.diff(peak_lags) > 0)
    widths = (kernel > 0.5 * kernel.max(0)).sum(0)
    assert np.all(np.diff(widths) >= 0) and widths[-1] > widths[0]
    encoder = encoders.RetinaEncoder(temporal_kernel=300, temporal_filters=8)
    variables = encoder.init(jax.random.key(0), jnp.zeros((301, 6, 6)))
    np.testing.assert_array_equal(variables["params"]["temporal"]["kernel"][:, 0, :], kernel)


@pytest.mark.parametrize("size,window,stride", [(27, 3, 2), (14, 3, 2), (9, 2, 2), (8, 3, 1)])
def test_max_pool_same_equals_flax_with_gradients(size, window, stride):
    # Values, and gradients including ties (ReLU zeros and repeated positive values): the
    # cotangent goes to the window's first maximum, as select_and_scatter sends it.
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(3, size, size + 1, 2)), 0).astype(np.float32)
    x[:, 2, 3] = x[:, 2, 4]

    def flax_pool(x):
        return nn.max_pool(x, (window, window), strides=(stride, stride), padding="SAME")

    def ours(x):
        return encoders.max_pool_same(x, window, stride)

    expected, flax_vjp = jax.vjp(flax_pool, jnp.asarray(x))
    actual, our_vjp = jax.vjp(ours, jnp.asarray(x))
    np.testing.assert_array_equal(actual, expected)
    cotangent = jnp.asarray(rng.normal(size=expected.shape).astype(np.float32))
    np.testing.assert_allclose(our_vjp(cotangent)[0], flax_vjp(cotangent)[0], atol=1e-6)


class _FlaxSpatialCNN(nn.Module):
    """The reference: SpatialCNN written with flax's own conv and max-pool."""

    @nn.compact
    def __call__(self, x):
        for num_filters in (4, 8):
            x = nn.Conv(num_filters, (7, 7), padding="SAME")(x)
            x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding="SAME")
        return x.reshape(x.shape[0], -1)


def test_spatial_cnn_equals_flax_layers_with_gradients():
    # 45 images: the weight gradients are summed over batch chunks (2 on CPU).
    x = jnp.asarray(np.random.default_rng(0).normal(size=(45, 9, 9, 3)).astype(np.float32))
    ours = encoders.SpatialCNN(features=(4, 8))
    variables = ours.init(jax.random.key(0), x)
    reference = _FlaxSpatialCNN().init(jax.random.key(0), x)
    jax.tree.map(np.testing.assert_array_equal, variables, reference)  # same init, same tree
    out, our_vjp = jax.vjp(lambda v, x: ours.apply(v, x), variables, x)
    expected, ref_vjp = jax.vjp(lambda v, x: _FlaxSpatialCNN().apply(v, x), variables, x)
    # 9×9 images: on CPU both layers run as matmuls (conv_small_as_matmul), float32 round-off.
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=out.shape).astype(np.float32))
    for got, want in zip(jax.tree.leaves(our_vjp(cotangent)), jax.tree.leaves(ref_vjp(cotangent))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


_NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((2, 1), (0, 3))])
def test_small_convolution_as_matmul_equals_lax_with_gradients(padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(5, 8, 8, 3)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(7, 7, 3, 4)).astype(np.float32))

    def lax_conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=_NHWC)

    def ours(x, k):
        return encoders.conv_small_as_matmul(x, k, (1, 1), padding, dimension_numbers=_NHWC)

    out, our_vjp = jax.vjp(ours, x, k)
    expected, ref_vjp = jax.vjp(lax_conv, x, k)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    cotangent = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
    for got, want in zip(our_vjp(cotangent), ref_vjp(cotangent)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # The dense matrix is what ran: its product reproduces the output (not lax's fallback).
    pads = (
        jax.lax.padtype_to_pads((8, 8), (7, 7), (1, 1), padding)
        if isinstance(padding, str)
        else padding
    )
    matrix = encoders._dense_conv_matrix(k, (8, 8), pads)
    np.testing.assert_array_equal(out.reshape(5, -1), x.reshape(5, -1) @ matrix)


def test_large_or_strided_convolutions_fall_back_to_lax():
    rng = np.random.default_rng(1)
    k = jnp.asarray(rng.normal(size=(7, 7, 3, 4)).astype(np.float32))
    for x, strides in (
        (rng.normal(size=(2, 27, 27, 3)), (1, 1)),
        (rng.normal(size=(2, 8, 8, 3)), (2, 2)),
    ):
        x = jnp.asarray(x.astype(np.float32))
        out = encoders.conv_small_as_matmul(x, k, strides, "SAME", dimension_numbers=_NHWC)
        expected = jax.lax.conv_general_dilated(x, k, strides, "SAME", dimension_numbers=_NHWC)
        np.testing.assert_array_equal(out, expected)
