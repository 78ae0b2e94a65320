"""Procedural face renderer behind :mod:`facegan_kit.data.synthetic`.

Rendering choice: every part of the face is a polygon or a poly-line in a unit
frame (x right, y down, both in [-1, 1]); the pose jitter is one affine map
applied to all points, and PIL's C rasteriser draws them on a 2x canvas that
``Image.reduce(2)`` box-filters down (i.e. 4-sample anti-aliasing). This is
several times faster than evaluating signed-distance fields for ~30 shapes
over every pixel in numpy (each numpy pass touches all pixels; PIL only
touches the pixels a shape covers), and rotated ellipses come for free since
they are polygons. Lighting is one vectorised numpy pass at the final size.

Expressions are vectors of geometric *actions* (see :data:`ACTIONS`); the face
at ``intensity`` uses ``intensity * style[expression]``, so intensity 0 (or the
neutral label 6) is exactly the subject's neutral face.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from facegan_kit.errors import InputError

#: Bump whenever the pictures change, so cached datasets/oracles are rebuilt.
RENDER_VERSION = 3

#: Identity attributes, each normalised to [0, 1].
ATTR_NAMES: tuple[str, ...] = (
    "face_width",      # 0: half-width of the face oval (narrow -> wide)
    "face_height",     # 1: half-height of the face oval (short -> long)
    "jaw_width",       # 2: lower-face width (pointed chin -> square jaw)
    "skin_tone",       # 3: light -> dark along a 5-colour palette
    "hair_lightness",  # 4: black -> blond
    "hair_redness",    # 5: neutral -> copper/auburn
    "hair_style",      # 6: categorical / 3: 0 short, 1/3 long, 2/3 buzz, 1 curly
    "eye_hue",         # 7: iris colour: blue, green, hazel, brown, dark brown
    "eye_spacing",     # 8: distance between the eyes
    "eye_size",        # 9: eye width
    "nose_size",       # 10: nose length and width
    "brow_thickness",  # 11: eyebrow thickness
    "mouth_width",     # 12: neutral mouth width
    "glasses",         # 13: 0 none, 1 glasses
)
HAIR_STYLES = ("short", "long", "buzz", "curly")
NEUTRAL_LABEL = 6

#: Geometric actions, each roughly in [-1, 1] at full intensity.
ACTIONS = ("mouth_corner", "mouth_open", "lip_stretch", "brow_height",
           "brow_angle", "inner_brow", "eyelid", "nose_wrinkle")
# Prototype action vectors per expression (rows: angry, disgust, fear, happy, sad, surprise).
_PROTO = np.array([
    # corner open  stretch brow_h angle  inner  eyelid wrinkle
    [-0.35, 0.00, -0.50, -0.70, 1.00, 0.00, -0.25, 0.15],   # angry
    [-0.60, 0.20, 0.15, -0.45, 0.30, 0.00, -0.60, 1.00],    # disgust
    [-0.30, 0.50, 0.90, 0.55, -0.30, 0.90, 0.90, 0.00],     # fear
    [1.00, 0.30, 0.60, 0.10, 0.00, 0.00, -0.45, 0.00],      # happy
    [-1.00, 0.00, -0.15, -0.15, -0.50, 1.00, -0.35, 0.00],  # sad
    [0.00, 1.00, -0.45, 1.00, 0.00, 0.15, 1.00, 0.00],      # surprise
], dtype=np.float64)
# Probability that a subject shows teeth when the mouth opens, per expression.
_TEETH_P = np.array([0.2, 0.4, 0.4, 0.6, 0.0, 0.3])

_SKIN = np.array([(255, 224, 196), (236, 194, 160), (200, 148, 110), (143, 97, 67), (90, 58, 40)], float)
_IRIS = np.array([(60, 130, 215), (70, 160, 80), (175, 140, 45), (120, 62, 25), (35, 22, 18)], float)
_SHIRTS = np.array([(60, 90, 150), (150, 50, 50), (60, 120, 80), (90, 90, 90), (200, 170, 70), (110, 70, 140)], float)


def _palette(pal: np.ndarray, t: float) -> np.ndarray:
    t = float(np.clip(t, 0.0, 1.0)) * (len(pal) - 1)
    i = min(int(t), len(pal) - 2)
    return pal[i] + (pal[i + 1] - pal[i]) * (t - i)


def subject_attributes(subject: int, seed: int = 0) -> np.ndarray:
    """Identity attribute vector of ``subject`` (``(len(ATTR_NAMES),)`` float32, in [0, 1])."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject) & 0xFFFFFFFF, 0xFACE])
    a = rng.uniform(0.0, 1.0, len(ATTR_NAMES))
    a[6] = rng.integers(0, len(HAIR_STYLES)) / (len(HAIR_STYLES) - 1)
    a[13] = float(rng.uniform() < 0.25)
    return a.astype(np.float32)


