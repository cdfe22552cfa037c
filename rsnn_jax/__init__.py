"""rsnn_jax: fit recurrent spiking networks to recorded spike trains with sample-and-measure.

Bellec, Wang, Modirshanechi, Brea, Gerstner (NeurIPS 2021), "Fitting summary statistics of
neural data with a differentiable spiking network simulator".
"""

__version__ = "0.1.0"
