"""Image captioners: a CNN encoder (the SDN backbones' ResNet56 / MobileNet units) and an LSTM or
plain-RNN decoder, used functionally through `Captioner` like `MultiExitNet`.

The encoder's pooled features set the decoder's initial state (Show-and-Tell style, without feeding the
image as a token). Decoding is greedy inside `jax.lax.while_loop` and stops when every caption of the
batch has written <eos> or `max_len` tokens: real early stopping, so a caption's cost (and time) grows
with its length, which is what an efficiency attack such as NICGSlowDown exploits.

Token ids follow the captioning vocabulary: every caption starts with `bos`; `eos` ends it; `pad` fills
the rest of a row.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mexjax.nets import _arch
from mexjax.nets._layers import BackboneUnit

ENCODERS = ("resnet56", "mobilenet")
DECODERS = ("lstm", "rnn")


@dataclasses.dataclass(frozen=True)
class CaptionerSpec:
    """Everything that defines a captioner (plain data: saved with its weights)."""

    encoder: str
    decoder: str
    vocab_size: int
    bos: int
    eos: int
    pad: int
    width: float = 0.25
    input_shape: tuple[int, int, int] = (32, 32, 3)
    embed: int = 64
    hidden: int = 128
    max_len: int = 32

    @property
    def units(self) -> tuple[_arch.Unit, ...]:
        return _arch.backbone(self.encoder, self.width, self.input_shape)[0]


class CaptionModule(nn.Module):
    spec: CaptionerSpec

    def setup(self):
        s = self.spec
        self.units = [BackboneUnit(u) for u in s.units]
        self.embedding = nn.Embed(s.vocab_size, s.embed)
        self.feature_norm = nn.LayerNorm()  # pooled features on one scale: the tanh below never saturates
        self.init_h = nn.Dense(s.hidden)
        if s.decoder == "lstm":
            self.init_c = nn.Dense(s.hidden)
            self.cell = nn.OptimizedLSTMCell(s.hidden)
        else:
            self.cell = nn.SimpleCell(s.hidden)
        self.readout = nn.Dense(s.vocab_size)

    def encode(self, x, train: bool = False):
        """Images [B, H, W, C] in [0, 1] -> the decoder's initial carry."""
        x = (x.astype(jnp.float32) - 0.5) / 0.25
        for unit in self.units:
            x, _ = unit(x, train)
        features = self.feature_norm(jnp.mean(x, axis=(1, 2)))
        h = jnp.tanh(self.init_h(features))
        if self.spec.decoder == "lstm":
            return (jnp.tanh(self.init_c(features)), h)  # flax's LSTM carry is (c, h)
        return h

    def step(self, carry, tokens):
        """One decoding step: (carry, int32[B]) -> (carry, logits f32[B, vocab])."""
        carry, y = self.cell(carry, self.embedding(tokens))
        return carry, self.readout(y)

    def __call__(self, x, tokens, train: bool = False):
        """Teacher forcing (used only to create the variables): logits of every next token."""
        carry = self.encode(x, train)
        logits = []
        for t in range(tokens.shape[1]):
            carry, out = self.step(carry, tokens[:, t])
            logits.append(out)
        return jnp.stack(logits, axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class Captioner:
    """A captioner: its spec and pure functions over its variables {"params", "batch_stats"}."""

    spec: CaptionerSpec

    def __post_init__(self):
        object.__setattr__(self, "module", CaptionModule(self.spec))
        # `greedy` compiled once per batch shape: what serving (and a latency measurement) calls
        object.__setattr__(self, "greedy_jit", jax.jit(self.greedy))

    def init(self, key: jax.Array) -> dict:
        x = jnp.zeros((1, *self.spec.input_shape), jnp.float32)
        tokens = jnp.full((1, 2), self.spec.bos, jnp.int32)
        return dict(jax.jit(self.module.init, static_argnames="train")(key, x, tokens, train=False))

    def encode(self, variables, images, *, train: bool = False):
        """The decoder's initial carry; with train=True also the updated batch statistics."""
        if not train:
            return self.module.apply(variables, images, method=CaptionModule.encode)
        carry, updates = self.module.apply(
            variables, images, True, method=CaptionModule.encode, mutable=["batch_stats"]
        )
        return carry, updates["batch_stats"]

    def step(self, variables, carry, tokens):
        return self.module.apply(variables, carry, tokens, method=CaptionModule.step)

    def teacher_forced(self, variables, carry, tokens):
        """Logits f32[B, T, vocab] of tokens[:, t + 1] given tokens[:, : t + 1], for t < T."""
        inputs = jnp.swapaxes(tokens, 0, 1)

        def body(carry, token):
            return self.step(variables, carry, token)

        _, logits = jax.lax.scan(body, carry, inputs)
        return jnp.swapaxes(logits, 0, 1)

    def free_running(self, variables, images, steps: int):
        """Logits f32[B, steps, vocab] of greedy decoding run for exactly `steps` steps (no stop at
        <eos>; each step reads the previous argmax): differentiable in the images, what a slowdown
        attack follows. The tokens fed back are constants of the gradient."""
        carry = self.encode(variables, images)
        first = jnp.full((images.shape[0],), self.spec.bos, jnp.int32)

        def body(state, _):
            carry, token = state
            carry, logits = self.step(variables, carry, token)
            token = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1)).astype(jnp.int32)
            return (carry, token), logits

        _, logits = jax.lax.scan(body, (carry, first), None, length=steps)
        return jnp.swapaxes(logits, 0, 1)

    def greedy(self, variables, images):
        """Greedy captions with real early stopping: (tokens int32[B, max_len], lengths int32[B]).

        Rows hold the words after <bos>, <eos> included when written, then `pad`; lengths count the
        decoding steps a caption took (its words plus the <eos>; `max_len` when it never ended). The loop
        runs until every caption has ended, so its time follows the longest one."""
        s = self.spec
        batch = images.shape[0]
        carry = self.encode(variables, images)
        out = jnp.full((batch, s.max_len), s.pad, jnp.int32)
        token = jnp.full((batch,), s.bos, jnp.int32)
        done = jnp.zeros((batch,), bool)
        lengths = jnp.zeros((batch,), jnp.int32)

        def cond(state):
            t, _, _, _, done, _ = state
            return (t < s.max_len) & ~jnp.all(done)

        def body(state):
            t, carry, token, out, done, lengths = state
            carry, logits = self.step(variables, carry, token)
            token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            out = out.at[:, t].set(jnp.where(done, s.pad, token))
            lengths = lengths + (~done).astype(jnp.int32)
            done = done | (token == s.eos)
            return t + 1, carry, token, out, done, lengths

        state = (jnp.int32(0), carry, token, out, done, lengths)
        _, _, _, out, _, lengths = jax.lax.while_loop(cond, body, state)
        return out, lengths

    def check_images(self, images) -> jax.Array:
        """Host images -> f32 [N, H, W, C] in [0, 1] (uint8 is scaled); a clear error on anything else."""
        return check_images(images, self.spec.input_shape)

    def caption(self, variables, images, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """`greedy` on host images in batches (jit-compiled once per batch shape): NumPy outputs."""
        x = self.check_images(images)
        tokens, lengths = [], []
        for i in range(0, len(x), batch_size):
            t, n = self.greedy_jit(variables, x[i : i + batch_size])
            tokens.append(np.asarray(t))
            lengths.append(np.asarray(n))
        return np.concatenate(tokens), np.concatenate(lengths)

    def encoder_flops(self) -> int:
        return sum(u.flops for u in self.spec.units)

    def step_flops(self) -> int:
        """FLOPs (multiply-add = 2) of one decoding step: the cell's matrices and the read-out."""
        s = self.spec
        gates = 4 if s.decoder == "lstm" else 1
        return 2 * gates * (s.embed + s.hidden) * s.hidden + 2 * s.hidden * s.vocab_size

    def caption_flops(self, lengths) -> np.ndarray:
        """FLOPs per caption: the encoder, the initial state and `lengths` decoding steps each."""
        s = self.spec
        features = s.units[-1].out_channels
        init = 2 * features * s.hidden * (2 if s.decoder == "lstm" else 1)
        steps = np.asarray(lengths, np.int64)
        return self.encoder_flops() + init + steps * self.step_flops()


def check_images(images, input_shape) -> jax.Array:
    """Host images -> f32 [N, H, W, C] in [0, 1]; uint8 is scaled; a clear error on anything else."""
    x = np.asarray(images)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"expected images [N, {', '.join(map(str, input_shape))}]; got shape {x.shape}")
    if x.dtype == np.uint8:
        return jnp.asarray(x, jnp.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"images must be uint8 or float in [0, 1]; got {x.dtype}")
    if np.isnan(x).any() or x.min() < 0 or x.max() > 1:
        raise ValueError("float images must lie in [0, 1] without NaN")
    return jnp.asarray(x, jnp.float32)


