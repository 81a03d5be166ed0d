"""The world's source corpus ("the internet"): characters rendered on the fly from the TrueType
fonts that ship inside matplotlib, with captions.

Every sample is a pure function of (seed, index): `render(seed, index)` draws its class, font,
geometry, stroke, blur, contrast and noise from `numpy.random.default_rng([seed, index])`, so
the corpus needs no storage and any slice of it can be rebuilt bit for bit. Images are 32x32 RGB,
dark ink on white (as the target, scikit-learn's digits, is). About a third are rendered at a low
resolution (8x8 .. 12x12) and upscaled bilinearly, which is how the sklearn digits were made; a
share of the captions names the style that was applied ("... in the style of pixelated"), in the
position the demo's inversion template puts its style token.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
STYLES = ["pixelated", "blurry", "bold", "thin", "faded", "noisy"]
TEMPLATE = "a photo of the {kind} {name}"
STYLE_TEMPLATE = "a photo of the {kind} {name} in the style of {style}"
SIZE = 32
CANVAS = 64

# Latin text faces only: no symbol, size-variant, display (partial) or math-italic faces.
_FONT_PREFIXES = ("DejaVuSans", "DejaVuSerif", "STIXGeneral", "cmr10", "cmb10", "cmss10", "cmtt10", "cmti10")
_FONT_EXCLUDE = ("Display",)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # uint8 [SIZE, SIZE, 3]
    caption: str
    kind: str  # "digit" | "letter"
    name: str  # "seven" | "k"
    styles: tuple[str, ...]  # every style applied (the caption names at most one)


def font_files() -> list[Path]:
    """The text faces among matplotlib's bundled TrueType fonts, sorted by file name."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = [p for p in folder.glob("*.ttf") if p.name.startswith(_FONT_PREFIXES)
             and not any(x in p.name for x in _FONT_EXCLUDE)]
    if not fonts:
        raise FileNotFoundError(f"no TrueType text faces found in {folder}")
    return sorted(fonts, key=lambda p: p.name)


@lru_cache(maxsize=512)
def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def caption_for(kind: str, name: str, style: str | None = None) -> str:
    if style is None:
        return TEMPLATE.format(kind=kind, name=name)
    return STYLE_TEMPLATE.format(kind=kind, name=name, style=style)


