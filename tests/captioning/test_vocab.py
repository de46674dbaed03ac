"""Tokenizer and Vocabulary: layout of encoded rows, truncation, decode, lengths."""

import numpy as np
import pytest

from mexjax.captioning import Vocabulary, normalize_caption, shapes_dataset, tokenize


def test_tokenize_lowercases_and_deletes_punctuation():
    assert tokenize("A dog's ball, in the  PARK.\n") == ["a", "dogs", "ball", "in", "the", "park"]
    assert tokenize("A t-shirt_x ; !") == ["a", "tshirtx"]
    assert tokenize("") == []
    assert normalize_caption("  Two   dogs. ") == "two dogs"
    with pytest.raises(TypeError, match="string"):
        tokenize(["a"])


def test_build_orders_by_count_then_alphabet_and_applies_min_count():
    vocab = Vocabulary.build([["the dog", "The cat!"], ["a dog"]], min_count=1)
    assert vocab.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "dog", "the", "a", "cat")
    assert (vocab.pad, vocab.bos, vocab.eos, vocab.unk) == (0, 1, 2, 3) and len(vocab) == 8
    assert Vocabulary.build(["the dog", "the cat", "a dog"], min_count=2).words == ("dog", "the")
    assert Vocabulary.build(["b a", "a b"]) == Vocabulary.build(["a b", "b a"])  # order-free ids
    assert Vocabulary(vocab.tokens) == vocab and "dog" in vocab and vocab.id("zebra") == vocab.unk


def test_encode_layout_with_bos_eos_pad():
    vocab = Vocabulary.build(["a red circle top left"])
    ids = vocab.encode(["a red circle", "left top"], max_len=6)
    assert ids.dtype == np.int32 and ids.shape == (2, 6)
    a, red, circle, top, left = (vocab.id(w) for w in ["a", "red", "circle", "top", "left"])
    np.testing.assert_array_equal(ids[0], [vocab.bos, a, red, circle, vocab.eos, vocab.pad])
    np.testing.assert_array_equal(ids[1], [vocab.bos, left, top, vocab.eos, vocab.pad, vocab.pad])
    unk = vocab.encode(["a zebra"], max_len=4)
    np.testing.assert_array_equal(unk[0], [vocab.bos, a, vocab.unk, vocab.eos])


def test_encode_truncates_to_the_first_words_and_keeps_eos():
    vocab = Vocabulary.build(["one two three four"])
    ids = vocab.encode(["one two three four"], max_len=4)
    np.testing.assert_array_equal(ids[0], [vocab.bos, vocab.id("one"), vocab.id("two"), vocab.eos])
    np.testing.assert_array_equal(vocab.encode(["one"], max_len=2)[0], [vocab.bos, vocab.eos])
    assert vocab.decode(ids) == ["one two"]


def test_round_trip_on_the_shapes_captions():
    cset = shapes_dataset(40, seed=0)
    vocab = Vocabulary.build(cset.captions)
    firsts = [refs[0] for refs in cset.captions]
    ids = vocab.encode(firsts, max_len=30)
    assert vocab.decode(ids) == firsts
    assert vocab.decode_tokens(ids[3]) == firsts[3].split()
    np.testing.assert_array_equal(vocab.lengths(ids), [len(c.split()) for c in firsts])
    assert vocab.unk not in ids


def test_decode_stops_at_eos_and_skips_bos_and_pad():
    vocab = Vocabulary(("<pad>", "<bos>", "<eos>", "<unk>", "x", "y"))
    ids = np.array(
        [[1, 4, 0, 5, 2, 4, 4], [4, 4, 4, 4, 4, 4, 4], [2, 4, 4, 0, 0, 0, 0], [1, 3, 1, 5, 0, 0, 0]]
    )
    assert vocab.decode(ids) == ["x y", "x x x x x x x", "", "<unk> y"]
    np.testing.assert_array_equal(vocab.lengths(ids), [2, 7, 0, 2])
    assert vocab.decode_tokens([1, 5, 2, 4]) == ["y"]
    assert vocab.decode(np.zeros((0, 3), np.int32)) == []


def test_vocabulary_errors_name_the_fix():
    vocab = Vocabulary.build(["a b"])
    with pytest.raises(TypeError, match=r"wrap a single caption as \[caption\]"):
        vocab.encode("a b", max_len=5)
    with pytest.raises(TypeError, match=r"one reference per image"):
        vocab.encode([["a b"]], max_len=5)
    with pytest.raises(ValueError, match="max_len must be an integer >= 2"):
        vocab.encode(["a"], max_len=1)
    with pytest.raises(ValueError, match="use decode_tokens"):
        vocab.decode([1, 2])
    with pytest.raises(ValueError, match="use decode for a batch"):
        vocab.decode_tokens([[1, 2]])
    with pytest.raises(TypeError, match="integer ids"):
        vocab.decode(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="vocabulary has 6"):
        vocab.decode([[1, 6]])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(["a"], min_count=0)
    with pytest.raises(TypeError, match="list of caption strings"):
        Vocabulary.build("a b")
    with pytest.raises(ValueError, match="first tokens"):
        Vocabulary(("a", "b"))
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(("<pad>", "<bos>", "<eos>", "<unk>", "a", "a"))
    with pytest.raises(ValueError, match="without spaces"):
        Vocabulary(("<pad>", "<bos>", "<eos>", "<unk>", "a b"))
