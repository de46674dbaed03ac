"""The test configuration itself: strict promotion and fake devices are really in force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def test_strict_dtype_promotion_is_on():
    with pytest.raises(jax.dtypes.TypePromotionError):
        _ = jnp.ones(3, jnp.float32) + jnp.ones(3, jnp.int32)


def test_rank_promotion_raises():
    with pytest.raises(ValueError, match="rank"):
        _ = jnp.ones((2, 3)) + jnp.ones(3)


@pytest.mark.multidevice
def test_fake_cpu_devices(cpu_devices):
    devices = cpu_devices(4)
    assert len({d.id for d in devices}) == 4
    x = jax.device_put(np.arange(8.0, dtype=np.float32), devices[3])
    assert x.devices() == {devices[3]}
