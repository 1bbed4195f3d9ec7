"""Omniglot N-way K-shot tasks from a local copy (appendix C.1: 20-way 1-shot, Vinyals split).

Reads the standard folders of https://github.com/brendenlake/omniglot (`python/`):
`DATA_DIR/images_background/<alphabet>/<character>/*.png` and the same under
`images_evaluation` (torchvision's `DATA_DIR/omniglot-py/...` layout is accepted too). Nothing is
ever downloaded: a missing or malformed directory raises an error that names it and the fix.

The split is Vinyals et al. (2016)'s as torchmeta implements it for Deleu et al. (2019) (1028
train / 172 val / 423 test characters): val is five whole background alphabets, test twelve
evaluation alphabets plus Gurmukhi characters 42-45, train everything else. With `rotations`,
each character rotated by 0, 90, 180 and 270 degrees is its own class (torchmeta's
`Rotation([90, 180, 270])` class augmentation, as Deleu et al. use). Images are inverted (strokes
1, background 0), resized to 28 x 28 and flattened to 784 inputs for the MLPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.supervised.maml import X_QUERY, X_SUPPORT, Y_QUERY, Y_SUPPORT, LossKind
from ray_macaw.supervised.tasks import check_split

FOLDERS = ("images_background", "images_evaluation")
IMAGE_SIZE = 28
VAL_ALPHABETS = frozenset(  # in images_background
    {"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"}
)
TEST_ALPHABETS = frozenset(  # in images_evaluation
    {
        "Kannada",
        "Keble",
        "Malayalam",
        "Manipuri",
        "Mongolian",
        "Old_Church_Slavonic_(Cyrillic)",
        "Oriya",
        "Sylheti",
        "Syriac_(Serto)",
        "Tengwar",
        "Tibetan",
        "ULOG",
    }
)
TEST_GURMUKHI = frozenset(f"character{i}" for i in range(42, 46))  # Gurmukhi 42-45 are test
FIX_DOWNLOAD = (
    "download images_background.zip and images_evaluation.zip from "
    "https://github.com/brendenlake/omniglot/tree/master/python, unzip both into one directory "
    "and set data_dir to it (ray-macaw never downloads data)"
)


def vinyals_split(folder: str, alphabet: str, character: str) -> str:
    """'train', 'val' or 'test' for one character under the Vinyals split."""
    if folder == "images_background":
        return "val" if alphabet in VAL_ALPHABETS else "train"
    if alphabet in TEST_ALPHABETS or (alphabet == "Gurmukhi" and character in TEST_GURMUKHI):
        return "test"
    return "train"


def find_root(data_dir: str | Path) -> Path:
    """The directory that holds images_background / images_evaluation, or a clear error."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise MissingDataError("Omniglot directory not found", FIX_DOWNLOAD, data_dir)
    for root in (data_dir, data_dir / "omniglot-py"):
        if any((root / folder).is_dir() for folder in FOLDERS):
            return root
    raise DataError(
        "no images_background or images_evaluation folder in the Omniglot directory",
        FIX_DOWNLOAD,
        data_dir,
    )


def scan_characters(root: Path) -> dict[str, list[Path]]:
    """Character directories (those holding PNGs) of each split, sorted."""
    splits: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for folder in FOLDERS:
        for alphabet in sorted(p for p in (root / folder).glob("*") if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                if any(character.glob("*.png")):
                    split = vinyals_split(folder, alphabet.name, character.name)
                    splits[split].append(character)
    if not any(splits.values()):
        raise DataError(
            "no alphabets found: expected <images_background|images_evaluation>/<alphabet>/"
            "<character>/*.png",
            FIX_DOWNLOAD,
            root,
        )
    return splits


def load_image(path: Path) -> np.ndarray:
    """One character image: grayscale, inverted (strokes 1), 28 x 28, values in [0, 1]."""
    try:
        with Image.open(path) as image:
            gray = ImageOps.invert(image.convert("L"))
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read the image ({e})", "replace or delete the file", path) from e
    small = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32) / 255.0


