"""Sharded embeddings (``qmag embed --shard-size``): the folder reads like the one .npz
of the same images, shards are written as they finish and a rerun resumes, damaged or
foreign folders are refused, and every reader (evaluate --features) takes the folder."""

import json
import os

import numpy as np
import pytest
from conftest import ROOT, need_shared, run_cli

from qmag_core.errors import DataFormatError, QMagError
from qmag_core.io.embeddings import load_embeddings

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install .[onnx])")
pytestmark = pytest.mark.slow  # every test shares a module fixture that embeds 66 photos twice (~9 s)

FACES = ROOT / "sample_data" / "faces" / "deepface"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The deepface sample photos plus a file that is no image and a blank wall (no face),
    embedded once as one .npz and once in shards of 7 (ONNX runtime: fast, no torch)."""
    import shutil

    from PIL import Image

    d = tmp_path_factory.mktemp("shards")
    shutil.copytree(FACES, d / "imgs")
    (d / "imgs" / "notes.jpg").write_bytes(b"not an image")
    Image.new("RGB", (200, 200), (90, 90, 90)).save(d / "imgs" / "wall.png")
    common = ("--images", d / "imgs", "--no-cache", "--runtime", "onnx")
    run_cli("embed", *common, "--out", d / "one.npz")
    r = run_cli("embed", *common, "--out", d / "sh", "--shard-size", "7")
    return d, r


def _same(a, b):
    assert a.paths.tolist() == b.paths.tolist() and a.error.tolist() == b.error.tolist()
    np.testing.assert_array_equal(a.ok, b.ok)
    np.testing.assert_array_equal(a.embeddings[a.ok], b.embeddings[b.ok])
    assert a.encoder_key == b.encoder_key and sorted(a.measures) == sorted(b.measures)


def test_shard_folder_reads_like_one_npz(embedded):
    d, r = embedded
    one, sh = load_embeddings(d / "one.npz"), load_embeddings(d / "sh")
    _same(sh, one)
    n = len(one.paths)
    man = json.loads((d / "sh" / "manifest.json").read_text())
    assert man["complete"] and man["rows"] == n and len(man["parts"]) == -(-n // 7)
    assert [p["rows"] for p in man["parts"]] == [7] * (n // 7) + ([n % 7] if n % 7 else [])
    assert sum(p["ok"] for p in man["parts"]) == int(one.ok.sum()) and (~one.ok).sum() == 2
    assert f"-> {d / 'sh'}/ ({len(man['parts'])} shards, 0 kept" in r.stdout


def test_rerun_resumes_after_the_finished_shards(embedded, tmp_path):
    import shutil

    d, _ = embedded
    sh = tmp_path / "sh"
    shutil.copytree(d / "sh", sh)
    man = json.loads((sh / "manifest.json").read_text())
    k = len(man["parts"])
    # as if the run had stopped after two shards
    (sh / "manifest.json").write_text(json.dumps({**man, "complete": False, "parts": man["parts"][:2]}))
    for p in man["parts"][2:]:
        (sh / p["file"]).unlink()
    with pytest.raises(DataFormatError, match="incomplete: 14 of .* rows written; run the same qmag embed"):
        load_embeddings(sh)
    r = run_cli("embed", "--images", d / "imgs", "--no-cache", "--runtime", "onnx", "--out", sh, "--shard-size", "7")
    assert f"({k} shards, 2 kept from before" in r.stdout
    assert f"{len(load_embeddings(d / 'one.npz').paths) - 14} images:" in r.stderr  # only the rest was embedded
    _same(load_embeddings(sh), load_embeddings(d / "one.npz"))
    r = run_cli(
        "embed", "--images", FACES, "--no-cache", "--runtime", "onnx", "--out", sh, "--shard-size", "5", check=False
    )
    assert r.returncode == 2 and "holds shards of another image list or shard size" in r.stderr


def test_damaged_or_foreign_shard_folders_are_refused(embedded, tmp_path):
    import shutil

    d, _ = embedded
    sh = tmp_path / "sh"
    shutil.copytree(d / "sh", sh)
    part = sh / "part-00001.npz"
    data = bytearray(part.read_bytes())
    data[-40] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match="checksum differs from the manifest"):
        load_embeddings(sh)
    shutil.copyfile(d / "sh" / "part-00001.npz", part)
    load_embeddings(sh)
    man = json.loads((sh / "manifest.json").read_text())
    bad = {**man, "parts": [{**man["parts"][0], "file": "../one.npz"}] + man["parts"][1:]}
    (sh / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"needs 'file' \(part-NNNNN.npz\)"):
        load_embeddings(sh)
    (sh / "manifest.json").write_text(json.dumps(man))
    p0 = sh / "part-00000.npz"
    p0.unlink()
    os.symlink(d / "one.npz", p0)  # a link leading out of the folder
    with pytest.raises(DataFormatError, match="leading out of the shard folder"):
        load_embeddings(sh)
    with pytest.raises(DataFormatError, match="needs manifest.json"):
        load_embeddings(tmp_path)
    for rows in (None, "50", -1):  # a missing or wrong row count is named, not a crash while reporting
        (sh / "manifest.json").write_text(json.dumps({**man, "complete": False, "rows": rows}))
        with pytest.raises(DataFormatError, match="'rows' must be the number of images"):
            load_embeddings(sh)
    (sh / "manifest.json").write_text(json.dumps({**man, "rows": man["rows"] + 1}))  # complete, but a row short
    with pytest.raises(DataFormatError, match="the parts hold .* rows, the manifest says"):
        load_embeddings(sh)
    (sh / "manifest.json").write_text(json.dumps(man))
    p0.unlink()
    os.mkfifo(p0)  # a FIFO named like a shard: refused, not waited on
    with pytest.raises(QMagError, match="not a regular file"):
        load_embeddings(sh)
    (sh / "manifest.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_embeddings(sh)


def test_evaluate_reads_the_shard_folder(embedded, tmp_path):
    d, _ = embedded
    one = load_embeddings(d / "one.npz")
    names = one.paths.tolist()
    rows = ["path1,path2,label"] + [f"{names[i]},{names[i + 1]},{i % 2}" for i in range(0, len(names) - 1)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    reports = []
    for src in (d / "one.npz", d / "sh"):
        out = tmp_path / f"{src.name}.json"
        run_cli("evaluate", "--features", src, "--pairs", tmp_path / "p.csv", "--json", out)
        reports.append(json.loads(out.read_text()))
    assert reports[0]["baseline"] == reports[1]["baseline"] and reports[0]["pairs_report"] == reports[1]["pairs_report"]
    assert reports[0]["pairs_report"]["fta_rate"] > 0  # the photos without a face count
    r = run_cli("evaluate", "--features", d / "sh", check=False)
    assert r.returncode == 2 and "--features goes with --pairs" in r.stderr


def test_ray_engine_writes_the_same_shards(tmp_path):
    """--engine ray with the ONNX runtime and shards gives the local engine's rows."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install .[ray])")
    import shutil

    photos = need_shared("lfw_photos", "images")
    root = tmp_path / "imgs"
    root.mkdir()
    for f in sorted(photos.rglob("*.jpg"))[::11][:60]:
        shutil.copy(f, root / f.name)
    (root / "notes.jpg").write_bytes(b"not an image")
    common = ("--images", root, "--no-cache", "--runtime", "onnx")
    run_cli("embed", *common, "--out", tmp_path / "local.npz")
    run_cli("embed", *common, "--out", tmp_path / "ray", "--shard-size", "25", "--engine", "ray")
    a, b = load_embeddings(tmp_path / "local.npz"), load_embeddings(tmp_path / "ray")
    assert a.paths.tolist() == b.paths.tolist() and a.error.tolist() == b.error.tolist() and (~a.ok).sum() == 1
    assert np.abs(a.embeddings[a.ok] - b.embeddings[b.ok]).max() < 1e-5
    assert len(json.loads((tmp_path / "ray" / "manifest.json").read_text())["parts"]) == 3
