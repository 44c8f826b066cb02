"""The training commands: ``train-magface`` (a MagFace quality head on the built-in
backbone) and ``train-quality`` (a utility quality head).  Torch is imported inside."""

from __future__ import annotations

import os
import sys

from ..errors import QMagError
from .options import (
    add_onnx_options,
    int_in,
    layout_from_args,
    positive_float,
    probability,
    seed_int,
)


def cmd_train_magface(a) -> int:
    from tqdm import tqdm

    from ..encoders import load_encoder
    from ..quality.head import backbone_directions, save_quality_head
    from ..quality.magface import MagFaceConfig, build_training_set, train_quality_head

    enc = load_encoder("builtin-raw", device=a.device)
    bar = tqdm(desc="aligning + degrading", unit="img", file=sys.stderr, disable=None)

    def prog(done, n):
        bar.total = n
        bar.n = done
        bar.refresh()

    data = build_training_set(
        a.data,
        enc,
        n_degraded=a.degraded,
        seed=a.seed,
        aligned=a.aligned,
        progress=prog,
        feature_kind=a.features,
        max_severity=a.max_severity,
    )
    bar.close()
    if data["failed"]:
        print(f"{len(data['failed'])} images skipped, e.g. {data['failed'][0]}", file=sys.stderr)
    ebar = tqdm(total=a.epochs, desc="training quality head", unit="epoch", file=sys.stderr, disable=None)

    def eprog(ep, n, rec):
        ebar.n = ep
        ebar.set_postfix(loss=f"{rec['loss']:.3f}", mean_q=f"{rec['mean_a']:.1f}")
        ebar.refresh()

    dirs = backbone_directions(enc, data["features"]) if a.direction == "fixed" else None
    cfg = MagFaceConfig(u_a=a.u_a)
    head, hist = train_quality_head(
        data["features"],
        data["labels"],
        directions=dirs,
        epochs=a.epochs,
        lr=a.lr,
        dim=a.dim,
        seed=a.seed,
        cfg=cfg,
        device=a.device if a.device != "auto" else "cpu",
        checkpoint=a.checkpoint or a.out + ".ckpt",
        log=a.log or a.out + ".log.json",
        progress=eprog,
    )
    ebar.close()
    save_quality_head(
        head,
        a.out,
        {
            "features": a.features,
            "data": os.path.abspath(a.data),
            "direction": a.direction,
            "magface": {k: float(v) for k, v in vars(cfg).items()},
            "n_identities": len(data["identities"]),
            "max_severity": a.max_severity,
            "n_samples": int(len(data["labels"])),
            "degraded_per_image": a.degraded,
            "seed": a.seed,
            "epochs": a.epochs,
            "final_loss": hist[-1]["loss"],
        },
    )
    print(
        f"{len(data['identities'])} identities, {len(data['labels'])} samples (clean + {a.degraded} degraded each); "
        f"final loss {hist[-1]['loss']:.4f}, mean q {hist[-1]['mean_a']:.2f} -> {a.out}"
    )
    return 0


def cmd_train_quality(a) -> int:
    from ..quality.samples import split_by_identity
    from ..safeio import confine_paths
    from ..vision.images import list_images

    if not a.onnx and not a.out:
        raise QMagError("give --out FILE (or --onnx MODEL: the head goes beside the model)")
    fit_paths, val_paths = split_by_identity(list_images(a.data), a.val_fraction, a.seed)
    confine_paths(fit_paths + val_paths, a.data)  # a folder scan: only a symlink can lead out
    if a.onnx:
        return _train_embedding_head(a, fit_paths, val_paths)
    from ..encoders import load_encoder
    from ..quality.head import save_quality_head
    from ..quality.utility import fit_utility_head

    enc = load_encoder("builtin-raw", device=a.device)
    parts = _samples(a, enc, fit_paths, val_paths, "backbone")
    fit = fit_utility_head(parts[0]["features"], parts[0]["target"], parts[1]["features"], parts[1]["target"])
    n_ids = len({p.split("/")[0] for p in fit_paths}), len({p.split("/")[0] for p in val_paths})
    save_quality_head(
        fit.head,
        a.out,
        {
            "kind": "utility",
            "features": "multi",
            "family": a.family,
            "data": os.path.abspath(a.data),
            "degraded_per_photo": a.degraded,
            "seed": a.seed,
            "identities": {"fit": n_ids[0], "validation": n_ids[1]},
            "lost_faces": int(parts[0]["lost"] + parts[1]["lost"]),
            **fit.meta(),
        },
    )
    print(
        f"{n_ids[0]} + {n_ids[1]} identities (fit + validation), {fit.n_train} + {fit.n_val} samples "
        f"({a.family} family, {a.degraded} degraded per image and family); ridge λ {fit.lam:g}, validation "
        f"Spearman {fit.val_spearman[fit.lam]:.3f} -> {a.out}"
    )
    return 0


