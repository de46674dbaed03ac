"""One small trained captioner for the captioning and NICGSlowDown tests (trained once per process)."""

import dataclasses

import numpy as np
import pytest

from mexjax import captioning, nets

MAX_LEN = 26


@dataclasses.dataclass(frozen=True)
class Trained:
    shapes: captioning.CaptionSet
    vocab: captioning.Vocabulary
    captioner: nets.Captioner
    variables: dict
    tokens: np.ndarray
    history: list


@pytest.fixture(scope="session")
def trained() -> Trained:
    """MobileNet + RNN at width 1/8 on 96 shape scenes of 1-2 objects (5 or 11 words), 120 steps:
    it writes the task's grammar, mostly right (~20 s on 2 cores)."""
    shapes = captioning.shapes_dataset(96, max_objects=2, seed=3)
    vocab = captioning.Vocabulary.build(shapes.captions)
    captioner = nets.build_captioner(
        "mobilenet", "rnn", vocab_size=len(vocab), bos=vocab.bos, eos=vocab.eos, pad=vocab.pad,
        width=0.125, embed=16, hidden=32, max_len=MAX_LEN,
    )  # fmt: skip
    tokens = vocab.encode([c[0] for c in shapes.captions], MAX_LEN)
    config = captioning.CaptionTrainConfig(steps=120, batch_size=32, warmup=10)
    variables, history = captioning.train_captioner(captioner, shapes.images, tokens, config, progress=False)
    return Trained(shapes, vocab, captioner, variables, tokens, history)
