"""Corpus BLEU-4 against values worked out by hand."""

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction

from mexjax.captioning import bleu4, bleu4_strings

HYP1 = ["the", "cat", "sat", "on", "the", "mat"]
REFS1 = [
    ["the", "cat", "is", "sitting", "on", "the", "mat"],
    ["there", "is", "a", "cat", "on", "the", "red", "mat"],
]
HYP2 = ["a", "dog", "is", "running", "in", "the", "grass"]
REFS2 = [["a", "dog", "is", "running", "in", "the", "park"]]


def test_two_sentence_corpus_by_hand():
    # Clipped matches / hypothesis n-grams, per sentence:
    #   sentence 1: 1-grams the,the,cat,on,mat of 6 = 5/6 ("sat" misses; both "the" count, as the
    #     first reference has two, clipping matters only beyond that);
    #     2-grams "the cat","on the","the mat" = 3/5; 3-grams "on the mat" = 1/4; 4-grams 0/3.
    #   sentence 2: 6/7, 5/6, 4/5, 3/4 (only "grass" and the n-grams holding it miss).
    # Corpus precisions sum numerators and denominators: 11/13, 8/11, 5/9, 3/7.
    # Lengths: c = 6 + 7 = 13; closest references 7 (of 7, 8) and 7: r = 14; BP = exp(1 - 14/13).
    p = [11 / 13, 8 / 11, 5 / 9, 3 / 7]
    expected = math.exp(1 - 14 / 13) * math.exp(sum(math.log(x) for x in p) / 4)
    assert bleu4([REFS1, REFS2], [HYP1, HYP2]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5729, abs=1e-4)
    # the corpus score is not the mean of the sentence scores: sentence 1 alone has no 4-gram match
    assert bleu4([REFS1], [HYP1]) == 0.0


def test_clipping_and_smoothing_by_hand():
    refs = [["the", "cat", "the", "mat"]]
    hyp = ["the"] * 4
    # "the" counts at most twice (the reference has two): p1 = 2/4; no bigram matches.
    assert bleu4([refs], [hyp]) == 0.0
    # Chen & Cherry method 1 adds epsilon = 0.1 to the zero counts: p = 2/4, 0.1/3, 0.1/2, 0.1/1; BP = 1.
    expected = (0.5 * 0.1 / 3 * 0.1 / 2 * 0.1) ** 0.25
    assert bleu4([refs], [hyp], smoothing=1) == pytest.approx(expected, rel=1e-12)
    assert bleu4([refs], [hyp], smoothing=SmoothingFunction().method1) == pytest.approx(expected, rel=1e-12)
    assert bleu4([refs], [hyp], smoothing=0) == 0.0


def test_brevity_penalty_by_hand():
    ref = ["a", "b", "c", "d", "e", "f", "g", "h"]
    hyp = ["a", "b", "c", "d"]  # every n-gram matches; c = 4, r = 8
    assert bleu4([[ref]], [hyp]) == pytest.approx(math.exp(1 - 8 / 4), rel=1e-12)
    assert bleu4([[ref]], [[*ref, "i"]]) < 1.0  # longer is not penalized by BP but loses precision


def test_edge_cases():
    refs = [["a", "red", "circle", "top", "left"]]
    assert bleu4([refs], [refs[0]]) == 1.0
    assert bleu4([refs, refs], [refs[0], refs[0]]) == 1.0
    assert bleu4([refs], [[]]) == 0.0
    assert bleu4([refs, refs], [[], []]) == 0.0
    assert bleu4([refs], [["a", "red"]]) == 0.0  # too short for a 4-gram: exactly 0, not nltk's ~1e-77
    # an empty hypothesis shortens c (BP = exp(1 - 10/5)) and, as nltk counts it, adds one unmatched
    # n-gram of each order: p = 5/6, 4/5, 3/4, 2/3
    expected = math.exp(1 - 10 / 5) * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert bleu4([refs, refs], [refs[0], []]) == pytest.approx(expected, rel=1e-12)
    # the closest-length reference sets r; multiple references count n-grams of any of them
    assert bleu4([[["x"] * 3, refs[0]]], [refs[0]]) == 1.0


def test_strings_match_tokens():
    refs = [
        ["The cat is sitting on the mat.", "There is a cat on the red mat"],
        "A dog is running in the park",
    ]
    hyps = ["the cat sat on the mat", "A dog is running, in the grass!"]
    assert bleu4_strings(refs, hyps) == bleu4([REFS1, REFS2], [HYP1, HYP2])


@pytest.mark.parametrize(
    ("refs", "hyps", "error", "match"),
    [
        ([[["a"]]], ["a"], TypeError, "bleu4_strings"),
        ([["a b"]], [["a", "b"]], TypeError, r"wrap a single reference as \[tokens\]"),
        ([[["a"]], [["b"]]], [["a"]], ValueError, "2 reference lists but 1 hypotheses"),
        ([], [], ValueError, "empty corpus"),
        ([[]], [["a"]], ValueError, "at least one reference"),
        ([[["a", 1]]], [["a"]], TypeError, "word strings"),
        ("abc", [["a"]], TypeError, "one entry per image"),
    ],
)
def test_bad_inputs(refs, hyps, error, match):
    with pytest.raises(error, match=match):
        bleu4(refs, hyps)


def test_bad_smoothing_and_string_inputs():
    with pytest.raises(ValueError, match="0..7"):
        bleu4([[["a"]]], [["a"]], smoothing=9)
    with pytest.raises(TypeError, match="smoothing"):
        bleu4([[["a"]]], [["a"]], smoothing="method1")
    with pytest.raises(TypeError, match="token lists"):
        bleu4_strings([["a"]], [["a"]])
    with pytest.raises(TypeError, match="caption string"):
        bleu4_strings([[1]], ["a"])
