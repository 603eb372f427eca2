"""Seeded toy activity-recognition videos whose classes differ only in time order.

Ten classes in five time-reversal pairs:
    0 move_left   1 move_right   (textured box translating horizontally)
    2 move_up     3 move_down    (... vertically)
    4 grow        5 shrink       (box scaling up / down about a fixed center)
    6 rotate_cw   7 rotate_ccw   (textured bar rotating, clockwise as seen on screen)
    8 brighten    9 darken       (static box whose brightness ramps)
A video of either member of a pair is made by drawing random parameters
(color, texture, start position, size, speed, background level, noise level)
and rendering the pair's *forward* motion (move_right, move_down, grow,
rotate_cw, brighten); the other member's video is that frame sequence
reversed. So both members of a pair have exactly the same distribution of
single frames: one frame carries no information about which of the two it is.

Frame rendering (per frame t, size x size RGB, uint8): object-local coords
    u = ( cos(th) dx + sin(th) dy) / s,   v = (-sin(th) dx + cos(th) dy) / s
with (dx, dy) = pixel - center(t), th = angle(t), s = scale(t); soft box mask
clip((A - |u|) s + .5, 0, 1) * clip((B - |v|) s + .5, 0, 1); texture
0.6 + 0.4 sin(2 pi u / p + a) sin(2 pi v / p + b); color * texture * gain(t) over
a flat background, plus iid Gaussian pixel noise.

Optical flow ("flow images", as in the LRCN paper): dense pyramidal
Lucas-Kanade between consecutive frames (numpy only, see ``dense_flow``);
encoded as an RGB PNG with
    R = clip(round(128 + k * u)),  G = clip(round(128 + k * v)),
    B = clip(round(k * sqrt(u^2 + v^2))),   k = --flow-scale (default 32)
(u to the right, v downward, in pixels/frame).

Layout under ``out``:
    frames/<class>/<video>/0001.png ... NNNN.png       (N = --frames)
    flow/<class>/<video>/0001.png ... (N-1).png        (flow from frame i to i+1)
    trainlist.txt, testlist.txt        lines "frames/<class>/<video> <label>"
    flow_trainlist.txt, flow_testlist.txt  lines "flow/<class>/<video> <label>"
    classes.txt                        lines "<label> <class>"
Paths in the lists are relative to ``out``. Labels are 0-based.
"""

import os

import numpy as np
from PIL import Image

PAIRS = [("move_left", "move_right"), ("move_up", "move_down"), ("grow", "shrink"),
         ("rotate_cw", "rotate_ccw"), ("brighten", "darken")]
CLASSES = [c for p in PAIRS for c in p]
# forward class of each pair (rendered directly); the other member is its reversal
FORWARD = {"move_left": "move_right", "move_right": "move_right",
           "move_up": "move_down", "move_down": "move_down",
           "grow": "grow", "shrink": "grow",
           "rotate_cw": "rotate_cw", "rotate_ccw": "rotate_cw",
           "brighten": "brighten", "darken": "brighten"}


# ----------------------------------------------------------------------------- rendering

def sample_params(kind, rng, frames, size):
    """Random parameters of a forward video of `kind` -> dict of per-frame arrays."""
    t = np.arange(frames, dtype=np.float64)
    k = size / 32.0
    p = {"color": rng.uniform(0.45, 1.0, 3), "period": rng.uniform(2.5, 4.5) * k,
         "phase": rng.uniform(0, 2 * np.pi, 2), "bg": rng.uniform(0.05, 0.3),
         "noise": rng.uniform(0.0, 0.02)}
    A, B = rng.uniform(3.0, 5.0, 2) * k
    cx = np.full(frames, rng.uniform(size * 0.35, size * 0.65))
    cy = np.full(frames, rng.uniform(size * 0.35, size * 0.65))
    scale = np.ones(frames)
    angle = np.full(frames, rng.uniform(0, np.pi))
    gain = np.ones(frames)
    if kind in ("move_right", "move_down"):
        angle[:] = 0.0
        half = A if kind == "move_right" else B
        travel = size - 2 * (half + 1)
        speed = rng.uniform(0.45, 0.95) * travel / (frames - 1)
        start = rng.uniform(half + 1, size - half - 1 - speed * (frames - 1))
        half_o = B if kind == "move_right" else A
        other = rng.uniform(half_o + 1, size - half_o - 1)
        pos, other_arr = start + speed * t, np.full(frames, other)
        cx, cy = (pos, other_arr) if kind == "move_right" else (other_arr, pos)
    elif kind == "grow":
        angle[:] = 0.0
        s0 = rng.uniform(0.45, 0.6)
        room = min(cx[0], size - cx[0], cy[0], size - cy[0]) - 1
        s1 = min(s0 * rng.uniform(2.0, 2.6), room / max(A, B))
        scale = s0 + (s1 - s0) * t / (frames - 1)
    elif kind == "rotate_cw":
        A, B = rng.uniform(8.0, 11.0) * k, rng.uniform(2.0, 3.5) * k
        cx[:], cy[:] = size / 2 + rng.uniform(-1, 1, 2) * k
        angle = angle + np.deg2rad(rng.uniform(4.0, 8.0)) * t  # +angle = clockwise (y down)
    elif kind == "brighten":
        g0, g1 = rng.uniform(0.1, 0.3), rng.uniform(0.85, 1.0)
        gain = g0 + (g1 - g0) * t / (frames - 1)
    else:
        raise ValueError("unknown forward kind %r" % kind)
    p.update(A=A, B=B, cx=cx, cy=cy, scale=scale, angle=angle, gain=gain)
    return p