def _samples(a, enc, fit_paths, val_paths, features: str) -> list[dict]:
    """Utility samples of the fit and the validation identities, with progress."""
    from tqdm import tqdm

    from ..quality.samples import utility_samples

    parts = []
    for name, paths, seed in (("fit", fit_paths, a.seed), ("validation", val_paths, a.seed + 1)):
        bar = tqdm(
            total=len(paths),
            desc=f"degrading + encoding ({name} identities)",
            unit="img",
            file=sys.stderr,
            disable=None,
        )

        def prog(done, n, bar=bar):
            bar.n = done
            bar.refresh()

        d = utility_samples(
            enc,
            [os.path.join(a.data, p) for p in paths],
            family=a.family,
            n_degraded=a.degraded,
            seed=seed,
            aligned=a.aligned,
            progress=prog,
            features=features,
        )
        bar.close()
        if d["failed"]:
            print(f"{name}: {len(d['failed'])} images skipped, e.g. {d['failed'][0]}", file=sys.stderr)
        parts.append(d)
    return parts


def _train_embedding_head(a, fit_paths, val_paths) -> int:
    """--onnx MODEL: a utility head on the model's embedding alone, saved beside the model."""
    from ..encoders import open_onnx
    from ..outputs import check_output
    from ..quality.embedding_head import fit_embedding_head, head_path_for

    enc = open_onnx(a.onnx, device=a.device, layout=layout_from_args(a), quality_head=False)
    out = check_output(a.out or head_path_for(a.onnx), arg="--out", inputs=[a.onnx])
    parts = _samples(a, enc, fit_paths, val_paths, "embedding")
    ids = len({p.split("/")[0] for p in fit_paths}), len({p.split("/")[0] for p in val_paths})
    meta = {"family": a.family, "degraded_per_photo": a.degraded, "seed": a.seed, "identities": list(ids)}
    head = fit_embedding_head(parts[0], parts[1], enc.key, meta)
    head.save(out)
    beside = out.resolve() == head_path_for(a.onnx).resolve()
    where = "beside the model: picked up whenever it is opened" if beside else "(name it MODEL.quality.npz to use it)"
    m = head.meta
    lam = f"{m['lambda']:g}"
    print(
        f"{ids[0]} + {ids[1]} identities (fit + validation), {m['n_train']} + {m['n_val']} samples "
        f"({a.family} family); ridge λ {lam}, validation Spearman {m['val_spearman'][lam]:.3f} -> {out} {where}"
    )
    return 0


# ---------------------------------------------------------------- the parser
def _parser_train_magface(sub) -> None:
    p = sub.add_parser("train-magface", help="train a MagFace quality head on the built-in backbone")
    p.add_argument("--data", required=True, help="folder with one sub-folder of images per identity")
    p.add_argument("--out", required=True, help="quality head file (.pt, tensors only)")
    p.add_argument("--epochs", type=int_in(1, 10_000), default=30)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--dim", type=int_in(1, 4096), default=128)
    p.add_argument("--degraded", type=int_in(0, 100), default=6, help="seeded degraded copies per image")
    p.add_argument("--max-severity", type=positive_float, default=1.0, help="degradation severities ~ U(0.1, this)")
    p.add_argument(
        "--features",
        choices=("multi", "pooled"),
        default="multi",
        help="head input: per-stage statistics + pooled layer (768-d), or the pooled layer (256-d)",
    )
    p.add_argument(
        "--direction",
        choices=("fixed", "free"),
        default="fixed",
        help="MagFace embedding: the backbone's own direction x the head's length (default; q then "
        "measures how well the direction the encoder matches with fits its identity) or the head's output",
    )
    p.add_argument("--u-a", type=positive_float, default=110.0, help="MagFace upper magnitude u_a (l_a 10)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--aligned", action="store_true", help="images are aligned ArcFace-112 crops")
    p.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT.ckpt)")
    p.add_argument("--log", default=None, help="JSON training log (default OUT.log.json)")
    p.set_defaults(
        func=cmd_train_magface, writes=("out", "checkpoint", "log"), reads=("data",), image_folders=("data",)
    )


def _parser_train_quality(sub) -> None:
    p = sub.add_parser(
        "train-quality",
        help="train a utility quality head (q = predicted cosine to the clean "
        "capture x 100) on the built-in backbone; no identity labels needed beyond the folders",
    )
    p.add_argument("--data", required=True, help="folder with one sub-folder of images per identity (photos or crops)")
    p.add_argument(
        "--out",
        default=None,
        help="quality head file (.pt, tensors only; use with --head); with --onnx: MODEL.quality.npz beside the "
        "model by default, picked up whenever the model is opened",
    )
    p.add_argument(
        "--family",
        choices=("both", "crop", "capture"),
        default="both",
        help="degradations for the targets: of the aligned crop, of the whole photo before detection, or both",
    )
    p.add_argument("--degraded", type=int_in(1, 100), default=2, help="seeded degraded versions per image and family")
    p.add_argument(
        "--val-fraction", type=probability, default=0.25, help="identities held out to choose the ridge strength"
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--aligned", action="store_true", help="images are aligned ArcFace-112 crops (crop family only)")
    g = p.add_argument_group("any face model: a head on the embedding alone (numpy; no torch needed)")
    add_onnx_options(g)
    p.set_defaults(func=cmd_train_quality, writes=("out",), reads=("data", "onnx"), image_folders=("data",))


def add_train_commands(sub) -> None:
    """Add ``train-magface`` and ``train-quality`` to the ``qmag`` sub-parsers."""
    _parser_train_magface(sub)
    _parser_train_quality(sub)
