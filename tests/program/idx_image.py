#!/usr/bin/env python3
"""idx_image.py: writes one image of an IDX file as PGM (P5 or P2) or PNG.

    python3 tests/program/idx_image.py IMAGES INDEX FORMAT OUT

IMAGES is an IDX file of 8-bit gray images [n, H, W], plain or gzip;
INDEX counts from 0; FORMAT is p5 (binary PGM), p2 (ASCII PGM) or png
(8-bit gray, written with zlib); OUT is the file to write. Python's
standard library only: the tests need no third-party modules.
"""
import gzip
import struct
import sys
import zlib


def read_image(path, index):
    with open(path, 'rb') as f:
        data = f.read()
    if data[:2] == b'\x1f\x8b':
        data = gzip.decompress(data)
    if data[:3] != b'\x00\x00\x08' or data[3] != 3:
        sys.exit('%s: not an IDX file of 8-bit images [n, H, W]' % path)
    n, h, w = struct.unpack('>3I', data[4:16])
    if not 0 <= index < n:
        sys.exit('%s: image %d is not among its %d' % (path, index, n))
    start = 16 + index * h * w
    return w, h, data[start:start + h * w]


def pgm(w, h, px, binary):
    if binary:
        return b'P5\n%d %d\n255\n' % (w, h) + px
    rows = [' '.join(str(v) for v in px[y * w:(y + 1) * w]) for y in range(h)]
    return ('P2\n# written by idx_image.py\n%d %d\n255\n%s\n' % (w, h, '\n'.join(rows))).encode()


def png(w, h, px):
    def chunk(kind, body):
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    raw = b''.join(b'\x00' + px[y * w:(y + 1) * w] for y in range(h))   # filter 0 per row
    ihdr = struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)                 # 8-bit gray
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw))
            + chunk(b'IEND', b''))


def main():
    if len(sys.argv) != 5 or sys.argv[3] not in ('p5', 'p2', 'png'):
        sys.exit('usage: idx_image.py IMAGES INDEX p5|p2|png OUT')
    w, h, px = read_image(sys.argv[1], int(sys.argv[2]))
    fmt = sys.argv[3]
    out = png(w, h, px) if fmt == 'png' else pgm(w, h, px, fmt == 'p5')
    with open(sys.argv[4], 'wb') as f:
        f.write(out)


main()
