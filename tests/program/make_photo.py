"""make_photo.py: renders tests/program/photo.jpg, the photo-like test image
of test_photo.sh (a 500x375 landscape: sky and ground gradients, a sun, hills,
trees, a house, blur and sensor-like noise), with PIL and numpy. It is made,
not downloaded; the JPEG is committed so the test does not depend on this
script giving the same bytes with another PIL.

    /usr/bin/python3 tests/program/make_photo.py tests/program/photo.jpg
"""
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 500, 375
rng = np.random.default_rng(12)

# sky: blue at the top to pale near the horizon; ground: green to brown
y = np.linspace(0, 1, H)[:, None, None]
sky = (1 - y) * np.array([60, 110, 200]) + y * np.array([200, 220, 235])
ground = (1 - y) * np.array([70, 140, 60]) + y * np.array([110, 80, 40])
horizon = int(H * 0.55)
px = np.where(np.arange(H)[:, None, None] < horizon, sky, ground) * np.ones((1, W, 1))
img = Image.fromarray(px.clip(0, 255).astype(np.uint8))
d = ImageDraw.Draw(img)

d.ellipse((380, 40, 440, 100), fill=(255, 230, 120))                      # sun
for k in range(4):                                                         # hills
    cx, r = rng.integers(0, W), rng.integers(80, 200)
    d.ellipse((cx - r, horizon - r // 3, cx + r, horizon + r // 2),
              fill=tuple(int(v) for v in rng.integers([40, 90, 40], [90, 150, 80])))
for k in range(9):                                                         # trees
    x0, y0 = int(rng.integers(10, W - 30)), int(rng.integers(horizon - 10, H - 60))
    d.rectangle((x0 + 8, y0 + 30, x0 + 14, y0 + 55), fill=(90, 60, 30))
    d.polygon([(x0, y0 + 35), (x0 + 11, y0 - 10), (x0 + 22, y0 + 35)],
              fill=tuple(int(v) for v in rng.integers([10, 70, 10], [50, 130, 50])))
d.rectangle((150, 200, 250, 270), fill=(200, 60, 50))                      # a house
d.polygon([(140, 200), (200, 150), (260, 200)], fill=(120, 40, 30))
d.rectangle((185, 235, 210, 270), fill=(60, 40, 20))
d.rectangle((160, 212, 178, 228), fill=(180, 210, 240))

img = img.filter(ImageFilter.GaussianBlur(1.2))
a = np.asarray(img).astype(np.float64) + rng.normal(0, 6, (H, W, 3))       # sensor noise
Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(sys.argv[1], quality=88)
