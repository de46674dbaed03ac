"""Corpus BLEU-4, the caption-quality number captioning papers (and their attacks) report.

The counting is NLTK's `corpus_bleu`, the implementation most captioning code evaluates with:
clipped n-gram matches and n-gram totals are summed over the whole corpus before dividing (not
averaged per sentence), each hypothesis is compared with the reference closest to it in length
for the brevity penalty, and the four precisions get equal weights.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence

from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

from mexjax.captioning._vocab import tokenize


def _smoothing(smoothing) -> Callable | None:
    if smoothing is None:
        return None
    if isinstance(smoothing, numbers.Integral) and not isinstance(smoothing, bool):
        if not 0 <= smoothing <= 7:
            raise ValueError(
                f"smoothing must be None, 0..7 (Chen & Cherry's methods) or a callable; got {smoothing}"
            )
        if smoothing == 0:  # nltk's method0 is no smoothing
            return None
        return getattr(SmoothingFunction(), f"method{int(smoothing)}")
    if callable(smoothing):
        return smoothing
    raise TypeError(f"smoothing must be None, an int 0..7 or a callable; got {type(smoothing).__name__}")


def _token_list(tokens, where: str) -> list[str]:
    if isinstance(tokens, str):
        raise TypeError(
            f"{where} is a string; bleu4 takes token lists (split it with tokenize, or call bleu4_strings)"
        )
    if not isinstance(tokens, Sequence):
        raise TypeError(f"{where} must be a list of word strings; got {type(tokens).__name__}")
    for t in tokens:
        if not isinstance(t, str):
            raise TypeError(f"{where} must be a list of word strings; it holds a {type(t).__name__}")
    return list(tokens)


def _check_corpus(references, hypotheses) -> tuple[list[list[list[str]]], list[list[str]]]:
    for name, value in (("references", references), ("hypotheses", hypotheses)):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list with one entry per image; got {type(value).__name__}")
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} reference lists but {len(hypotheses)} hypotheses: need one each per image"
        )
    if not hypotheses:
        raise ValueError("BLEU of an empty corpus is undefined: pass at least one image")
    refs = []
    for i, per_image in enumerate(references):
        if isinstance(per_image, str) or not isinstance(per_image, Sequence):
            raise TypeError(f"references[{i}] must be a list of token lists; got {type(per_image).__name__}")
        if not per_image:
            raise ValueError(f"references[{i}] is empty: every image needs at least one reference")
        if any(isinstance(r, str) for r in per_image):
            raise TypeError(
                f"references[{i}] holds strings, not token lists: wrap a single reference as [tokens], "
                "or call bleu4_strings with caption strings"
            )
        refs.append([_token_list(r, f"references[{i}][{j}]") for j, r in enumerate(per_image)])
    hyps = [_token_list(h, f"hypotheses[{i}]") for i, h in enumerate(hypotheses)]
    return refs, hyps


def bleu4(references, hypotheses, *, smoothing=None) -> float:
    """Corpus BLEU-4 in [0, 1].

    references: per image, a list of reference token lists (e.g. [["a", "dog"], ["the", "dog"]]).
    hypotheses: per image, the generated token list.
    smoothing: None or 0 (plain BLEU: 0.0 whenever some n-gram order has no match anywhere in the
      corpus), an int 1..7 naming a Chen & Cherry method of nltk's SmoothingFunction, or one of
      its methods / a callable with the same signature.
    As in nltk, every hypothesis counts at least one n-gram of each order, so an empty (or very
    short) one adds an unmatched n-gram to each precision as well as lowering the brevity penalty;
    an all-empty corpus is 0.0.
    """
    refs, hyps = _check_corpus(references, hypotheses)
    smooth = _smoothing(smoothing)
    zero = False
    if smooth is None:
        # nltk stands for a zero precision with the smallest float (giving ~1e-77) and warns; the
        # definition is a geometric mean, so report exactly 0.0 instead.
        def smooth(p_n, *args, **kwargs):
            nonlocal zero
            zero = zero or any(p.numerator == 0 for p in p_n)
            return [p if p.numerator else 1.0 for p in p_n]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        score = corpus_bleu(refs, hyps, smoothing_function=smooth)
    return 0.0 if zero else float(score)


def bleu4_strings(references, hypotheses, *, smoothing=None) -> float:
    """`bleu4` on caption strings, tokenized with `tokenize` (lowercase, no punctuation).

    references: per image, a list of reference strings (or a single string, one reference);
    e.g. `cset.captions`. hypotheses: per image, the generated string.
    """
    for name, value in (("references", references), ("hypotheses", hypotheses)):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list with one entry per image; got {type(value).__name__}")
    refs = []
    for i, per_image in enumerate(references):
        per_image = [per_image] if isinstance(per_image, str) else per_image
        if not isinstance(per_image, Sequence) or not all(isinstance(r, str) for r in per_image):
            raise TypeError(f"references[{i}] must be a caption string or a list of caption strings")
        refs.append([tokenize(r) for r in per_image])
    hyps = []
    for i, h in enumerate(hypotheses):
        if not isinstance(h, str):
            raise TypeError(
                f"hypotheses[{i}] must be a caption string; got {type(h).__name__} (bleu4 takes token lists)"
            )
        hyps.append(tokenize(h))
    return bleu4(refs, hyps, smoothing=smoothing)
