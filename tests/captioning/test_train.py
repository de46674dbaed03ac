"""Captioner training, the SoK's measures of a captioner, and its checkpoints."""

import jax
import numpy as np
import pytest

from mexjax import captioning, defenses
from mexjax.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def task(trained):
    return (
        trained.shapes,
        trained.vocab,
        trained.captioner,
        trained.variables,
        trained.tokens,
        trained.history,
    )


def test_training_lowers_the_caption_loss(task):
    shapes, _, captioner, variables, tokens, history = task
    untrained = captioner.init(jax.random.key(0))
    loss = [float(captioning.caption_loss(captioner, v, shapes.images[:32] / 255.0, tokens[:32])[0])
            for v in (untrained, variables)]  # fmt: skip
    assert history[-1] < 0.5 * history[0] and loss[1] < 0.5 * loss[0]


def test_caption_outcome_reads_its_captions(task):
    shapes, vocab, captioner, variables, _, _ = task
    result = captioning.caption_outcome(
        captioner, variables, vocab, shapes.images[:16], shapes.captions[:16], latency_images=2
    )
    tokens, steps = captioner.caption(variables, shapes.images[:16])
    assert result["words"] == pytest.approx(float(np.mean(vocab.lengths(tokens))))
    assert result["steps"] == pytest.approx(float(np.mean(steps)))
    assert result["flops"] == pytest.approx(float(np.mean(captioner.caption_flops(steps))))
    assert sum(result["length_histogram"]) == 16 and result["latency_ms"] > 0
    hypotheses = [captioning.tokenize(t) for t in vocab.decode(tokens)]
    references = [[captioning.tokenize(r) for r in group] for group in shapes.captions[:16]]
    assert result["bleu4"] == pytest.approx(captioning.bleu4(references, hypotheses))
    with pytest.raises(ValueError, match="reference"):
        captioning.caption_outcome(captioner, variables, vocab, shapes.images[:4], shapes.captions[:3])


def test_step_probabilities_feed_the_detector(task):
    shapes, _, captioner, variables, _, _ = task
    probs = captioning.step_probabilities(captioner, variables, shapes.images[:5], steps=4, batch_size=2)
    assert probs.shape == (4, 5, captioner.spec.vocab_size)
    logits = captioner.free_running(variables, shapes.images[:5] / 255.0, 4)
    # the same probabilities through two batchings of float32 kernels: CPUs differ by ~1e-5 there
    np.testing.assert_allclose(probs, np.swapaxes(jax.nn.softmax(logits, axis=-1), 0, 1), atol=1e-4)
    assert defenses.exit_features(probs).shape == (5, 8)


def test_decoding_latency_is_measured_per_image(task):
    shapes, _, captioner, variables, _, _ = task
    latency = captioning.decoding_latency(captioner, variables, shapes.images[:3], repeats=2)
    assert latency.shape == (3,) and np.all(latency > 0)


def test_checkpoint_round_trip(task, tmp_path):
    shapes, vocab, captioner, variables, _, _ = task
    captioning.save_captioner(tmp_path / "c", captioner, variables, vocab, info={"note": "x"})
    loaded, loaded_vars, loaded_vocab, info = captioning.load_captioner(tmp_path / "c")
    assert loaded.spec == captioner.spec and loaded_vocab.tokens == vocab.tokens and info == {"note": "x"}
    want = captioner.caption(variables, shapes.images[:4])
    got = loaded.caption(loaded_vars, shapes.images[:4])
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError):
        captioning.load_captioner(tmp_path / "missing")


def test_bad_training_input_gets_clear_errors(task):
    shapes, _, captioner, _, tokens, _ = task
    with pytest.raises(ValueError, match="bos"):
        captioning.train_captioner(captioner, shapes.images[:4], tokens[:4, 1:], progress=False)
    with pytest.raises(ValueError, match="token ids"):
        captioning.train_captioner(captioner, shapes.images[:4], tokens[:4] + 100, progress=False)
    with pytest.raises(ValueError, match="N=4"):
        captioning.train_captioner(captioner, shapes.images[:4], tokens[:3], progress=False)
    with pytest.raises(ValueError, match="warmup"):
        captioning.CaptionTrainConfig(steps=10, warmup=10)