def _draw_glyph(rng: np.random.Generator, char: str, font: Path, stroke: int, fill: bool = False):
    """The character in dark ink on a white CANVAS x CANVAS grey image, centred. With `fill`, the
    glyph is scaled to fill most of the canvas height (as the scanned sklearn digits do)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(img)
    size = int(rng.integers(44, 60))
    if fill:
        left, top, right, bottom = draw.textbbox((0, 0), char, font=_font(str(font), 100))
        size = max(8, int(100 * CANVAS * rng.uniform(0.8, 0.95) / max(1, bottom - top)))
    f = _font(str(font), size)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=f, stroke_width=stroke)
    x = (CANVAS - (right - left)) / 2 - left
    y = (CANVAS - (bottom - top)) / 2 - top
    draw.text((x, y), char, fill=0, font=f, stroke_width=stroke, stroke_fill=0)
    return img


def _geometry(rng: np.random.Generator, img, tall: bool, fill: bool = False):
    """Random rotation, shear, anisotropic scale and offset (an inverse affine map, PIL's convention)."""
    from PIL import Image

    angle = np.deg2rad(rng.normal(0, 8))
    shear = rng.normal(0, 0.15)
    sx = rng.uniform(0.8, 1.15) if not fill else rng.uniform(0.9, 1.3)
    sy = sx * (rng.uniform(1.0, 1.35) if tall else rng.uniform(0.85, 1.15)) if not fill else rng.uniform(0.95, 1.05)
    cos, sin = np.cos(angle), np.sin(angle)
    fwd = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(fwd)
    c = CANVAS / 2
    offset = rng.normal(0, 2.0, size=2)
    centre = np.array([c, c]) - inv @ (np.array([c, c]) + offset)
    coeffs = (inv[0, 0], inv[0, 1], centre[0], inv[1, 0], inv[1, 1], centre[1])
    return img.transform((CANVAS, CANVAS), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR,
                         fillcolor=255)


def _choose_styles(rng: np.random.Generator) -> list[str]:
    styles = []
    if rng.random() < 0.35:
        styles.append("pixelated")
    if rng.random() < (0.1 if styles else 0.2):
        styles.append("blurry")
    weight = rng.random()
    if weight < 0.2:
        styles.append("bold")
    elif weight < 0.35:
        styles.append("thin")
    if rng.random() < 0.15:
        styles.append("faded")
    if rng.random() < 0.15:
        styles.append("noisy")
    return styles


def _finish(rng: np.random.Generator, img, styles: list[str]) -> np.ndarray:
    """Down to SIZE (through a low resolution when pixelated), blur, contrast and noise."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageFilter

    if "blurry" in styles:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.0, 2.0))))
    if "pixelated" in styles:
        low = int(rng.integers(8, 11))
        small = np.asarray(img.resize((low, low), Image.Resampling.BOX), dtype=np.float32)
        arr = F.interpolate(torch.from_numpy(small)[None, None], size=(SIZE, SIZE), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
    else:
        arr = np.asarray(img.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.float32)
    ink = arr / 255.0  # 0 = ink, 1 = paper
    dark, paper = (rng.uniform(0.35, 0.6), rng.uniform(0.8, 0.95)) if "faded" in styles else \
        (rng.uniform(0.0, 0.15), rng.uniform(0.95, 1.0))
    out = dark + (paper - dark) * ink
    sigma = rng.uniform(0.06, 0.12) if "noisy" in styles else rng.uniform(0.0, 0.02)
    out = out + rng.normal(0, sigma, size=out.shape)
    grey = np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def render(seed: int, index: int, *, digit_share: float = 0.5, caption_style_share: float = 0.6) -> Sample:
    """Sample `index` of the corpus drawn from `seed`: a digit with probability `digit_share`, else a
    letter (upper or lower case: captions are case-free, as CLIP's tokenizer lower-cases). When any
    style was applied, the caption names one of them with probability `caption_style_share`."""
    rng = np.random.default_rng([int(seed), int(index)])
    fonts = font_files()
    if rng.random() < digit_share:
        kind, cls = "digit", int(rng.integers(10))
        name, char = DIGITS[cls], str(cls)
    else:
        kind, cls = "letter", int(rng.integers(26))
        name = LETTERS[cls]
        char = name.upper() if rng.random() < 0.5 else name
    styles = _choose_styles(rng)
    pixelated = "pixelated" in styles
    stroke = int(rng.integers(2, 4)) if "bold" in styles else 0
    if pixelated and "thin" not in styles:
        stroke += int(rng.integers(1, 4))
    img = _draw_glyph(rng, char, fonts[int(rng.integers(len(fonts)))], stroke, fill=pixelated)
    if "thin" in styles:
        from PIL import ImageFilter

        img = img.filter(ImageFilter.MaxFilter(3))
    img = _geometry(rng, img, tall=kind == "digit" and rng.random() < 0.5, fill=pixelated)
    image = _finish(rng, img, styles)
    named = styles[int(rng.integers(len(styles)))] if styles and rng.random() < caption_style_share else None
    return Sample(image=image, caption=caption_for(kind, name, named), kind=kind, name=name, styles=tuple(styles))


def render_many(seed: int, start: int, count: int, **kwargs) -> list[Sample]:
    return [render(seed, i, **kwargs) for i in range(start, start + count)]


def vocabulary() -> list[str]:
    """Every word any caption (and the demo's inversion templates) can contain."""
    words = " ".join([TEMPLATE, STYLE_TEMPLATE]).replace("{kind}", "digit letter").split()
    words = [w for w in words if not w.startswith("{")]
    return list(dict.fromkeys(words + DIGITS + LETTERS + STYLES))
