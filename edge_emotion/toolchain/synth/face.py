"""Procedurally drawn faces that MTCNN really detects, with a class-dependent expression.

No photo is bundled: every face is drawn from code (PIL, 2x supersampled, then
downscaled and blurred so edges look like a camera's, not a vector drawing).
What makes MTCNN fire on a drawing: a skin-toned oval darker at its rim, dark
pupils in pale sclerae inside shaded eye sockets, a shaded nose with nostrils,
full lips, hair and ears framing the oval, and a background that is not
skin-coloured. Measured with `edge_emotion.preprocess.faces.FaceDetector` (MTCNN, min face 40 px):
99.6 % of 240 random looks drawn at 240x180, 99.7 % of 576 frames of the default
corpus (8 per clip, after FLV coding).

The expression encodes the *video cue*, one of three groups (see `corpus.py`):
  0 {ANG, DIS}: brows slanted down to the nose, narrowed eyes, downturned lips;
  1 {FEA, HAP}: brows raised, wide eyes, open round mouth;
  2 {NEU, SAD}: flat brows, normal eyes, closed lips.
Within a group the face carries no information about the class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Colour = tuple[int, int, int]
Scaler = Callable[..., list[float]]  # output-frame coordinates -> supersampled canvas coordinates

SUPERSAMPLE = 2  # draw at 2x, then downscale: anti-aliased edges (3x detects no better, costs twice)
MOUTH_LEVELS = 4  # the talking mouth is drawn at this many openings, then picked per frame

SKIN_BASE: Colour = (235, 190, 160)
HAIR_COLOURS: tuple[Colour, ...] = (
    (30, 20, 15), (60, 40, 25), (100, 70, 40), (160, 120, 70), (20, 20, 20), (120, 50, 30)
)
BACKGROUNDS: tuple[Colour, ...] = (  # cool and grey: never skin-coloured
    (70, 150, 90), (90, 110, 140), (150, 150, 150), (60, 90, 70), (110, 140, 170), (180, 190, 200), (40, 60, 90)
)
SHIRTS: tuple[Colour, ...] = ((50, 60, 110), (40, 40, 45), (120, 40, 40), (200, 200, 205), (60, 100, 60))


def shade(colour: Colour, factor: float) -> Colour:
    """Scale a colour's brightness, clipped to [0, 255]."""
    return tuple(int(min(255.0, max(0.0, c * factor))) for c in colour)  # type: ignore[return-value]


@dataclass(frozen=True)
class Look:
    """An actor's appearance: the nuisance the video model must ignore."""

    skin: Colour
    hair: Colour
    background: Colour
    shirt: Colour
    face_width: float  # pixels in the output frame (height is 1.3x)
    offset: tuple[float, float]  # face centre offset from the frame centre, pixels


def random_look(rng: np.random.Generator, width: int, height: int) -> Look:
    """Draw an actor's look; skin 0.6-1.05 of the base and cool backgrounds keep detection above 99 %."""
    face_width = min(height, 0.75 * width) * rng.uniform(0.38, 0.5)  # portrait frames: keep the head inside
    return Look(
        skin=shade(SKIN_BASE, rng.uniform(0.6, 1.05)),
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        background=shade(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], rng.uniform(0.85, 1.15)),
        shirt=SHIRTS[rng.integers(len(SHIRTS))],
        face_width=float(face_width),
        offset=(float(rng.uniform(-0.1, 0.1) * width), float(rng.uniform(-0.04, 0.04) * height)),
    )


def draw_face(look: Look, group: int, mouth: float, width: int, height: int, margin: int = 0) -> np.ndarray:
    """One frame's face, [height + 2*margin, width + 2*margin, 3] uint8.

    `mouth` in [0, 1] is how far the talking mouth is open; `margin` extra pixels
    on every side let the caller move the head by cropping (cheap head motion).
    """
    s = SUPERSAMPLE
    canvas_w, canvas_h = width + 2 * margin, height + 2 * margin
    image = Image.new("RGB", (canvas_w * s, canvas_h * s), look.background)
    draw = ImageDraw.Draw(image)
    fw = look.face_width
    fh = fw * 1.3
    cx = canvas_w / 2 + look.offset[0]
    cy = canvas_h / 2 + look.offset[1] + 0.05 * height

    def box(*v: float) -> list[float]:
        return [x * s for x in v]

    _draw_head(draw, box, look, cx, cy, fw, fh)
    _draw_eyes_and_brows(draw, box, look, group, cx, cy - fh / 2, fw, fh, s)
    _draw_nose(draw, box, look.skin, cx, cy - fh / 2, fw, fh, s)
    _draw_mouth(draw, box, look.skin, group, mouth, cx, cy - fh / 2 + fh * 0.8, fw, fh, s)
    image = image.resize((canvas_w, canvas_h), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.7))
    return np.asarray(image)