def render(p, size, rng):
    """Params -> uint8 frames (F, size, size, 3); pixel noise drawn from rng."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    cx, cy = p["cx"][:, None, None], p["cy"][:, None, None]
    th, s = p["angle"][:, None, None], p["scale"][:, None, None]
    dx, dy = xs - cx, ys - cy
    u = (np.cos(th) * dx + np.sin(th) * dy) / s
    v = (-np.sin(th) * dx + np.cos(th) * dy) / s
    mask = np.clip((p["A"] - np.abs(u)) * s + 0.5, 0, 1) * np.clip((p["B"] - np.abs(v)) * s + 0.5, 0, 1)
    tex = 0.6 + 0.4 * np.sin(2 * np.pi * u / p["period"] + p["phase"][0]) \
        * np.sin(2 * np.pi * v / p["period"] + p["phase"][1])
    obj = tex[..., None] * p["color"] * p["gain"][:, None, None, None]
    img = p["bg"] * (1 - mask[..., None]) + obj * mask[..., None]
    img = img + rng.normal(0.0, 1.0, img.shape) * p["noise"]
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def render_video(class_name, rng, frames=24, size=32):
    """-> uint8 (frames, size, size, 3) video of `class_name` (reversed forward video)."""
    if class_name not in FORWARD:
        raise ValueError("unknown class %r (known: %s)" % (class_name, ", ".join(CLASSES)))
    fwd = FORWARD[class_name]
    video = render(sample_params(fwd, rng, frames, size), size, rng)
    return video if class_name == fwd else video[::-1].copy()


# ----------------------------------------------------------------------------- optical flow

def _box(a, r):
    """Mean over a (2r+1)^2 window on the last two axes (edge padded), via cumsums."""
    w = 2 * r + 1
    pad = [(0, 0)] * (a.ndim - 2) + [(r + 1, r), (r + 1, r)]
    c = np.pad(a, pad, mode="edge").cumsum(-2).cumsum(-1)
    return (c[..., w:, w:] - c[..., :-w, w:] - c[..., w:, :-w] + c[..., :-w, :-w]) / (w * w)


def _blur(a):
    """Separable [1, 2, 1] / 4 blur on the last two axes (edge padded)."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    p = (p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]) / 4
    return (p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]) / 4


def _warp(img, u, v):
    """Bilinear sample img at (x + u, y + v), clamped at the border; arrays (..., H, W)."""
    h, w = img.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x = np.clip(xs + u, 0, w - 1)
    y = np.clip(ys + v, 0, h - 1)
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = x - x0, y - y0
    lead = np.indices(img.shape[:-2]).reshape(img.ndim - 2, *img.shape[:-2], 1, 1) \
        if img.ndim > 2 else ()
    idx = tuple(lead)

    def at(yy, xx):
        return img[idx + (yy, xx)]
    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def _down(a):
    a = _blur(a)
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    a = a[..., :h, :w]
    return (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]) / 4


def _up(a, shape):
    out = np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)
    ph, pw = shape[-2] - out.shape[-2], shape[-1] - out.shape[-1]
    return np.pad(out, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], mode="edge")


