import numpy as np
import pytest
from conftest import need_shared

from qmag_core import io as D
from qmag_core.errors import DataFormatError, QMagError
from qmag_core.evaluation.pairing import make_pairs, scores_from_embeddings


# ------------------------------------------------------------------ embeddings
def test_npz_roundtrip_with_failed_rows(tmp_path):
    rng = np.random.default_rng(0)
    e = rng.normal(size=(5, 4)).astype(np.float32)
    e[2] = 0.0
    emb = D.Embeddings.from_array(e, paths=[f"p/{i}.jpg" for i in range(5)], encoder="builtin")
    emb.encoder_key = "builtin-abc-def"
    emb.ok[4] = False
    emb.error[4] = "no face detected"
    f = tmp_path / "e.npz"
    D.save_embeddings(f, emb)
    with np.load(f, allow_pickle=False) as z:  # readable without pickle
        assert set(z.files) == {"embeddings", "quality", "paths", "ok", "error", "encoder", "encoder_key"}
        assert z["embeddings"].dtype == np.float32 and z["quality"].dtype == np.float32
    back = D.load_embeddings(f)
    assert back.encoder == "builtin" and back.encoder_key == "builtin-abc-def"
    np.testing.assert_array_equal(back.ok, [True, True, False, True, False])
    assert back.error[2] == "zero-norm embedding" and back.error[4] == "no face detected"
    assert np.isnan(back.embeddings[4]).all() and np.isnan(back.quality[2])
    np.testing.assert_allclose(back.quality[0], np.linalg.norm(e[0]), rtol=1e-6)


def test_npz_rejects_pickled_and_bad_shapes(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, embeddings=np.array([object(), 1], dtype=object))
    with pytest.raises(DataFormatError, match="object array"):
        D.load_embeddings(f)
    f2 = tmp_path / "shape.npz"
    np.savez(f2, embeddings=np.ones((3, 2), np.float32), quality=np.ones(4, np.float32))
    with pytest.raises(DataFormatError, match=r"'quality' must have shape \(3,\)"):
        D.load_embeddings(f2)
    f2b = tmp_path / "q.npz"
    np.savez(f2b, embeddings=np.array([[3.0, 4.0]], np.float32), quality=np.array([7.0], np.float32))
    with pytest.raises(DataFormatError, match=r"'quality' must equal the embedding lengths; row 0: stored 7, norm 5"):
        D.load_embeddings(f2b)
    f3 = tmp_path / "none.npz"
    np.savez(f3, feats=np.ones((3, 2)))
    with pytest.raises(DataFormatError, match="missing array 'embeddings'"):
        D.load_embeddings(f3)
    f4 = tmp_path / "garbage.npz"
    f4.write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="cannot read"):
        D.load_embeddings(f4)


def test_npy_plain(tmp_path):
    f = tmp_path / "e.npy"
    np.save(f, np.array([[3.0, 4.0], [0.0, 0.0]]))
    emb = D.load_embeddings(f)
    np.testing.assert_allclose(emb.quality[0], 5.0)
    assert not emb.ok[1] and emb.paths.tolist() == ["0", "1"]
    np.save(f, np.ones(3))
    with pytest.raises(DataFormatError, match=r"shape \(N, D\)"):
        D.load_embeddings(f)


def test_feat_list_real_magface_toy():
    p = need_shared("magface_toy", "feat.list")
    emb = D.load_embeddings(p)
    assert emb.embeddings.shape == (10, 512)
    np.testing.assert_allclose(
        emb.quality, [21.78, 22.16, 24.09, 24.40, 25.90, 27.11, 27.41, 28.22, 28.73, 30.25], atol=0.006
    )
    assert emb.paths[3] == "toy_imgs/3.jpg"


def test_feat_list_roundtrip_and_errors(tmp_path):
    emb = D.Embeddings.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) + 1, paths=["a.jpg", "b.jpg", "c.jpg"])
    f = tmp_path / "feat.list"
    D.write_feat_list(f, emb)
    assert f.read_text().splitlines()[0].endswith(" ")  # MagFace's trailing space
    np.testing.assert_array_equal(D.read_feat_list(f).embeddings, emb.embeddings)
    f.write_text("a.jpg 1 2 3\nb.jpg 1 2\nc.jpg 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected a path and 3 feature values, got 2"):
        D.read_feat_list(f)
    f.write_text("a.jpg 1 2 3\n\nb.jpg 1 x 3\n")
    with pytest.raises(DataFormatError, match=r"line 3: feature value 'x' is not a number"):
        D.read_feat_list(f)
    f.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataFormatError, match="not a text file"):
        D.read_feat_list(f)


