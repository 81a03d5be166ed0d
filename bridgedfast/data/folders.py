"""A folder of class sub-folders of images, read the way torchvision's `ImageFolder` reads it
(`find_classes` + `make_dataset`): class = sub-folder name, sorted; the images of a class are
found recursively (links followed, each real folder once, so a link loop ends) in sorted order. Hidden files and folders are skipped.
`pack` and style inversion both read real images through `scan_class_folders`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "ClassFolders", "scan_class_folders"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".gif")


@dataclass
class ClassFolders:
    root: Path
    classes: list[str]                                              # sub-folder names, sorted
    images: list[tuple[Path, int]] = field(default_factory=list)    # (file, label), class by class
    not_images: list[Path] = field(default_factory=list)            # other files found in the class folders

    def count(self, label: int) -> int:
        return sum(1 for _, lab in self.images if lab == label)


def scan_class_folders(root: str | os.PathLike, what: str = "folder") -> ClassFolders:
    """The classes and image files under `root`. Raises FileNotFoundError when `root` does not
    exist and ValueError when it is not a folder (`what` names it in the message); an empty
    result is for the caller to judge."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{what} {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"{what} {str(root)!r} is not a folder (expected a folder of class sub-folders of images)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = ClassFolders(root, classes)
    for label, name in enumerate(classes):
        seen: set[tuple[int, int]] = set()  # (device, inode) of each real folder walked for this class
        for folder, dirs, names in os.walk(root / name, followlinks=True):
            real = os.stat(folder)
            if (real.st_dev, real.st_ino) in seen:  # reached again through a link: a loop or a second path
                dirs[:] = []
                continue
            seen.add((real.st_dev, real.st_ino))
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in sorted(names):
                if n.startswith("."):
                    continue
                path = Path(folder) / n
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    found.images.append((path, label))
                else:
                    found.not_images.append(path)
    return found
