"""photo_ref.py: the torchvision side of test_photo.sh (run with /usr/bin/python3).

  photo_ref.py variants PHOTO DIR
      writes DIR/NAME for each test image made from PHOTO: portrait.jpg (the
      photo turned a quarter), gray.jpg, cmyk.jpg, progressive.jpg, rgb.png,
      rgba.png, gray.png, small.png (100x80, smaller than the crop); and bad
      files: truncated.jpg (the first half), corrupt.jpg (the sample precision
      in the frame header set to 12, unsupported), huge.jpg and huger.jpg (the
      frame header claiming 60000x60000 and 65535x65535, JPEG's largest),
      huge.png (valid chunks, the IHDR claiming 100000x100000), huge.pgm.

  photo_ref.py compare X.safetensors C RESIZE CROP MEAN STD FILE...
      compares the tensor 'x' that `predict --dump-input` wrote for FILE...
      with torchvision's Resize(RESIZE) (none if 0), CenterCrop(CROP) (none
      if 0; then Resize((H, W)) stretches to the input's size), ToTensor()
      and Normalize(MEAN, STD) (comma-separated) on PIL's
      Image.open(FILE).convert("RGB" or "L" for C = 1). Prints, per file, the
      mean and largest absolute difference before normalization, in units
      of 1/255, and after it; exits 1 unless every mean is within 1/255.
"""
import json
import struct
import sys
import zlib

import numpy as np
from PIL import Image
import torchvision.transforms as T


def variants(photo, d):
    im = Image.open(photo)
    im.transpose(Image.Transpose.ROTATE_90).save(d + "/portrait.jpg", quality=90)
    im.convert("L").save(d + "/gray.jpg", quality=90)
    im.convert("CMYK").save(d + "/cmyk.jpg", quality=90)
    im.save(d + "/progressive.jpg", quality=85, progressive=True)
    im.save(d + "/rgb.png")
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(im.size))
    rgba.save(d + "/rgba.png")
    im.convert("L").save(d + "/gray.png")
    im.resize((100, 80), Image.Resampling.BILINEAR).save(d + "/small.png")
    b = open(photo, "rb").read()
    open(d + "/truncated.jpg", "wb").write(b[: len(b) // 2])
    sof = b.index(b"\xff\xc0")          # SOF0: length(2) precision(1) height(2) width(2)
    open(d + "/corrupt.jpg", "wb").write(b[: sof + 4] + bytes([12]) + b[sof + 5:])
    open(d + "/huge.jpg", "wb").write(b[: sof + 5] + b"\xea\x60\xea\x60" + b[sof + 9:])
    open(d + "/huger.jpg", "wb").write(b[: sof + 5] + b"\xff\xff\xff\xff" + b[sof + 9:])

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data)))
    png = (b"\x89PNG\r\n\x1a\n" +
           chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(b"\0" * 301)) + chunk(b"IEND", b""))
    open(d + "/huge.png", "wb").write(png)
    open(d + "/huge.pgm", "wb").write(b"P5 100000 100000 255\n" + b"\0" * 64)


def read_x(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    t = json.loads(b[8: 8 + n])["x"]
    s, e = t["data_offsets"]
    return np.frombuffer(b[8 + n + s: 8 + n + e], dtype="<f4").reshape(t["shape"])


def compare(args):
    x = read_x(args[0])
    c, resize, crop = int(args[1]), int(args[2]), int(args[3])
    mean = np.array([float(v) for v in args[4].split(",")])[:, None, None]
    std = np.array([float(v) for v in args[5].split(",")])[:, None, None]
    h, w = x.shape[-2], x.shape[-1]
    steps = ([T.Resize(resize)] if resize else []) + \
            ([T.CenterCrop(crop)] if crop else [] if resize else [T.Resize((h, w))]) + \
            [T.ToTensor()]
    tf = T.Compose(steps)
    bad = 0
    if x.shape[0] != len(args[6:]) or not args[6:]:
        print("%d images dumped, %d files given" % (x.shape[0], len(args[6:])))
        return 1
    for i, f in enumerate(args[6:]):
        ref = tf(Image.open(f).convert("RGB" if c == 3 else "L")).numpy().astype(np.float64)
        ours = x[i].reshape(ref.shape).astype(np.float64)
        d = np.abs(ours * std + mean - ref)              # before normalization
        dn = np.abs(ours - (ref - mean) / std)           # after
        print("%s: %s, mean |diff| %.4f/255, max %.4f/255 before normalization; "
              "max %.2e after" % (f, "x".join(map(str, ref.shape)), d.mean() * 255,
                                  d.max() * 255, dn.max()))
        bad += not d.mean() <= 1 / 255
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "variants":
        variants(sys.argv[2], sys.argv[3])
    else:
        sys.exit(compare(sys.argv[2:]))
