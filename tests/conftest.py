import jax
import pytest

jax.config.update("jax_platforms", "cpu")


@pytest.fixture
def key():
    return jax.random.key(0)
