"""Shared NumPy oracles for the tests (written from the model equations of docs/model.md,
independent of the package)."""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_simulate(
    input_weights,
    recurrent_official,
    bias,
    features,
    noise,
    *,
    num_visible,
    threshold=0.4,
    temperature=1.0,
    recorded=None,
    clamp_until=None,
    initial_history=None,
):
    """The network of docs/model.md as a plain loop, official layout W[post, pre, slot] (slot D-1 =
    delay 1).

    The history buffer is chronological like the official one: buffer[:, -1] is the last bin.
    """
    n, _, d = recurrent_official.shape
    num_bins = features.shape[0]
    buffer = np.zeros((n, d)) if initial_history is None else np.array(initial_history, float).T
    if buffer.shape[0] < n:  # visible-only history: hidden neurons start silent
        buffer = np.concatenate([buffer, np.zeros((n - buffer.shape[0], d))])
    if recorded is not None and clamp_until is None:
        clamp_until = num_bins
    spikes, logits = np.zeros((num_bins, n)), np.zeros((num_bins, n))
    for t in range(num_bins):
        u = features[t] @ input_weights + bias
        for post in range(n):
            for pre in range(n):
                for slot in range(d):
                    u[post] += recurrent_official[post, pre, slot] * buffer[pre, slot]
        scaled = (u - threshold) / threshold
        logits[t] = temperature * scaled
        z = (noise[t] < sigmoid(temperature * scaled)).astype(float)
        if recorded is not None and t < clamp_until:
            z[:num_visible] = recorded[t]
        spikes[t] = z
        buffer = np.concatenate([buffer[:, 1:], z[:, None]], axis=1)
    return spikes, logits