def dense_flow(i0, i1, radius=2, levels=2, iters=3, reg=1e-4):
    """Pyramidal Lucas-Kanade flow from i0 to i1 (float arrays (..., H, W) in [0, 1]).

    Returns (u, v), each (..., H, W): i1(x + u, y + v) ~= i0(x, y). Per level and
    iteration, with I1w = i1 warped by the current flow, Ix, Iy central
    differences of (i0 + I1w) / 2 and It = I1w - i0, solves in each
    (2*radius+1)^2 window  [Sxx + reg, Sxy; Sxy, Syy + reg] d = -[Sxt, Syt]
    (reg keeps flat regions at zero flow). Coarse-to-fine over `levels`.
    """
    pyr0, pyr1 = [_blur(np.asarray(i0, np.float64))], [_blur(np.asarray(i1, np.float64))]
    for _ in range(levels - 1):
        if min(pyr0[-1].shape[-2:]) < 8:
            break
        pyr0.append(_down(pyr0[-1]))
        pyr1.append(_down(pyr1[-1]))
    u = np.zeros_like(pyr0[-1])
    v = np.zeros_like(pyr0[-1])
    for lvl in range(len(pyr0) - 1, -1, -1):
        a, b = pyr0[lvl], pyr1[lvl]
        if u.shape != a.shape:
            u, v = _up(u, a.shape) * 2, _up(v, a.shape) * 2
        for _ in range(iters):
            bw = _warp(b, u, v)
            m = (a + bw) / 2
            ix = np.zeros_like(m)
            iy = np.zeros_like(m)
            ix[..., :, 1:-1] = (m[..., :, 2:] - m[..., :, :-2]) / 2
            iy[..., 1:-1, :] = (m[..., 2:, :] - m[..., :-2, :]) / 2
            it = bw - a
            sxx, syy, sxy = _box(ix * ix, radius) + reg, _box(iy * iy, radius) + reg, _box(ix * iy, radius)
            sxt, syt = _box(ix * it, radius), _box(iy * it, radius)
            det = sxx * syy - sxy * sxy
            u = u + (-syy * sxt + sxy * syt) / det
            v = v + (sxy * sxt - sxx * syt) / det
    return u, v


def to_gray(frames):
    """uint8 (..., H, W, 3) -> float (..., H, W) in [0, 1]."""
    return frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def flow_to_image(u, v, scale=32.0):
    """Flow (..., H, W) -> uint8 (..., H, W, 3): 128 + k*u, 128 + k*v, k*|flow|."""
    mag = np.sqrt(u * u + v * v)
    img = np.stack([128 + scale * u, 128 + scale * v, scale * mag], axis=-1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def image_to_flow(img, scale=32.0):
    """Inverse of flow_to_image (up to clipping/rounding) -> (u, v)."""
    img = img.astype(np.float64)
    return (img[..., 0] - 128) / scale, (img[..., 1] - 128) / scale


def video_flow(frames, scale=32.0):
    """uint8 video (F, H, W, 3) -> uint8 flow images (F-1, H, W, 3)."""
    g = to_gray(frames)
    u, v = dense_flow(g[:-1], g[1:])
    return flow_to_image(u, v, scale)


# ----------------------------------------------------------------------------- dataset

def _save_frames(folder, frames):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(os.path.join(folder, "%04d.png" % (i + 1)))


def generate(out, num_train=30, num_test=10, frames=24, size=32, seed=0, flow_scale=32.0,
             with_flow=True):
    """Write the dataset described in the module docstring; returns the list lines."""
    if frames < 3 or size < 16 or num_train < 1 or num_test < 0:
        raise ValueError("need --frames >= 3, --size >= 16, --num-train >= 1, --num-test >= 0")
    lists = {"train": [], "test": []}
    for label, cls in enumerate(CLASSES):
        for idx in range(num_train + num_test):
            split = "train" if idx < num_train else "test"
            rng = np.random.default_rng([seed, label, idx])
            video = render_video(cls, rng, frames, size)
            name = "%s_%04d" % (cls, idx)
            _save_frames(os.path.join(out, "frames", cls, name), video)
            if with_flow:
                _save_frames(os.path.join(out, "flow", cls, name), video_flow(video, flow_scale))
            lists[split].append((cls, name, label))
    for split, items in lists.items():
        with open(os.path.join(out, "%slist.txt" % split), "w") as f:
            f.writelines("frames/%s/%s %d\n" % it for it in items)
        if with_flow:
            with open(os.path.join(out, "flow_%slist.txt" % split), "w") as f:
                f.writelines("flow/%s/%s %d\n" % it for it in items)
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.writelines("%d %s\n" % (i, c) for i, c in enumerate(CLASSES))
    return lists
