"""Captioners: teacher forcing, greedy decoding with real early stopping, FLOPs, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mexjax import nets

VOCAB, BOS, EOS, PAD = 12, 1, 2, 0


def _captioner(encoder="resnet56", decoder="lstm", max_len=6):
    return nets.build_captioner(
        encoder, decoder, vocab_size=VOCAB, bos=BOS, eos=EOS, pad=PAD, width=0.125,
        embed=8, hidden=16, max_len=max_len,
    )  # fmt: skip


@pytest.fixture(scope="module", params=[("resnet56", "lstm"), ("mobilenet", "rnn")])
def tiny(request):
    captioner = _captioner(*request.param)
    return captioner, captioner.init(jax.random.key(0))


def _with_eos_bias(variables, bias):
    params = jax.tree.map(lambda a: a, variables["params"])
    params["readout"] = dict(params["readout"], bias=params["readout"]["bias"].at[EOS].set(bias))
    return {**variables, "params": params}


def _reference_greedy(captioner, variables, images):
    """Step by step in Python: the caption of each image alone, stopping at <eos>."""
    out = []
    for i in range(len(images)):
        carry = captioner.encode(variables, images[i : i + 1])
        token, words = jnp.array([BOS], jnp.int32), []
        for _ in range(captioner.spec.max_len):
            carry, logits = captioner.step(variables, carry, token)
            token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            words.append(int(token[0]))
            if words[-1] == EOS:
                break
        out.append(words)
    return out


def test_teacher_forcing_equals_stepping(tiny):
    captioner, variables = tiny
    images = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
    tokens = jax.random.randint(jax.random.key(2), (3, 5), 0, VOCAB)
    carry = captioner.encode(variables, images)
    logits = captioner.teacher_forced(variables, carry, tokens)
    assert logits.shape == (3, 5, VOCAB)
    for t in range(5):
        carry, step_logits = captioner.step(variables, carry, tokens[:, t])
        np.testing.assert_allclose(logits[:, t], step_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eos_bias", [-100.0, 0.0, 100.0])
def test_greedy_stops_at_eos_like_a_step_by_step_decoder(tiny, eos_bias):
    captioner, variables = tiny
    variables = _with_eos_bias(variables, eos_bias)
    images = jax.random.uniform(jax.random.key(3), (4, 32, 32, 3))
    tokens, lengths = captioner.caption(variables, np.asarray(images))
    reference = _reference_greedy(captioner, variables, images)
    assert lengths.tolist() == [len(words) for words in reference]
    for row, words in zip(tokens, reference, strict=True):
        assert row[: len(words)].tolist() == words and np.all(row[len(words) :] == PAD)
    if eos_bias > 0:
        assert lengths.tolist() == [1] * 4  # <eos> at once: one step
    if eos_bias < 0:
        assert lengths.tolist() == [captioner.spec.max_len] * 4  # never ends


def test_free_running_follows_greedy_decoding(tiny):
    captioner, variables = tiny
    variables = _with_eos_bias(variables, -100.0)  # no early stop: both run max_len steps
    images = jax.random.uniform(jax.random.key(4), (2, 32, 32, 3))
    logits = captioner.free_running(variables, images, captioner.spec.max_len)
    tokens, _ = captioner.greedy(variables, images)
    np.testing.assert_array_equal(np.argmax(logits, axis=-1), tokens)


def test_caption_flops_grow_by_one_step_per_token(tiny):
    captioner, _ = tiny
    flops = captioner.caption_flops([1, 2, 10])
    step = captioner.step_flops()
    assert flops[1] - flops[0] == step and flops[2] - flops[0] == 9 * step
    s = captioner.spec
    gates = 4 if s.decoder == "lstm" else 1
    assert step == 2 * gates * (s.embed + s.hidden) * s.hidden + 2 * s.hidden * s.vocab_size
    assert flops[0] > captioner.encoder_flops() + step


def test_bad_arguments_and_inputs_get_clear_errors(tiny):
    captioner, variables = tiny
    with pytest.raises(ValueError, match="encoder"):
        nets.build_captioner("vgg99", "lstm", vocab_size=VOCAB, bos=BOS, eos=EOS)
    with pytest.raises(ValueError, match="decoder"):
        nets.build_captioner("resnet56", "gru", vocab_size=VOCAB, bos=BOS, eos=EOS)
    with pytest.raises(ValueError, match="different"):
        nets.build_captioner("resnet56", "lstm", vocab_size=VOCAB, bos=EOS, eos=EOS)
    with pytest.raises(ValueError, match="token id"):
        nets.build_captioner("resnet56", "lstm", vocab_size=VOCAB, bos=BOS, eos=VOCAB)
    with pytest.raises(ValueError, match="expected images"):
        captioner.caption(variables, np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        captioner.caption(variables, np.full((1, 32, 32, 3), np.nan, np.float32))
