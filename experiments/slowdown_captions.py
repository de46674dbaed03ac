"""The efficiency-robustness SoK's captioning table: NICGSlowDown against image captioners, and defenses.

    .venv/bin/python experiments/slowdown_captions.py --scale cpu     # ResNet56+LSTM, MobileNet+RNN
    .venv/bin/python experiments/slowdown_captions.py --scale tiny    # a minute: the pipeline only

No caption dataset is available offline, so the captioners learn the generated shapes task
(`captioning.shapes_dataset`: 1-4 coloured shapes on a 2x2 grid, one named object per 6 words, so a
correct caption is 5-23 words long); `--dataset flickr8k` or `coco` with `--data-dir` runs the same on
the official files. For each captioner (the SoK's ResNet+LSTM and MobileNet+RNN): clean captions; under
NICGSlowDown L∞ (ε = 8/255; its summed <eos> log-probability, and the hinge on the <eos> logit margin
as `linf_margin`) and L2 (ε = 1.0, the bound shrunk ×0.9 every 50 steps), white box; L∞ by
transfer from a surrogate captioner (same architecture, another seed and half of the training set); the
L∞-attacked images after JPEG 90 / 75 and non-local-means smoothing, and the defenses' cost on clean
images; the RBF-SVM detector on the first decoding steps' outputs (top-1 probability and entropy per
step), fitted on half the test images and scored on the other half, also after JPEG / smoothing.
Each row: words per caption, decoding steps, BLEU-4, FLOPs per caption, measured batch-1 latency.
Rows go to experiments/results/slowdown_captions_<scale>.jsonl (rerunning skips finished rows); the
Markdown beside it puts the SoK's numbers next to them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the `experiments` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments._common import cached_array, finished, machines, pick_scale, publish_markdown, stamp
from experiments.cli import runner_parser
from mexjax import captioning, defenses, nets
from mexjax.attacks import slowdown
from mexjax.checkpoint import CheckpointError
from mexjax.results import append_record, read_records

CAPTIONERS = {"resnet_lstm": ("resnet56", "lstm"), "mobilenet_rnn": ("mobilenet", "rnn")}


@dataclasses.dataclass(frozen=True)
class Scale:
    train_images: int
    test_images: int
    width: float
    hidden: int
    train_steps: int
    attack_steps: int
    latency_images: int
    max_objects: int = 4
    detect_steps: int = 12


SCALES = {
    "tiny": Scale(train_images=768, test_images=32, width=0.125, hidden=64, train_steps=600, attack_steps=30,
                  latency_images=4, max_objects=3),
    "cpu": Scale(train_images=8000, test_images=400, width=0.25, hidden=128, train_steps=2500,
                 attack_steps=100, latency_images=60),
}  # fmt: skip


def get_config(scale: str = "cpu") -> Scale:
    """The sizes of this runner at one of its SCALES (a clear error for another name)."""
    return pick_scale(SCALES, scale)


MAX_WORDS = 38  # decoding stops at 40 steps: room for attacked captions well beyond the longest true one
# The SoK (NICGSlowDown on its captioners): words per caption, BLEU-4; detection accuracy %.
PAPER = {
    "clean": (10.7, 0.16),
    "linf": (62, 0.0),
    "linf+jpeg75": (11, 0.077),
    "clean+jpeg75": ("unchanged", "unchanged"),
    "detection": ("51-85.6", ""),
    "detection+jpeg75": ("29.1 (MobileNet+RNN L2, adversarial rows)", ""),
}
ROWS = (
    "clean", "linf", "linf_margin", "l2", "transfer_linf", "linf+jpeg90", "linf+jpeg75", "linf+smooth",
    "clean+jpeg90", "clean+jpeg75", "clean+smooth", "detection", "detection+jpeg75", "detection+smooth",
)  # fmt: skip


def task(args, scale: Scale):
    """(train, test) CaptionSets of the chosen dataset."""
    if args.dataset == "shapes":
        n = scale.train_images + scale.test_images
        full = captioning.shapes_dataset(n, max_objects=scale.max_objects, seed=args.seed)
        return full.take(np.arange(scale.train_images)), full.take(np.arange(scale.train_images, len(full)))
    if args.data_dir is None:
        raise SystemExit(f"--dataset {args.dataset} needs --data-dir (the folder with its official files)")
    load = captioning.load_flickr8k if args.dataset == "flickr8k" else captioning.load_coco
    train = load(args.data_dir, "train", image_size=32, limit=scale.train_images)
    test = load(
        args.data_dir, "val" if args.dataset == "coco" else "test", image_size=32, limit=scale.test_images
    )
    return train, test


def trained_captioner(name, args, scale, train, vocab, *, seed, subset=None, tag=""):
    """Load the captioner from outputs/ or train and save it there (a rerun does not train again)."""
    folder = Path(args.outputs) / "captioners" / args.scale / f"{args.dataset}_{name}{tag}_seed{seed}"
    if (folder / "done").exists():
        try:
            captioner, variables, _, _ = captioning.load_captioner(folder)
            return captioner, variables
        except CheckpointError as err:
            print(f"[captions] {folder} unreadable ({err}); training again")
    encoder, decoder = CAPTIONERS[name]
    captioner = nets.build_captioner(
        encoder, decoder, vocab_size=len(vocab), bos=vocab.bos, eos=vocab.eos, pad=vocab.pad,
        width=scale.width, hidden=scale.hidden, max_len=MAX_WORDS + 2,
    )  # fmt: skip
    idx = np.arange(len(train)) if subset is None else subset
    images = train.images[idx]
    if args.dataset == "shapes":  # its canonical reading order (the other orders are references for BLEU)
        captions = [train.captions[i][0] for i in idx]
    else:  # every reference in turn, one per image
        captions = [train.captions[i][k % len(train.captions[i])] for k, i in enumerate(idx)]
    tokens = vocab.encode(captions, MAX_WORDS + 2)
    config = captioning.CaptionTrainConfig(steps=scale.train_steps, seed=seed)
    started = time.perf_counter()
    variables, history = captioning.train_captioner(
        captioner, images, tokens, config, progress=not args.quiet
    )
    info = {"seconds": round(time.perf_counter() - started, 1), "loss": history[-1], "images": len(idx)}
    captioning.save_captioner(folder, captioner, variables, vocab, info=info)
    (folder / "done").write_text("trained\n")
    return captioner, variables


def _features(captioner, variables, images, steps):
    return defenses.exit_features(captioning.step_probabilities(captioner, variables, images, steps=steps))


def _detection(captioner, variables, clean, attacked, steps, transform=None) -> dict:
    """SVM fitted on the first half (clean vs L∞-attacked, untransformed), scored on the second half,
    after `transform` when given (what the SoK does with JPEG / smoothing in front of the detector)."""
    half = len(clean) // 2
    fit = [_features(captioner, variables, im[:half], steps) for im in (clean, attacked)]
    detector = defenses.fit_detector(*fit)
    held = [im[half:] if transform is None else transform(im[half:]) for im in (clean, attacked)]
    report = defenses.detection_report(detector, *[_features(captioner, variables, im, steps) for im in held])
    report["detector_train_rows"] = 2 * half
    return report


def run_captioner(name: str, args, path: Path) -> None:
    scale = get_config(args.scale)
    done = finished(
        path, lambda r: r["row"], lambda r: r["captioner"] == name and r.get("seed", 0) == args.seed
    )
    if all(row in done for row in ROWS):
        print(f"[captions] {name}: all rows done, skipped")
        return
    train, test = task(args, scale)
    vocab = captioning.Vocabulary.build(train.captions)
    captioner, variables = trained_captioner(name, args, scale, train, vocab, seed=args.seed)
    half = np.random.default_rng(args.seed + 1).permutation(len(train))[: len(train) // 2]
    surrogate, surrogate_vars = trained_captioner(
        name, args, scale, train, vocab, seed=args.seed + 1, subset=np.sort(half), tag="_surrogate"
    )
    x = test.images.astype(np.float32) / 255.0
    cache = Path(args.outputs) / "slowdown_captions" / args.scale / f"{args.dataset}_{name}_seed{args.seed}"
    progress = not args.quiet
    linf = slowdown.NICGConfig(steps=scale.attack_steps)
    l2 = slowdown.NICGConfig.l2(steps=scale.attack_steps)
    adv = {
        "linf": lambda: cached_array(cache / "linf.npy", lambda: slowdown.nicg_attack(
            captioner, variables, x, linf, progress=progress)),
        "l2": lambda: cached_array(cache / "l2.npy", lambda: slowdown.nicg_attack(
            captioner, variables, x, l2, progress=progress)),
        "linf_margin": lambda: cached_array(cache / "linf_margin.npy", lambda: slowdown.nicg_attack(
            captioner, variables, x, dataclasses.replace(linf, objective="margin"), progress=progress)),
        "transfer_linf": lambda: cached_array(cache / "transfer_linf.npy", lambda: slowdown.nicg_attack(
            surrogate, surrogate_vars, x, linf, progress=progress)),
    }  # fmt: skip
    transforms = {
        "jpeg90": lambda im: defenses.jpeg(im, 90),
        "jpeg75": lambda im: defenses.jpeg(im, 75),
        "smooth": defenses.smooth,
    }
    clean_flops = None
    for row in ROWS:
        started = time.perf_counter()
        if row in done:
            print(f"[captions] {name}/{row}: done, skipped")
            continue
        source, _, defense = row.partition("+")
        if source == "detection":
            result = _detection(
                captioner, variables, x, adv["linf"](), scale.detect_steps, transforms.get(defense)
            )
        else:
            images = x if source == "clean" else adv[source]()
            if defense:
                images = transforms[defense](images)
            result = captioning.caption_outcome(
                captioner, variables, vocab, images, test.captions, latency_images=scale.latency_images
            )
            if clean_flops is None:
                clean_flops = float(np.mean(captioner.caption_flops(
                    captioner.caption(variables, x)[1])))  # fmt: skip
            result["flops_vs_clean"] = result["flops"] / clean_flops
        result.update(
            captioner=name, row=row, scale=args.scale, seed=args.seed, dataset=args.dataset,
            test_images=len(test), seconds=round(time.perf_counter() - started, 1),
            **stamp(),
        )  # fmt: skip
        append_record(path, result)
        shown = {k: round(result[k], 3) for k in ("words", "bleu4", "latency_ms", "auc") if k in result}
        print(f"[captions] {name}/{row}: {shown}")


def write_markdown(records: list[dict], scale: str) -> str:
    lines = [
        f"# NICGSlowDown and defenses on image captioners ({scale} scale)",
        "",
        f"Written by `experiments/slowdown_captions.py --scale {scale}` from "
        f"`slowdown_captions_{scale}.jsonl`. "
        f"Machine: {machines(records)}. Words: mean words per caption (<eos> not counted; decoding "
        f"stops at {MAX_WORDS + 2} steps); BLEU-4 against the references; FLOPs per caption relative to the "
        "clean captions'; latency: median measured batch-1 time of encoding + greedy decoding. `linf+jpeg75` "
        "= the L∞-attacked images re-compressed before the captioner sees them; `clean+...` = a defense's "
        "cost on clean images. Detection: RBF SVM on the first decoding steps' outputs, fitted on clean vs "
        "L∞-attacked images and scored on held-out ones (`+jpeg75`: the held-out images re-compressed "
        "first). Paper: the SoK's NICGSlowDown figures (its captioners on its caption data).",
        "",
        "| captioner | row | words | BLEU-4 | FLOPs vs clean | latency (ms) | cut at max | paper words "
        "| paper BLEU-4 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {row: i for i, row in enumerate(ROWS)}
    for r in sorted(records, key=lambda r: (r["captioner"], r.get("seed", 0), order.get(r["row"], 99))):
        paper = PAPER.get(r["row"], ("", ""))
        who = r["captioner"] + (f" (seed {r['seed']})" if r.get("seed") else "")
        if r["row"].startswith("detection"):
            lines.append(
                f"| {who} | {r['row']} (acc % / AUC; attacks caught %, false alarms %) "
                f"| {100 * r['accuracy']:.1f} | {r['auc']:.3f} | {100 * r['detected_attacks']:.1f} "
                f"| {100 * r['false_alarms']:.1f} | | {paper[0]} | |"
            )
            continue
        lines.append(
            f"| {who} | {r['row']} | {r['words']:.1f} | {r['bleu4']:.3f} | {r['flops_vs_clean']:.2f}x "
            f"| {r.get('latency_ms', float('nan')):.2f} | {100 * r['cut_at_max_len']:.0f} % "
            f"| {paper[0]} | {paper[1]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = runner_parser(__doc__, SCALES)
    parser.add_argument("--captioners", nargs="+", default=list(CAPTIONERS), choices=list(CAPTIONERS))
    parser.add_argument("--dataset", default="shapes", choices=("shapes", "flickr8k", "coco"))
    parser.add_argument("--seed", type=int, default=0, help="the captioners' training seed")
    args = parser.parse_args(argv)
    suffix = "" if args.dataset == "shapes" else f"_{args.dataset}"
    path = Path(args.results) / f"slowdown_captions_{args.scale}{suffix}.jsonl"
    for name in args.captioners:
        run_captioner(name, args, path)
    publish_markdown(path, write_markdown(read_records(path), args.scale))


if __name__ == "__main__":
    main()