# ------------------------------------------------------------------------ pairs
def test_lfw_pairs_dev_real():
    p = need_shared("lfw", "pairs_dev.txt")
    pairs = D.read_pairs(p)
    assert len(pairs) == 4200 and pairs.has_folds
    np.testing.assert_array_equal(np.bincount(pairs.fold), [600] * 7)
    assert pairs.label[:300].all() and not pairs.label[300:600].any()
    assert pairs.path1[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert (need_shared("lfw", "images") / pairs.path2[-1]).exists()


def test_lfw_pairs_without_header_infers_folds(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("A\t1\t2\nB\t1\tC\t2\nD\t1\t2\nE\t1\tF\t3\nG\t2\tH\t1\n")
    pairs = D.read_lfw_pairs(f)
    assert pairs.fold.tolist() == [0, 0, 1, 1, 1]
    assert pairs.label.tolist() == [1, 0, 1, 0, 0]
    assert pairs.path2[1] == "C/C_0002.jpg"
    f.write_text("A\t1\t2\nB\t1\t2\n")
    assert D.read_lfw_pairs(f).fold.tolist() == [-1, -1]


@pytest.mark.parametrize(
    "text, msg",
    [
        ("2\t1\nA\t1\t2\nB\t1\tC\t2\n", r"header says 2 folds of 1\+1 pairs \(4 lines\) but the file has 2"),
        ("1\t1\nA\t1\tC\t2\nB\t1\t2\n", r"line 2: expected a matched \(3 fields\) line"),
        ("A\t1\t2\nB\t1\n", r"line 2: expected 3 fields .* got 2"),
        ("A\tone\t2\n", r"line 1: image numbers must be integers"),
        ("\n\n", "empty pairs file"),
    ],
)
def test_lfw_pairs_errors(tmp_path, text, msg):
    f = tmp_path / "p.txt"
    f.write_text(text)
    with pytest.raises(DataFormatError, match=msg):
        D.read_lfw_pairs(f)


@pytest.mark.parametrize(
    "pos, neg", [("1", "0"), ("1", "-1"), ("true", "false"), ("Yes", "No"), ("same", "different"), ("TRUE", "False")]
)
def test_pairs_csv_label_codings(tmp_path, pos, neg):
    f = tmp_path / "p.csv"
    f.write_text(f"path1,path2,label\na.jpg,b.jpg,{pos}\nc.jpg,d.jpg,{neg}\n")
    assert D.read_pairs(f).label.tolist() == [1, 0]


def test_pairs_csv_crlf_mapping_and_folds(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes(b"left,right,verdict,fold\r\nx/a.jpg,x/b.jpg,same,0\r\ny/c.jpg,z/d.jpg,different,1")
    p = D.read_pairs_csv(f, columns={"path1": "left", "path2": "right", "label": "verdict"})
    assert p.path2.tolist() == ["x/b.jpg", "z/d.jpg"] and p.fold.tolist() == [0, 1] and p.has_folds
    assert p.line.tolist() == [2, 3]
    with pytest.raises(DataFormatError, match="column 'nope'"):
        D.read_pairs_csv(f, columns={"label": "nope"})


def test_pairs_csv_deepface_master_real():
    p = need_shared("deepface", "master.csv")
    pairs = D.read_pairs(p)
    assert len(pairs) == 300 and int(pairs.label.sum()) == 38
    assert (p.parent / pairs.path1[0]).exists()


@pytest.mark.parametrize(
    "body, msg",
    [
        ("path1,path2,label\na,b,maybe\n", r"line 2: label 'maybe' not understood"),
        ("path1,path2,label\na,b,1\nc,d\n", r"line 3: expected 3 fields like the header, got 2"),
        ("path1,path2,label\na,b,0\nc,d,-1\n", "mix 0 and -1"),
        ("foo,bar\na,b\n", "no column for 'path1'"),
        ("path1,path2,label,fold\na,b,1,x\n", r"line 2: fold must be an integer"),
        ("path1,path2,label\n,b,1\n", r"line 2: empty image path"),
        ("path1,path2,label\n", "no pairs after the header"),
    ],
)
def test_pairs_csv_errors(tmp_path, body, msg):
    f = tmp_path / "p.csv"
    f.write_text(body)
    with pytest.raises(DataFormatError, match=msg) as ei:
        D.read_pairs(f)
    assert str(f) in str(ei.value)


# ------------------------------------------------------------------ score table
def test_scores_csv_roundtrip(tmp_path):
    t = D.ScoreTable(
        np.array([0.5, -0.1]),
        np.array([20.0, 30.0]),
        np.array([25.0, 10.0]),
        np.array([1, 0], np.int8),
        np.array([0, 1]),
        {"encoder": "magface"},
    )
    f = tmp_path / "s.csv"
    D.write_scores_csv(f, t, s_hat=[0.5, -0.3])
    back = D.read_scores_csv(f)
    np.testing.assert_allclose(back.s, t.s)
    np.testing.assert_allclose(back.q_min, [20.0, 10.0])
    assert back.encoder == "magface" and back.fold.tolist() == [0, 1]
    assert back.extra["s_hat"].astype(float).tolist() == [0.5, -0.3]


def test_scores_csv_qmin_and_label_coding(tmp_path):
    f = tmp_path / "s.csv"
    f.write_bytes(b"S,Q_MIN,Label\r\n0.5,20,yes\r\n0.1,10,no\r\n")
    t = D.read_scores_csv(f)
    assert t.label.tolist() == [1, 0] and t.q_min.tolist() == [20.0, 10.0] and not t.has_folds


@pytest.mark.parametrize(
    "body, msg",
    [
        ("s,q1,q2,label\n0.5,20,20,1\n0.4,abc,20,0\n", r"line 3: column 'q1' expected a finite number, got 'abc'"),
        ("s,q1,q2,label\n0.5,20,20,1\n\n1.5,20,20,0\n", r"line 4: cosine s must lie in \[-1, 1\]"),
        ("# encoder=x\ns,q1,q2,label\n0.5,-2,20,1\n", r"line 3: quality must be ≥ 0"),
        ("s,q1,label\n0.5,20,1\n", "need columns q1 and q2, or q_min"),
        ("q1,q2,label\n1,2,1\n", "header must have columns s"),
        ("s,q1,q2,label\n0.5,20,20,2\n", r"line 2: label '2' not understood"),
        ("s,q1,q2,label\n0.5,nan,20,1\n", r"line 2: column 'q1' expected a finite number"),
        ("", "empty file"),
        ("s,q1,q2,label\n", "no score rows"),
        ("s,q1,q2,label,fold\n0.5,20,20,1,a\n", r"line 2: fold must be an integer"),
    ],
)
def test_scores_csv_errors(tmp_path, body, msg):
    f = tmp_path / "s.csv"
    f.write_text(body)
    with pytest.raises(DataFormatError, match=msg):
        D.read_scores_csv(f)


@pytest.mark.slow
def test_scores_csv_large_is_fast(tmp_path):
    import time

    n = 300_000
    rng = np.random.default_rng(0)
    t = D.ScoreTable(
        rng.uniform(-1, 1, n),
        rng.uniform(10, 30, n),
        rng.uniform(10, 30, n),
        rng.integers(0, 2, n).astype(np.int8),
        np.zeros(n, np.int64) - 1,
    )
    f = tmp_path / "big.csv"
    D.write_scores_csv(f, t)
    t0 = time.perf_counter()
    back = D.read_scores_csv(f)
    assert len(back) == n
    # generous bound: a Python-loop parser takes several seconds for 300k rows
    assert time.perf_counter() - t0 < 10


# --------------------------------------------------------------------- pair maker
def _fake_identity_tree(root, n_ids=12, per=4):
    for k in range(n_ids):
        d = root / f"id{k:02d}"
        d.mkdir(parents=True)
        for j in range(per if k % 5 else 1):  # some identities have one image only
            (d / f"{j}.jpg").write_bytes(b"x")
    return root


def test_make_pairs_seeded_and_identity_disjoint(tmp_path):
    root = _fake_identity_tree(tmp_path / "ids")
    a = make_pairs(root, n_genuine=20, n_imposter=30, n_folds=3, random_state=1)
    b = make_pairs(root, n_genuine=20, n_imposter=30, n_folds=3, random_state=1)
    c = make_pairs(root, n_genuine=20, n_imposter=30, n_folds=3, random_state=2)
    assert a.path1.tolist() == b.path1.tolist() and a.path2.tolist() == b.path2.tolist()
    assert a.path1.tolist() != c.path1.tolist() or a.path2.tolist() != c.path2.tolist()
    assert int(a.label.sum()) == 20 and int((a.label == 0).sum()) == 30
    ident = lambda p: p.split("/")[0]  # noqa: E731
    g = a.label == 1
    assert all(ident(x) == ident(y) and x != y for x, y in zip(a.path1[g], a.path2[g], strict=True))
    assert all(ident(x) != ident(y) for x, y in zip(a.path1[~g], a.path2[~g], strict=True))
    assert len(set(zip(a.path1, a.path2, strict=True))) == len(a)
    fold_of = {}
    for x, y, f in zip(a.path1, a.path2, a.fold, strict=True):
        for p in (x, y):
            assert fold_of.setdefault(ident(p), f) == f  # each identity in one fold
    with pytest.raises(QMagError, match="genuine pairs requested"):
        make_pairs(root, n_genuine=400, n_imposter=3, n_folds=3)
    with pytest.raises(QMagError, match="need at least"):
        make_pairs(root, n_genuine=4, n_imposter=3, n_folds=7)


def test_sample_pairs_every_genuine_pair_distinct_imposters_within_groups():
    from qmag_core.evaluation.pairing import sample_pairs

    ident = np.array(["b", "a", "b", "c", "a", "b", "d"])
    ij, gen = sample_pairs(ident, n_genuine=100, n_imposter=17, rng=np.random.default_rng(0))
    g = ij[gen]
    assert {tuple(sorted(p)) for p in g.tolist()} == {(1, 4), (0, 2), (0, 5), (2, 5)}  # every genuine pair once
    assert (ident[ij[~gen, 0]] != ident[ij[~gen, 1]]).all()
    # 17 = (7² − (3² + 2² + 1 + 1)) / 2: all imposter pairs, each once
    assert len({tuple(sorted(p)) for p in ij[~gen].tolist()}) == (~gen).sum() == 17
    with pytest.raises(QMagError, match="18 imposter pairs requested but only 17 exist"):
        sample_pairs(ident, n_genuine=1, n_imposter=18, rng=np.random.default_rng(0))
    with pytest.raises(QMagError, match="5 genuine pairs requested but only 4"):
        sample_pairs(ident, n_genuine=5, n_imposter=1, rng=np.random.default_rng(0), exact_genuine=True)
    capped, gen2 = sample_pairs(ident, n_genuine=2, n_imposter=5, rng=np.random.default_rng(0))
    assert gen2.sum() == 2 and {tuple(p) for p in capped[gen2].tolist()} <= {tuple(p) for p in g.tolist()}
    a, _ = sample_pairs(ident, n_genuine=2, n_imposter=5, rng=np.random.default_rng(3))
    b, _ = sample_pairs(ident, n_genuine=2, n_imposter=5, rng=np.random.default_rng(3))
    assert np.array_equal(a, b)
    # groups: pairs never cross a group; counts split evenly (remainder to the first groups)
    big = np.repeat(np.arange(40), 3)
    grp = big % 4
    ij, gen = sample_pairs(big, n_genuine=30, n_imposter=201, rng=np.random.default_rng(1), groups=grp)
    assert (grp[ij[:, 0]] == grp[ij[:, 1]]).all()
    assert np.bincount(grp[ij[~gen, 0]]).tolist() == [51, 50, 50, 50]
    assert np.bincount(grp[ij[gen, 0]]).tolist() == [8, 8, 7, 7]


def test_sample_pairs_imposters_are_uniform():
    """Every imposter pair is equally likely (chi-square over many seeded draws)."""
    from scipy.stats import chisquare

    from qmag_core.evaluation.pairing import sample_pairs

    ident = np.array([0, 0, 0, 1, 2, 2])  # 11 imposter pairs; identity sizes differ
    counts = {}
    for seed in range(600):
        ij, gen = sample_pairs(ident, n_genuine=0, n_imposter=3, rng=np.random.default_rng(seed))
        for p in ij[~gen].tolist():
            counts[tuple(p)] = counts.get(tuple(p), 0) + 1
    assert len(counts) == 11 and chisquare(list(counts.values())).pvalue > 1e-3


# ----------------------------------------------------------- embeddings + pairs
def test_scores_from_embeddings_reports_failures(tmp_path):
    e = np.eye(4, dtype=np.float32) * np.array([[10], [20], [30], [40]], dtype=np.float32)
    e[1] = e[0] * 2
    emb = D.Embeddings.from_array(e, paths=["imgs/a.jpg", "imgs/b.jpg", "imgs/c.jpg", "imgs/d.jpg"])
    emb.ok[3] = False
    pairs = D.Pairs(
        np.array(["a.jpg", "a.jpg", "c.jpg", "zz.jpg"]),
        np.array(["b.jpg", "c.jpg", "d.jpg", "a.jpg"]),
        np.array([1, 0, 0, 1], np.int8),
        np.full(4, -1),
        np.arange(2, 6),
    )
    t, rep = scores_from_embeddings(emb, pairs)
    assert rep == {
        "n_pairs": 4,
        "n_scored": 2,
        "n_missing_image": 1,
        "n_failed_embedding": 1,
        "failed_lines": [4, 5],
        "fta_rate": 0.5,
        "n_failed_genuine": 1,
        "n_failed_imposter": 1,
    }
    assert t.failed.label.tolist() == [0, 1] and t.failed.line.tolist() == [4, 5] and t.n_failed == 2
    np.testing.assert_allclose(t.s, [1.0, 0.0])
    np.testing.assert_allclose(t.q_min, [10.0, 10.0])
