"""Words <-> integer ids for caption models: one tokenizer for generated, Flickr and COCO captions."""

from __future__ import annotations

import collections
import dataclasses
import numbers
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def tokenize(text: str) -> list[str]:
    """Lowercase, delete punctuation, split on whitespace: "A dog's ball." -> ["a", "dogs", "ball"].

    Punctuation is deleted rather than turned into spaces (as the common Flickr/COCO preprocessing
    does), so "t-shirt" stays one word, "tshirt".
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize needs a string; got {type(text).__name__}")
    return _PUNCTUATION.sub("", text.lower()).split()


def normalize_caption(text: str) -> str:
    """The plain form a CaptionSet stores: tokens of `tokenize` joined by single spaces."""
    return " ".join(tokenize(text))


def _iter_captions(captions, where: str) -> Iterable[str]:
    """Strings of `captions`: a list of strings, or a list (per image) of lists of strings."""
    if isinstance(captions, str) or not isinstance(captions, Iterable):
        raise TypeError(
            f"{where} needs a list of caption strings (or a list of such lists, one per image); got "
            f"{type(captions).__name__}"
        )
    for item in captions:
        if isinstance(item, str):
            yield item
        elif isinstance(item, Sequence):
            for text in item:
                if not isinstance(text, str):
                    raise TypeError(f"{where}: captions must be strings; got {type(text).__name__}")
                yield text
        else:
            raise TypeError(f"{where}: captions must be strings; got {type(item).__name__}")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A fixed word list; id = position. Ids 0..3 are <pad>, <bos>, <eos>, <unk>.

    <pad> is 0 so that a zero-filled batch is all padding. Words missing from the list encode as
    <unk>. Save `tokens` (a tuple of strings) with a model and rebuild with `Vocabulary(tokens)`.
    """

    tokens: tuple[str, ...]
    _index: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.tokens, str) or not isinstance(self.tokens, Iterable):
            raise TypeError(f"Vocabulary needs a sequence of token strings; got {type(self.tokens).__name__}")
        tokens = tuple(self.tokens)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(
                f"a Vocabulary's first tokens must be {list(SPECIALS)}; got {list(tokens[:4])} "
                "(use Vocabulary.build to make one from captions)"
            )
        for t in tokens:
            if not isinstance(t, str) or not t or t != t.strip() or len(t.split()) != 1:
                raise ValueError(f"every token must be a non-empty string without spaces; got {t!r}")
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            dupes = sorted(t for t, c in collections.Counter(tokens).items() if c > 1)
            raise ValueError(f"duplicate tokens in the vocabulary: {dupes}")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, captions, *, min_count: int = 1) -> Vocabulary:
        """The words of `captions` (after `tokenize`) seen at least `min_count` times.

        captions: a list of strings, or a list (per image) of lists of strings, e.g. `cset.captions`.
        Words are ordered by decreasing count, ties alphabetically, so the ids do not depend on the
        order of the captions. Build on the training split only: unseen test words should be <unk>.
        """
        if not isinstance(min_count, numbers.Integral) or isinstance(min_count, bool) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1; got {min_count!r}")
        counts = collections.Counter()
        for text in _iter_captions(captions, "Vocabulary.build"):
            counts.update(tokenize(text))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(words))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word) -> bool:
        return word in self._index

    @property
    def pad(self) -> int:
        return 0

    @property
    def bos(self) -> int:
        return 1

    @property
    def eos(self) -> int:
        return 2

    @property
    def unk(self) -> int:
        return 3

    @property
    def words(self) -> tuple[str, ...]:
        """The non-special tokens."""
        return self.tokens[len(SPECIALS) :]

    def id(self, word: str) -> int:
        """The id of `word` (<unk>'s id if it is not in the vocabulary)."""
        return self._index.get(word, self.unk)

    def encode(self, captions: Sequence[str], max_len: int) -> np.ndarray:
        """Caption strings -> int32[N, max_len], each row `<bos> w1 ... wn <eos> <pad> ...`.

        <bos> is included (a decoder reads row[:-1] and predicts row[1:]). A caption of more than
        max_len - 2 words keeps its first max_len - 2 words, so every row still starts with <bos>
        and holds exactly one <eos>. Captions are tokenized with `tokenize`.
        """
        if isinstance(captions, str):
            raise TypeError("encode needs a list of caption strings; wrap a single caption as [caption]")
        if not isinstance(captions, Sequence):
            raise TypeError(f"encode needs a list of caption strings; got {type(captions).__name__}")
        if not isinstance(max_len, numbers.Integral) or isinstance(max_len, bool) or max_len < 2:
            raise ValueError(f"max_len must be an integer >= 2 (room for <bos> and <eos>); got {max_len!r}")
        out = np.full((len(captions), int(max_len)), self.pad, dtype=np.int32)
        for row, text in enumerate(captions):
            if not isinstance(text, str):
                raise TypeError(
                    f"encode: captions[{row}] is a {type(text).__name__}, not a string (for a CaptionSet, "
                    "pass one reference per image, e.g. [refs[0] for refs in cset.captions])"
                )
            ids = [self.id(w) for w in tokenize(text)][: max_len - 2]
            out[row, 0] = self.bos
            out[row, 1 : 1 + len(ids)] = ids
            out[row, 1 + len(ids)] = self.eos
        return out

    def _check_ids(self, ids, ndim: int, where: str) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != ndim:
            hint = " (use decode for a batch)" if arr.ndim == 2 else " (use decode_tokens for one row)"
            raise ValueError(f"{where} needs a {ndim}-D array of ids; got shape {arr.shape}{hint}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{where} needs integer ids; got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise ValueError(
                f"{where}: ids span [{arr.min()}, {arr.max()}] but the vocabulary has {len(self)}"
            )
        return arr

    def _words(self, row: np.ndarray) -> list[str]:
        words = []
        for i in row.tolist():
            if i == self.eos:
                break
            if i not in (self.bos, self.pad):
                words.append(self.tokens[i])
        return words

    def decode_tokens(self, ids) -> list[str]:
        """One row of ids -> its words: stops at the first <eos>, skips <bos> and <pad>."""
        return self._words(self._check_ids(ids, 1, "decode_tokens"))

    def decode(self, ids) -> list[str]:
        """int[N, L] ids -> N caption strings (words before the first <eos>; no <bos>/<pad>)."""
        return [" ".join(self._words(row)) for row in self._check_ids(ids, 2, "decode")]

    def lengths(self, ids) -> np.ndarray:
        """int32[N]: words per row as `decode` reads them (before the first <eos>, without <bos>/<pad>).

        This is the caption length an efficiency attack tries to increase.
        """
        arr = self._check_ids(ids, 2, "lengths")
        ended = np.cumsum(arr == self.eos, axis=1) > 0
        words = (arr != self.bos) & (arr != self.pad) & ~ended
        return words.sum(axis=1).astype(np.int32)