def _draw_head(draw: ImageDraw.ImageDraw, box: Scaler, look: Look, cx: float, cy: float, fw: float, fh: float) -> None:
    """Shoulders, neck, hair, ears and a face oval shaded darker towards its rim."""
    x0, y0 = cx - fw / 2, cy - fh / 2
    draw.ellipse(box(cx - fw * 1.1, cy + fh * 0.45, cx + fw * 1.1, cy + fh * 1.6), fill=look.shirt)
    draw.rectangle(box(cx - fw * 0.18, cy + fh * 0.3, cx + fw * 0.18, cy + fh * 0.6), fill=shade(look.skin, 0.75))
    draw.ellipse(box(x0 - fw * 0.06, y0 - fh * 0.06, x0 + fw * 1.06, y0 + fh * 0.7), fill=look.hair)
    for ex in (x0 - fw * 0.07, x0 + fw * 0.9):
        draw.ellipse(box(ex, cy - fh * 0.1, ex + fw * 0.17, cy + fh * 0.12), fill=shade(look.skin, 0.85))
    for k in range(8):  # concentric ovals: 0.8 at the rim -> 1.0 inside
        f = k / 8
        oval = box(x0 + fw * 0.06 * f, y0 + fh * 0.05 * f, x0 + fw - fw * 0.06 * f, y0 + fh - fh * 0.03 * f)
        draw.ellipse(oval, fill=shade(look.skin, 0.8 + 0.2 * f**0.5))
    draw.chord(box(x0, y0 - fh * 0.02, x0 + fw, y0 + fh * 0.42), 180, 360, fill=look.hair)


def _draw_eyes_and_brows(
    draw: ImageDraw.ImageDraw, box: Scaler, look: Look, group: int, cx: float, top: float, fw: float, fh: float, s: int
) -> None:
    """Eye sockets, sclerae, irises, pupils; the brows' slant and the eyes' opening carry the cue."""
    ey = top + fh * 0.45
    eye_open = (0.025, 0.045, 0.035)[group]  # narrowed, wide, normal (fraction of face height)
    for side in (-1, 1):
        ex = cx + side * fw * 0.21
        draw.ellipse(box(ex - fw * 0.15, ey - fh * 0.08, ex + fw * 0.15, ey + fh * 0.07), fill=shade(look.skin, 0.82))
        draw.ellipse(box(ex - fw * 0.11, ey - fh * eye_open, ex + fw * 0.11, ey + fh * eye_open), fill=(235, 235, 230))
        iris = min(eye_open + 0.005, 0.04)
        draw.ellipse(box(ex - fw * 0.05, ey - fh * iris, ex + fw * 0.05, ey + fh * iris), fill=(50, 35, 25))
        draw.ellipse(box(ex - fw * 0.02, ey - fh * 0.015, ex + fw * 0.02, ey + fh * 0.015), fill=(5, 5, 5))
        brow = ey - fh * 0.1
        # (inner end, outer end) heights: slanted down to the nose, raised, flat
        heights = ((brow + fh * 0.045, brow - fh * 0.03), (brow - fh * 0.07, brow - fh * 0.05), (brow, brow))
        inner, outer = heights[group]
        ends = box(cx + side * fw * 0.08, inner, cx + side * fw * 0.34, outer)
        draw.line(ends, fill=shade(look.hair, 0.8), width=int(fh * 0.045 * s))


def _draw_nose(
    draw: ImageDraw.ImageDraw, box: Scaler, skin: Colour, cx: float, top: float, fw: float, fh: float, s: int
) -> None:
    """A nose lit from the left: lighter bridge, shadowed right side, dark nostrils."""
    ey, ny = top + fh * 0.45, top + fh * 0.66
    bridge = box(cx - fw * 0.03, ey, cx - fw * 0.09, ny, cx + fw * 0.09, ny, cx + fw * 0.03, ey)
    draw.polygon(bridge, fill=shade(skin, 0.9))
    draw.line(box(cx + fw * 0.03, ey, cx + fw * 0.08, ny), fill=shade(skin, 0.7), width=s * 2)
    for x1, x2 in ((-0.08, -0.02), (0.02, 0.08)):
        draw.ellipse(box(cx + fw * x1, ny - fh * 0.02, cx + fw * x2, ny + fh * 0.015), fill=shade(skin, 0.45))


def _draw_mouth(
    draw: ImageDraw.ImageDraw,
    box: Scaler,
    skin: Colour,
    group: int,
    mouth: float,
    cx: float,
    my: float,
    fw: float,
    fh: float,
    s: int,
) -> None:
    """Downturned lips (0), an open round mouth (1) or closed lips (2); `mouth` animates speech."""
    mw = fw * 0.2
    lip = shade((190, 80, 80), 0.6 + 0.4 * float(np.mean(skin)) / 200)
    dark = (60, 15, 15)
    if group == 0:
        draw.chord(box(cx - mw, my - fh * 0.02, cx + mw, my + fh * 0.14), 190, 350, fill=lip)
        gap = 2 + int(3 * mouth)
        draw.arc(box(cx - mw, my, cx + mw, my + fh * 0.14), 200, 340, fill=dark, width=s * gap)
    elif group == 1:
        o = fh * (0.04 + 0.05 * mouth)
        draw.ellipse(box(cx - mw * 0.8, my - o - fh * 0.025, cx + mw * 0.8, my + o + fh * 0.025), fill=lip)
        draw.ellipse(box(cx - mw * 0.6, my - o, cx + mw * 0.6, my + o), fill=dark)
    else:
        o = fh * 0.012 * mouth
        draw.ellipse(box(cx - mw, my - fh * 0.03 - o, cx + mw, my + fh * 0.005), fill=lip)
        draw.ellipse(box(cx - mw * 0.9, my - fh * 0.005, cx + mw * 0.9, my + fh * 0.035 + o), fill=shade(lip, 1.1))
        draw.line(box(cx - mw, my, cx + mw, my), fill=dark, width=s * (2 + int(2 * mouth)))
