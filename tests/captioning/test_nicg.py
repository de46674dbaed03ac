"""NICGSlowDown: the loss, the PGD bounds, and captions the attack keeps from ending."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import defenses
from mexjax.attacks import slowdown

EOS = 2


def test_eos_loss_counts_the_steps_decoding_runs():
    logits = jax.random.normal(jax.random.key(0), (3, 5, 6))
    logits = logits.at[0, 2, EOS].set(50.0).at[0, :2, EOS].set(-50.0)  # caption 0 ends at step 2
    logprob = np.asarray(jax.nn.log_softmax(logits, axis=-1))[..., EOS]
    z = np.asarray(logits)
    ran = np.zeros((3, 5))
    for row in range(3):  # the steps greedy decoding runs: up to and including the first <eos>
        for t in range(5):
            ran[row, t] = 1
            if int(np.argmax(z[row, t])) == EOS:
                break
    assert ran[0].tolist() == [1, 1, 1, 0, 0]
    np.testing.assert_allclose(slowdown.eos_loss(logits, EOS), np.sum(logprob * ran, axis=1), rtol=1e-5)
    others = np.max(np.delete(z, EOS, axis=-1), axis=-1)
    hinge = np.maximum(z[..., EOS] - others + 1.0, 0.0)
    np.testing.assert_allclose(
        slowdown.eos_loss(logits, EOS, "margin"), np.sum(hinge * ran, axis=1), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="objective"):
        slowdown.eos_loss(logits, EOS, "bleu")


@pytest.mark.parametrize(
    "config", [slowdown.NICGConfig(steps=20), slowdown.NICGConfig.l2(steps=20)], ids=["linf", "l2"]
)
def test_the_attack_lengthens_captions_within_its_bound(trained, config):
    captioner, variables = trained.captioner, trained.variables
    images = trained.shapes.images[:16].astype(np.float32) / 255.0
    _, clean = captioner.caption(variables, images)
    adv = slowdown.nicg_attack(captioner, variables, images, config, progress=False)
    _, attacked = captioner.caption(variables, adv)
    assert adv.dtype == np.float32 and adv.min() >= 0 and adv.max() <= 1
    delta = (adv - images).reshape(len(images), -1)
    if config.norm == "linf":
        assert np.abs(delta).max() <= config.eps + 1e-6
    else:
        assert np.linalg.norm(delta, axis=1).max() <= config.eps + 1e-4
    # what PGD minimizes went down ...
    loss = [float(jnp.sum(slowdown.eos_loss(captioner.free_running(variables, im, 26), captioner.spec.eos)))
            for im in (images, adv, defenses.jpeg(adv, 75))]  # fmt: skip
    assert loss[1] < loss[0] - 10
    # ... and the claim: captions got longer (16 images: 4 of them go from 5 to 11 words here; +1.5 steps)
    assert np.mean(attacked > clean) >= 2 / 16 and attacked.mean() >= clean.mean() + 0.5, (clean, attacked)
    # the SoK's defense claims: JPEG undoes part of the attack, and clean captions keep their length
    # under it. Measured on what the attack minimizes (a continuous figure: the caption lengths are
    # integers that saturate at the maximum here, and which caption crosses a length step differs
    # between CPUs): JPEG gives back 40 % of the L-inf attack's gain and 7 % of the L2 attack's here.
    undone = (loss[2] - loss[1]) / (loss[0] - loss[1])
    assert undone >= 0.03, (config.norm, loss)
    _, clean_jpeg = captioner.caption(variables, defenses.jpeg(images, 75))
    assert abs(clean_jpeg.mean() - clean.mean()) <= 2.0, (clean, clean_jpeg)


def test_l2_bound_shrinks_on_its_schedule(trained):
    images = trained.shapes.images[:2].astype(np.float32) / 255.0
    config = slowdown.NICGConfig.l2(steps=3, shrink_every=1, shrink=0.5, eps=0.8, step=0.8)
    adv = slowdown.nicg_attack(trained.captioner, trained.variables, images, config, progress=False)
    norms = np.linalg.norm((adv - images).reshape(2, -1), axis=1)
    assert norms.max() <= 0.8 * 0.5**2 + 1e-4  # the last step's bound: eps * shrink^(3 - 1)
    assert norms.min() > 0.8 * 0.5**2 * 0.5  # and it moved


def test_bad_configs_get_clear_errors():
    with pytest.raises(ValueError, match="norm"):
        slowdown.NICGConfig(norm="l1")
    with pytest.raises(ValueError, match="eps"):
        slowdown.NICGConfig(eps=0.0)
    with pytest.raises(ValueError, match="decode_steps"):
        slowdown.NICGConfig(decode_steps=0)
    with pytest.raises(ValueError, match="objective"):
        slowdown.NICGConfig(objective="bleu")