def build_captioner(
    encoder: str,
    decoder: str,
    *,
    vocab_size: int,
    bos: int,
    eos: int,
    pad: int = 0,
    width: float = 0.25,
    input_shape=(32, 32, 3),
    embed: int = 64,
    hidden: int = 128,
    max_len: int = 32,
) -> Captioner:
    """A captioner: encoder "resnet56" or "mobilenet" (the SDN backbones' units at `width`), decoder
    "lstm" or "rnn"; token ids from the captioning vocabulary."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    if not isinstance(vocab_size, int) or vocab_size < 4:
        raise ValueError(f"vocab_size must be an int >= 4 (pad, bos, eos, a word); got {vocab_size!r}")
    ids = {"bos": bos, "eos": eos, "pad": pad}
    for name, value in ids.items():
        if not isinstance(value, int) or not 0 <= value < vocab_size:
            raise ValueError(f"{name} must be a token id in 0..{vocab_size - 1}; got {value!r}")
    if len(set(ids.values())) != 3:
        raise ValueError(f"bos, eos and pad must be different ids; got {ids}")
    for name, value in (("embed", embed), ("hidden", hidden), ("max_len", max_len)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or min(input_shape[:2]) < 32:
        raise ValueError(f"input_shape must be (H, W, C) with sides >= 32; got {input_shape}")
    if not width > 0:
        raise ValueError(f"width must be positive; got {width}")
    spec = CaptionerSpec(
        encoder, decoder, vocab_size, bos, eos, pad, float(width), input_shape, embed, hidden, max_len
    )
    return Captioner(spec)