@dataclass
class OmniglotTasks:
    """N-way K-shot Omniglot classification tasks (appendix C.1: N = 20, K = 1).

    Args:
        data_dir: Local Omniglot directory (see the module docstring).
        ways: N, classes per task.
        shots: K, support images per class.
        query: Query images per class (15, as Deleu et al.'s `test_shots`).
        rotations: Rotated characters as extra classes (x4 classes).
    """

    data_dir: str | Path
    ways: int = 20
    shots: int = 1
    query: int = 15
    rotations: bool = True
    in_dim: int = field(default=IMAGE_SIZE * IMAGE_SIZE, init=False)
    loss_kind: LossKind = field(default="cross_entropy", init=False)
    classes: dict[str, list[tuple[Path, int]]] = field(init=False, repr=False)
    _cache: dict[Path, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = find_root(self.data_dir)
        turns = range(4) if self.rotations else range(1)
        self.classes = {
            split: [(character, k) for character in characters for k in turns]
            for split, characters in scan_characters(self.root).items()
        }
        for split in ("train", "val"):
            if len(self.classes[split]) < self.ways:
                raise DataError(
                    f"the '{split}' split has {len(self.classes[split])} classes; "
                    f"{self.ways}-way tasks need at least {self.ways}",
                    "use the complete images_background and images_evaluation folders, or "
                    "fewer ways",
                    self.root,
                )

    @property
    def out_dim(self) -> int:
        """One logit per class of a task."""
        return self.ways

    def images(self, character: Path) -> np.ndarray:
        """(n, 28, 28) images of one character, read once and cached."""
        if character not in self._cache:
            files = sorted(character.glob("*.png"))
            if len(files) < self.shots + self.query:
                raise DataError(
                    f"{len(files)} images of a character; shots + query = "
                    f"{self.shots + self.query} are needed",
                    "lower shots or query, or restore the character's images",
                    character,
                )
            self._cache[character] = np.stack([load_image(f) for f in files])
        return self._cache[character]

    def _task(self, split: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(ways, shots + query, 784) images and (ways, shots + query) labels of one task."""
        pool = self.classes[split]
        chosen = rng.choice(len(pool), self.ways, replace=False)  # random order: random labels
        xs = []
        for index in chosen:
            character, turns = pool[index]
            images = self.images(character)
            picked = images[rng.choice(len(images), self.shots + self.query, replace=False)]
            xs.append(np.rot90(picked, turns, axes=(1, 2)).reshape(len(picked), -1))
        labels = np.repeat(np.arange(self.ways)[:, None], self.shots + self.query, axis=1)
        return np.stack(xs), labels

    def evaluation_tasks(
        self, split: str, start: int, n_tasks: int, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Evaluation tasks: random tasks from `rng`, which the caller seeds the same each time."""
        return self.sample(split, n_tasks, rng)

    def sample(self, split: str, n_tasks: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """`n_tasks` tasks: support (n, ways * shots, 784), query (n, ways * query, 784)."""
        check_split(split)
        tasks = [self._task(split, rng) for _ in range(n_tasks)]
        x = np.stack([t[0] for t in tasks])  # (n, ways, shots + query, 784)
        y = np.stack([t[1] for t in tasks])
        k = self.shots
        return {
            X_SUPPORT: torch.as_tensor(_merge_classes(x[:, :, :k]), dtype=torch.float32),
            Y_SUPPORT: torch.as_tensor(_merge_classes(y[:, :, :k]), dtype=torch.long),
            X_QUERY: torch.as_tensor(_merge_classes(x[:, :, k:]), dtype=torch.float32),
            Y_QUERY: torch.as_tensor(_merge_classes(y[:, :, k:]), dtype=torch.long),
        }


def _merge_classes(a: np.ndarray) -> np.ndarray:
    """(tasks, ways, per class, ...) -> (tasks, ways * per class, ...)."""
    return a.reshape(a.shape[0], a.shape[1] * a.shape[2], *a.shape[3:])
