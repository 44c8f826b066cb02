"""Confined reads (qmag_core.safeio): paths a user gives stay under their root; special
files are refused, never waited on."""

import os

import pytest
from conftest import FACES, one_line_error, qmag

from qmag_core import io as D
from qmag_core.errors import QMagError
from qmag_core.safeio import confine_paths


# ------------------------------------------------------------ 1. data-root escape
@pytest.mark.parametrize("bad", ["../secret.jpg", "/etc/passwd", "a/../../secret.jpg", "link/secret.jpg"])
def test_pairs_path_outside_images_refused_whole_file(tmp_path, image_dir, bad):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((FACES / "img3.jpg").read_bytes())
    (image_dir / "link").symlink_to(tmp_path)  # a symlink inside the folder that leads out of it
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"path1,path2,label\na/1.jpg,a/2.jpg,1\na/1.jpg,{bad},0\n")
    r = qmag("evaluate", "--images", image_dir, "--pairs", pairs, "--no-cache")
    one_line_error(r, "pairs.csv, line 3", "outside the image folder", "refused")
    assert "embedded" not in r.stdout + r.stderr  # refused before any image was read


def test_list_file_naming_dev_zero_refused(tmp_path, image_dir):
    lst = tmp_path / "list.txt"
    lst.write_text("a/1.jpg\n/dev/zero\n")
    one_line_error(
        qmag("embed", "--list", lst, "--root", image_dir, "--out", tmp_path / "e.npz", "--no-cache"),
        "list.txt, line 2",
        "outside",
    )
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.slow
def test_special_file_inside_root_is_a_failed_row_not_a_hang(tmp_path, image_dir):
    os.mkfifo(image_dir / "a" / "pipe.jpg")
    (image_dir / "a" / "zero.jpg").symlink_to("/dev/zero")
    lst = tmp_path / "list.txt"
    lst.write_text("a/1.jpg\na/pipe.jpg\n")
    r = qmag("embed", "--list", lst, "--root", image_dir, "--out", tmp_path / "e.npz", "--no-cache")
    assert r.returncode == 0, r.stderr
    e = D.load_embeddings(tmp_path / "e.npz")
    assert e.ok.tolist() == [True, False] and "not a regular file" in e.error[1]
    with pytest.raises(QMagError, match="outside"):
        confine_paths(["a/zero.jpg"], image_dir)


@pytest.mark.parametrize("name", ["emb.npy", "emb.npz"])
def test_fifo_named_like_embeddings_is_refused_not_waited_on(tmp_path, name):
    f = tmp_path / name
    os.mkfifo(f)  # opening it for reading would wait for a writer forever
    with pytest.raises(QMagError, match="not a regular file"):
        D.load_embeddings(f)


def test_app_server_folder_pairs_escape_refused(tmp_path, image_dir, monkeypatch):
    from studio.datasets import dataset_from_folder

    monkeypatch.setenv("QMAG_DATA_ROOT", str(tmp_path))
    (tmp_path / "pairs.csv").write_text("path1,path2,label\na/1.jpg,a/2.jpg,1\na/1.jpg,/etc/passwd,0\n")
    with pytest.raises(QMagError) as ei:
        dataset_from_folder("images", "pairs.csv", encoder=None)
    msg = str(ei.value)
    assert "pairs.csv, line 3" in msg and "outside the image folder" in msg
    assert str(tmp_path) not in msg  # no absolute server path in what a browser sees