def expression_style(style_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A subject's own way of making each expression: ``(actions (7, 8), teeth (7,) bool)``.

    Each prototype action is scaled by a factor in [0.75, 1.25] plus a little
    additive noise on the active actions; row 6 (neutral) is all zeros.
    """
    rng = np.random.default_rng([int(style_seed) & 0xFFFFFFFF, 0x57E1])
    scale = rng.uniform(0.75, 1.25, _PROTO.shape)
    noise = rng.normal(0.0, 0.04, _PROTO.shape) * (_PROTO != 0)
    acts = np.zeros((7, len(ACTIONS)))
    acts[:6] = _PROTO * scale + noise
    teeth = np.zeros(7, bool)
    teeth[:6] = rng.uniform(size=6) < _TEETH_P
    return acts, teeth


def _ellipse(cx, cy, rx, ry, n=28, a0=0.0, a1=2 * math.pi):
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _curve(p0, mid, p2, n=12):
    """Quadratic Bezier from p0 to p2 passing through ``mid`` at t = 0.5."""
    p0, mid, p2 = (np.asarray(p, float) for p in (p0, mid, p2))
    c = 2 * mid - 0.5 * (p0 + p2)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t ** 2 * p2


def _mix(a, b, t):
    return tuple(int(v) for v in np.clip(np.asarray(a, float) + (np.asarray(b, float) - a) * t, 0, 255))


class _Canvas:
    """Draws unit-frame shapes through the pose affine map onto a PIL image."""

    def __init__(self, img: Image.Image, mat: np.ndarray, off: np.ndarray, px: float):
        self.draw = ImageDraw.Draw(img)
        self.mat, self.off, self.px = mat, off, px

    def _pts(self, pts):
        return (np.asarray(pts, float) @ self.mat.T + self.off).ravel().tolist()

    def poly(self, pts, fill):
        self.draw.polygon(self._pts(pts), fill=fill)

    def line(self, pts, fill, width):
        w = max(1, int(round(width * self.px)))
        self.draw.line(self._pts(pts), fill=fill, width=w, joint="curve" if w > 2 else None)


#: Backgrounds: ``random`` (a muted colour per image with a gradient between its corners) or
#: ``plain`` (one lab grey for every image, a few levels of jitter: like Oulu-CASIA's studio wall).
BACKGROUNDS = ("random", "plain")
_PLAIN_BG = np.array([196.0, 200.0, 205.0])


def _nuisance(nuisance_seed, background: str = "random"):
    if nuisance_seed is None:
        return dict(angle=0.0, scale=1.0, shift=(0.0, 0.0), gaze=(0.0, 0.0), bg=np.tile([[200.0, 205, 210]], (4, 1)),
                    gain=1.0, contrast=1.0, grad=(0.0, 0.0))
    rng = np.random.default_rng([int(nuisance_seed) & 0xFFFFFFFF, 0xB6])
    base = rng.uniform(45, 225) + rng.normal(0, 30, 3)  # muted colour
    bg = np.clip(base + rng.normal(0, 25, (4, 3)), 0, 255)
    if background == "plain":  # its own stream: pose and lighting stay those of the random background
        jitter = np.random.default_rng([int(nuisance_seed) & 0xFFFFFFFF, 0xB7]).normal(0, 3, 3)
        bg = np.clip(_PLAIN_BG + jitter, 0, 255)[None].repeat(4, 0)
    phi = rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(0.0, 0.18)
    return dict(angle=rng.uniform(-6, 6), scale=rng.uniform(0.95, 1.05), shift=tuple(rng.uniform(-0.05, 0.05, 2)),
                gaze=tuple(rng.uniform(-0.008, 0.008, 2)), bg=bg, gain=rng.uniform(0.85, 1.12),
                contrast=rng.uniform(0.85, 1.12), grad=(amp * math.cos(phi), amp * math.sin(phi)))


_ZOOM, _DROP = 1.25, 0.03  # the face (hair top to chin) fills ~80% of the frame

_GRID_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(size):
    if size not in _GRID_CACHE:
        g = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        _GRID_CACHE[size] = (g[None, :, None], g[:, None, None])
    return _GRID_CACHE[size]


def render_face(attrs: np.ndarray, expression: int, intensity: float, size: int = 128,
                nuisance_seed: int | None = 0, style_seed: int = 0, background: str = "random") -> np.ndarray:
    """Render one face: ``(size, size, 3)`` uint8.

    ``expression`` 0..5 (:data:`facegan_kit.EXPRESSIONS`) or 6 (neutral);
    ``intensity`` in [0, 1] scales the subject's action vector (0 = neutral);
    ``nuisance_seed`` seeds pose/lighting/background (None: none of them);
    ``style_seed`` picks the subject's own expression style (use the subject id);
    ``background`` is one of :data:`BACKGROUNDS`.
    """
    if background not in BACKGROUNDS:
        raise InputError(f"background: expected one of {', '.join(BACKGROUNDS)}, got {background!r}")
    a = np.asarray(attrs, dtype=np.float64).reshape(-1)
    if a.shape != (len(ATTR_NAMES),):
        raise InputError(f"attrs: expected {len(ATTR_NAMES)} values, got shape {np.shape(attrs)}")
    if not 0 <= int(expression) <= NEUTRAL_LABEL:
        raise InputError(f"expression: expected 0..6, got {expression}")
    if not 0.0 <= float(intensity) <= 1.0:
        raise InputError(f"intensity: expected a value in [0, 1], got {intensity}")
    if int(size) < 16:
        raise InputError(f"size: expected >= 16, got {size}")
    size = int(size)
    styles, teeth_flags = expression_style(style_seed)
    act = styles[int(expression)] * float(intensity)
    corner, mopen, stretch, brow_h, brow_a, inner, eyelid, wrinkle = act
    mopen = max(mopen, 0.0)
    wrinkle = max(wrinkle, 0.0)
    teeth = bool(teeth_flags[int(expression)])
    nz = _nuisance(nuisance_seed, background)

    big = 2 * size
    bg = Image.fromarray(nz["bg"].reshape(2, 2, 3).astype(np.uint8)).resize((big, big), Image.BILINEAR)
    px = big / 2.0  # pixels per unit
    th = math.radians(nz["angle"])
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) * (nz["scale"] * _ZOOM)
    off = (np.array(nz["shift"]) + np.array([0.0, _DROP]) + 1.0) * px
    cv = _Canvas(bg, rot * px, off, px)

    skin = _palette(_SKIN, a[3])
    skin_c = _mix(skin, skin, 0)
    shade = _mix(skin, (60, 30, 20), 0.18)
    line_c = _mix(skin, (25, 12, 8), 0.6)
    hair = _mix((28, 22, 18), (228, 200, 140), a[4])
    hair = _mix(hair, (180, 80, 35), 0.75 * a[5])
    brow_c = _mix(hair, (20, 15, 10), 0.35)
    lip_c = _mix(skin, (165, 45, 65), 0.45)
    style = int(round(a[6] * (len(HAIR_STYLES) - 1)))
    shirt = tuple(int(v) for v in _SHIRTS[int(a[12] * 97 + a[2] * 31) % len(_SHIRTS)])

    fw, fh, cy = 0.40 + 0.12 * a[0], 0.50 + 0.10 * a[1], 0.0
    jaw = 0.35 + 0.6 * a[2]

    # Shoulders, neck, hair behind the head, ears.
    cv.poly(_ellipse(0, 1.18, 0.9, 0.42, 32), shirt)
    cv.poly([(-0.17, cy + 0.4), (0.17, cy + 0.4), (0.19, 0.95), (-0.19, 0.95)], shade)
    if style == 1:  # long
        cv.poly(np.vstack([_ellipse(0, cy - 0.08, fw + 0.1, fh + 0.02, 24, math.pi, 2 * math.pi),
                           [(fw + 0.16, 0.72), (-fw - 0.16, 0.72)]]), hair)
    elif style == 3:  # curly: big round volume with a bumpy rim
        t = np.linspace(0, 2 * math.pi, 48)
        r = (fw + 0.2) * (1 + 0.05 * np.sin(11 * t))
        cv.poly(np.stack([r * np.cos(t), cy - 0.2 + 0.95 * r * np.sin(t)], 1), hair)
    for s in (-1, 1):
        cv.poly(_ellipse(s * fw * 0.97, cy + 0.02, 0.06, 0.11, 16), shade)

    # Face oval with a jaw that narrows the lower half.
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    sy = np.sin(t)
    xs = fw * np.cos(t) * np.where(sy > 0, 1 - (1 - jaw) * sy ** 2, 1.0)
    cv.poly(np.stack([xs, cy + fh * sy], 1), skin_c)

    # Hair on top of the head.
    top = cy - fh
    if style == 0:  # short with a side part
        cap = np.vstack([_ellipse(0, cy, fw * 1.06, fh * 1.08, 24, math.pi * 1.02, math.pi * 1.98),
                         _curve((fw * 0.98, cy - 0.15), (0.1, top + 0.25), (-fw * 0.98, cy - 0.2), 10)])
    elif style == 1:  # long, centre parting
        cap = np.vstack([_ellipse(0, cy, fw * 1.08, fh * 1.08, 24, math.pi * 1.0, math.pi * 2.0),
                         [(fw * 1.0, cy + 0.1), (fw * 0.85, cy - 0.1)],
                         _curve((fw * 0.8, cy - 0.15), (0, top + 0.16), (-fw * 0.8, cy - 0.15), 10),
                         [(-fw * 0.85, cy - 0.1), (-fw * 1.0, cy + 0.1)]])
    elif style == 2:  # buzz: thin cap
        cap = np.vstack([_ellipse(0, cy, fw * 1.03, fh * 1.04, 24, math.pi * 1.08, math.pi * 1.92),
                         _curve((fw * 0.9, cy - 0.28), (0, top + 0.12), (-fw * 0.9, cy - 0.28), 10)])
    else:  # curly fringe
        xx = np.linspace(fw * 0.95, -fw * 0.95, 14)
        fringe = np.stack([xx, cy - 0.2 - 0.05 * np.abs(np.sin(xx * 18)) - 0.08 * (1 - (xx / fw) ** 2)], 1)
        cap = np.vstack([_ellipse(0, cy, fw * 1.08, fh * 1.1, 24, math.pi * 1.02, math.pi * 1.98), fringe])
    cv.poly(cap, hair)

    # Forehead lines (brows raised), glabella lines (brows knit).
    ye, yb = cy - 0.06, cy - 0.16
    fl = float(np.clip(max(brow_h, inner) - 0.2, 0, 1))
    if fl > 0.02:
        for k in range(3):
            y = yb - 0.1 - 0.045 * k
            cv.line(_curve((-0.16, y + 0.01), (0, y - 0.01), (0.16, y + 0.01), 8), _mix(skin, line_c, 0.25 + 0.75 * fl), 0.012)
    gl = float(np.clip(brow_a - 0.2, 0, 1))
    if gl > 0.02:
        for s in (-1, 1):
            cv.line([(s * 0.025, yb - 0.02), (s * 0.03, yb + 0.06)], _mix(skin, line_c, 0.3 + 0.7 * gl), 0.014)

    # Eyes: sclera, iris, pupil, then skin-coloured lids clip the iris.
    xe = 0.13 + 0.07 * a[8]
    ew = 0.055 + 0.045 * a[9]
    eh = max(0.034 * (1 + 0.55 * eyelid), 0.005)
    iris_c = tuple(int(v) for v in _palette(_IRIS, a[7]))
    gx, gy = nz["gaze"]
    xsw = np.linspace(-1, 1, 11)
    for s in (-1, 1):
        ex = s * xe
        upper = np.stack([ex + ew * xsw, ye - eh * (1 - xsw ** 2) - 0.006 * s * xsw], 1)
        lower = np.stack([ex + ew * xsw[::-1], ye + 0.8 * eh * (1 - xsw[::-1] ** 2)], 1)
        cv.poly(np.vstack([upper, lower]), (245, 245, 240))
        cv.poly(_ellipse(ex + gx, ye + gy, 0.042, 0.042, 20), iris_c)
        cv.poly(_ellipse(ex + gx, ye + gy, 0.013, 0.013, 12), (12, 10, 10))
        box = 0.06
        cv.poly(np.vstack([upper, [(ex + ew + 0.01, ye - box), (ex - ew - 0.01, ye - box)]]), skin_c)
        cv.poly(np.vstack([lower, [(ex - ew - 0.01, ye + box), (ex + ew + 0.01, ye + box)]]), skin_c)
        cv.line(upper, (30, 22, 20), 0.013)
        cv.line(lower, _mix(skin, line_c, 0.5), 0.006)

    # Eyebrows: inner/outer ends moved by height, angle (knit) and inner raise.
    bt = 0.012 + 0.05 * a[11]
    for s in (-1, 1):
        yi = yb - 0.075 * brow_h + 0.055 * brow_a - 0.065 * inner
        yo = yb - 0.01 - 0.075 * brow_h - 0.01 * brow_a
        xi, xo = s * (xe - ew * 0.85 - 0.012 * max(brow_a, 0)), s * (xe + ew * 1.15)
        mid = ((xi + xo) / 2, (yi + yo) / 2 - 0.025)
        c = _curve((xi, yi), mid, (xo, yo), 10)
        taper = np.linspace(1.0, 0.45, 10)[:, None] * np.array([0, bt / 2])
        cv.poly(np.vstack([c - taper, (c + taper)[::-1]]), brow_c)

    # Nose: shaded bridge, wings, nostrils raised and flared by the wrinkle.
    ns = a[10]
    tip = cy + 0.1 + 0.06 * ns - 0.02 * wrinkle
    nw = 0.04 + 0.03 * ns + 0.014 * wrinkle
    cv.poly([(-0.018, ye + 0.02), (0.018, ye + 0.02), (nw * 0.8, tip), (-nw * 0.8, tip)], _mix(skin, shade, 0.5))
    for s in (-1, 1):
        cv.line(_curve((s * 0.02, ye + 0.04), (s * nw * 0.75, tip - 0.05), (s * nw, tip), 8), line_c, 0.01)
        cv.poly(_ellipse(s * nw * 0.45, tip + 0.004, 0.016, 0.009, 10), _mix(skin, (40, 20, 15), 0.7))
    if wrinkle > 0.05:
        wc = _mix(skin, line_c, 0.3 + 0.7 * min(wrinkle, 1.0))
        for k in range(3):
            y = ye + 0.005 + 0.03 * k
            cv.line([(-0.045, y + 0.008), (0, y - 0.004), (0.045, y + 0.008)], wc, 0.011)

    # Mouth: corners, opening, stretch; lips, cavity, optional teeth.
    ym = tip + 0.13 + 0.04 * a[1]
    mw = (0.08 + 0.07 * a[12]) * (1 + 0.35 * stretch)
    dy = -0.075 * corner
    cl, cr = (-mw, ym + dy), (mw, ym + dy)
    o = 0.16 * mopen
    iu = _curve(cl, (0, ym - 0.4 * o - 0.025 * wrinkle), cr)
    il = _curve(cl, (0, ym + 0.6 * o), cr)
    ou = _curve(cl, (0, ym - 0.4 * o - 0.025 * wrinkle - 0.028), cr)
    ol = _curve(cl, (0, ym + 0.6 * o + 0.032), cr)
    if corner > 0.15:  # smile lines
        sc = _mix(skin, line_c, min(1.0, 0.2 + 0.8 * (corner - 0.15)))
        for s in (-1, 1):
            cv.line(_curve((s * (nw + 0.015), tip - 0.03), (s * (mw + 0.035), (tip + ym) / 2 + 0.01),
                           (s * (mw + 0.025), ym + dy + 0.03), 8), sc, 0.012)
    cv.poly(np.vstack([ou, ol[::-1]]), lip_c)
    if o > 0.004:
        cv.poly(np.vstack([iu, il[::-1]]), (70, 22, 28))
        if teeth:
            cv.poly(np.vstack([iu, (iu + [0, min(0.45 * o, 0.04)])[::-1]]), (238, 236, 226))
    cv.line(iu, _mix(lip_c, (40, 10, 15), 0.6), 0.008)

    # Glasses.
    if a[13] > 0.5:
        gc = (25, 25, 30)
        for s in (-1, 1):
            t = np.linspace(0, 2 * math.pi, 25)
            rim = np.stack([s * xe + (ew + 0.03) * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.6,
                            ye + 0.058 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.6], 1)
            cv.line(rim, gc, 0.014)
            cv.line([(s * (xe + ew + 0.03), ye - 0.01), (s * fw * 0.98, ye - 0.02)], gc, 0.012)
        cv.line([(-(xe - ew - 0.03), ye - 0.01), (0, ye - 0.025), (xe - ew - 0.03, ye - 0.01)], gc, 0.012)

    # Downsample (2x box filter) and light: contrast, gain, linear gradient.
    img = np.asarray(bg.reduce(2), dtype=np.float32)
    if nuisance_seed is not None:
        gxm, gym = _grid(size)
        light = nz["gain"] * (1.0 + nz["grad"][0] * gxm + nz["grad"][1] * gym)
        img = ((img - 128.0) * nz["contrast"] + 128.0) * light
        img = np.clip(img + 0.5, 0, 255)
    return img.astype(np.uint8)


def render_batch(attrs, expression, intensity, size: int = 128, nuisance_seeds=None, style_seeds=None):
    """Render many faces: uint8 tensor ``(N, 3, size, size)``.

    ``attrs`` (N, A); ``expression``/``intensity`` (N,); ``nuisance_seeds`` (N,)
    ints (None: no nuisance for any image; an element None: none for that image);
    ``style_seeds`` (N,) ints (None: 0 for all).
    """
    import torch

    attrs = np.asarray(attrs.cpu() if hasattr(attrs, "cpu") else attrs, dtype=np.float32).reshape(-1, len(ATTR_NAMES))
    expr = np.asarray(expression.cpu() if hasattr(expression, "cpu") else expression).reshape(-1)
    inten = np.asarray(intensity.cpu() if hasattr(intensity, "cpu") else intensity, dtype=np.float64).reshape(-1)
    n = len(attrs)
    if len(expr) != n or len(inten) != n:
        raise InputError(f"render_batch: attrs/expression/intensity lengths differ ({n}, {len(expr)}, {len(inten)})")
    nseeds = [None] * n if nuisance_seeds is None else list(np.asarray(nuisance_seeds, dtype=object).reshape(-1))
    sseeds = [0] * n if style_seeds is None else [int(s) for s in np.asarray(style_seeds).reshape(-1)]
    if len(nseeds) != n or len(sseeds) != n:
        raise InputError("render_batch: nuisance_seeds/style_seeds must have one entry per image")
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        ns = None if nseeds[i] is None else int(nseeds[i])
        out[i] = render_face(attrs[i], int(expr[i]), float(inten[i]), size, ns, sseeds[i])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
