"""Helpers of the ``vgloss label`` tests: a folder of a few hundred small real JPEGs with bad files
among them, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PHOTOS_PER_FOLDER = 50
FOLDERS = 6
BAD_FILES = {  # file below the folder -> the error code its row must carry
    "bad/empty.jpg": "empty_image",
    "bad/not_an_image.jpg": "invalid_image",
    "bad/truncated.jpg": "invalid_image",
}


@dataclass
class PhotoFolder:
    root: Path
    images: list[str]  # every path `vgloss label root` must give a row, as it names them
    bad: dict[str, str]  # path -> expected error code


def write_photo_folder(root: Path, photos: list[Path]) -> PhotoFolder:
    """``root/nested/dK/img_NNN.jpg``: 300 small JPEGs cut from real photographs (each crop a
    different window and size), three bad files under ``root/bad``, and files that must be left
    out: a .txt, a hidden folder, a hidden file."""
    from PIL import Image

    sources = [Image.open(photo).convert("RGB") for photo in photos]
    images = []
    for number in range(PHOTOS_PER_FOLDER * FOLDERS):
        photo = sources[number % len(sources)]
        w, h = photo.size
        side = 48 + (number * 7) % 80
        left, top = (number * 37) % max(1, w - side), (number * 53) % max(1, h - side)
        path = root / "nested" / f"d{number // PHOTOS_PER_FOLDER}" / f"img_{number:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.crop((left, top, left + side, top + side)).resize((64, 64)).save(path, "JPEG", quality=85)
        images.append(path)
    (root / "bad").mkdir()
    (root / "bad" / "empty.jpg").write_bytes(b"")
    (root / "bad" / "not_an_image.jpg").write_text("these are notes, not a JPEG\n")
    whole = photos[0].read_bytes()
    (root / "bad" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "notes.txt").write_text("not an image suffix: never listed\n")
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.jpg").write_bytes(images[0].read_bytes())
    (root / "nested" / ".hidden.jpg").write_bytes(images[0].read_bytes())
    given = root.as_posix()
    listed = [f"{given}/{name}" for name in BAD_FILES] + [f"{given}/{p.relative_to(root).as_posix()}" for p in images]
    return PhotoFolder(root, sorted(listed), {f"{given}/{name}": code for name, code in BAD_FILES.items()})


def vgloss(*args: str, env: dict, cwd: Path, check: bool = True, **popen) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VGLOSS_")} | env
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "gloss_gen.cli", *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=600, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"vgloss {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc
