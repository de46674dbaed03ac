"""Image captioning: a generated task, Flickr8k/COCO loaders, vocabulary, BLEU, training and the SoK's
measures of a captioner (the model itself is `nets.build_captioner`).

Public API:
Data
  shapes_dataset(n, *, image_size, max_objects, seed) -> CaptionSet   shapes on a grid; length ~ objects
  SHAPE_COLORS / SHAPE_KINDS / shapes_grid / cell_name              what the shapes task draws and names
  load_flickr8k(root, split, *, image_size, limit) -> CaptionSet     official Flickr8k files
  load_coco(root, split, *, image_size, year, limit) -> CaptionSet   official COCO Captions files
  CaptionSet / split_captions(cset, fractions, *, seed)             images with reference captions; splits
Words
  Vocabulary.build(captions, *, min_count) / encode / decode        words <-> <bos> ... <eos> <pad> id rows
  tokenize / normalize_caption                                      lowercase, no punctuation, split on spaces
  bleu4(references, hypotheses) / bleu4_strings(...)                corpus BLEU-4 (nltk's counting)
Training and measuring
  train_captioner(captioner, images, tokens, CaptionTrainConfig)    teacher-forced training (Optax AdamW)
  caption_loss(captioner, variables, images, tokens)                its loss: next-token CE, padding masked
  caption_outcome(captioner, variables, vocab, images, references)  words, steps, BLEU-4, FLOPs, latency
  step_probabilities / decoding_latency                             per-step softmax; batch-1 time
  save_captioner / load_captioner                                   Orbax checkpoint with the vocabulary
"""

from mexjax.captioning._bleu import bleu4, bleu4_strings
from mexjax.captioning._dataset import CaptionSet, split_captions
from mexjax.captioning._evaluate import caption_outcome, decoding_latency, step_probabilities
from mexjax.captioning._formats import load_coco, load_flickr8k
from mexjax.captioning._io import load_captioner, save_captioner
from mexjax.captioning._shapes import SHAPE_COLORS, SHAPE_KINDS, cell_name, shapes_dataset, shapes_grid
from mexjax.captioning._train import CaptionTrainConfig, caption_loss, train_captioner
from mexjax.captioning._vocab import Vocabulary, normalize_caption, tokenize

__all__ = [
    "SHAPE_COLORS",
    "SHAPE_KINDS",
    "CaptionSet",
    "CaptionTrainConfig",
    "Vocabulary",
    "bleu4",
    "bleu4_strings",
    "caption_loss",
    "caption_outcome",
    "cell_name",
    "decoding_latency",
    "load_captioner",
    "load_coco",
    "load_flickr8k",
    "normalize_caption",
    "save_captioner",
    "shapes_dataset",
    "shapes_grid",
    "split_captions",
    "step_probabilities",
    "tokenize",
    "train_captioner",
]
