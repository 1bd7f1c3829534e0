#!/usr/bin/env python3
"""make_corpus.py: writes the fuzzers' seed corpora, small valid files of
each format, into tests/fuzz/corpus/<target>/ (python3 stdlib only):

    python3 tests/fuzz/make_corpus.py [DIR]      (default: beside this script)

The files are committed; rerun this only to change them."""
import gzip, json, os, struct, sys, zlib

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus')


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) < 20000, name
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- safetensors ----------------------------------------------------------
def safetensors(tensors, meta=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] in file order."""
    head, at = {}, 0
    if meta is not None:
        head['__metadata__'] = meta
    for name, dtype, shape, data in tensors:
        head[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [at, at + len(data)]}
        at += len(data)
    h = json.dumps(head, separators=(',', ':')).encode()
    if pad:
        h += b' ' * (-(8 + len(h)) % 8)
    return struct.pack('<Q', len(h)) + h + b''.join(t[3] for t in tensors)


def f32(*v):
    return struct.pack('<%df' % len(v), *v)


w = f32(*[0.25 * i - 1 for i in range(6)])
put('safetensors', 'weights', safetensors(
    [('fc.weight', 'F32', [2, 3], w), ('fc.bias', 'F32', [2], f32(0.5, -0.5))],
    {'format': 'pt', 'network': 'tiny', 'structure': '0123456789abcdef', 'cnnc': '0.1',
     'crc32': '%08x' % zlib.crc32(w + f32(0.5, -0.5))}))
put('safetensors', 'checkpoint', safetensors(
    [('w', 'F32', [3], f32(1, 2, 3)), ('momentum.w', 'F32', [3], f32(0, 0, 0)),
     ('bn.num_batches_tracked', 'I64', [], struct.pack('<q', 7))],
    {'format': 'pt', 'network': 'tiny', 'seed': '42', 'step': '10', 'epoch': '1',
     'history': '0.02,1.5,1.4,0.6', 'rng': '0' * 64}))
put('safetensors', 'scalars', safetensors(
    [('s', 'F32', [], f32(3.5)), ('empty', 'F32', [0, 4], b''), ('h', 'F16', [2], b'\0<\0<'),
     ('b', 'BOOL', [1], b'\1')], None, pad=False))
put('safetensors', 'escapes', safetensors(
    [('caf\u00e9 \u2603 \U0001f600 "q" \\', 'F32', [1, 1, 1, 1], f32(-0.0))],
    {'k\n': 'v\t\u0001', 'null': ''}))
put('safetensors', 'empty', safetensors([], None))

# ---- IDX --------------------------------------------------------------------
def idx(shape, data):
    return bytes([0, 0, 8, len(shape)]) + b''.join(struct.pack('>I', d) for d in shape) + bytes(data)


labels = idx([5], [0, 1, 2, 9, 3])
images = idx([3, 4, 5], [(i * 37) % 256 for i in range(60)])
rgb = idx([2, 3, 4, 3], [(i * 11) % 256 for i in range(72)])
chw = idx([2, 3, 4, 4], [(i * 5) % 256 for i in range(96)])
for t in ('idx', 'image'):
    put(t, 'images', images)
    put(t, 'images.gz', gz(images))
    put(t, 'rgb_hwc', rgb)
    put(t, 'chw.gz', gz(chw))
put('idx', 'labels', labels)
put('idx', 'labels.gz', gz(labels))
put('idx', 'vectors', idx([4, 6], range(24)))
put('idx', 'empty', idx([0, 28, 28], []))

# ---- CSV ----------------------------------------------------------------------
put('csv', 'plain.csv', b'3,0.5,1,2,3\n7,4,5,6,7\n0,-1e-3,2.5e2,0,1\n')
put('csv', 'header.csv', b'label,a,b,c,d\r\n1,0,0,0,0\r\n2, 1 ,2,\t3,4\r\n\r\n')
put('csv', 'label_col2.csv', b'0.1,0.2,4,0.3,0.4\n1,2,9,3,4\n\n\n')
put('csv', 'pixels.csv', b'5,' + b','.join(b'%d' % (i * 9 % 256) for i in range(16)) + b'\n')

# ---- images: PGM/PPM, PNG -------------------------------------------------------
def pnm(kind, w, h, maxval, samples):
    head = b'%s\n# comment\n%d %d\n%d\n' % (kind, w, h, maxval)
    if kind in (b'P2', b'P3'):
        return head + b' '.join(b'%d' % s for s in samples) + b'\n'
    if maxval > 255:
        return head + b''.join(struct.pack('>H', s) for s in samples)
    return head + bytes(samples)


put('image', 'gray.pgm', pnm(b'P5', 6, 5, 255, [(i * 8) % 256 for i in range(30)]))
put('image', 'gray16.pgm', pnm(b'P5', 3, 2, 1000, [0, 200, 400, 600, 800, 1000]))
put('image', 'ascii.pgm', pnm(b'P2', 4, 3, 15, [i % 16 for i in range(12)]))
put('image', 'rgb.ppm', pnm(b'P6', 4, 4, 255, [(i * 13) % 256 for i in range(48)]))
put('image', 'ascii.ppm', pnm(b'P3', 2, 2, 255, [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]))


def adam7(rows, w, h):
    """8-bit gray rows reordered into Adam7's seven passes (each row filtered 'none')."""
    out = []
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)):
        if x0 < w:
            out += [bytes(rows[y][x] for x in range(x0, w, dx)) for y in range(y0, h, dy)]
    return out


def png(w, h, color, depth, rows, palette=None, trns=None, interlace=0):
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, color, 0, 0, interlace))
    if palette:
        out += chunk(b'PLTE', palette)
    if trns:
        out += chunk(b'tRNS', trns)
    raw = b''.join(b'\0' + r for r in rows)
    return out + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


put('image', 'gray8.png', png(5, 4, 0, 8, [bytes((x * 50 + y) % 256 for x in range(5)) for y in range(4)]))
put('image', 'gray1.png', png(9, 2, 0, 1, [b'\xaa\x80', b'\x55\x00']))
put('image', 'rgb8.png', png(3, 2, 2, 8, [bytes(range(9)), bytes(range(100, 109))]))
put('image', 'rgba16.png', png(2, 2, 6, 16, [bytes(range(16)), bytes(range(16, 32))]))
put('image', 'palette.png', png(4, 2, 3, 2, [b'\x1b', b'\xe4'], palette=bytes(range(12)), trns=b'\x80'))
put('image', 'graya.png', png(2, 1, 4, 8, [b'\x10\xff\x20\x00']))
put('image', 'interlaced.png', png(8, 8, 0, 8, adam7([bytes(range(y * 8, y * 8 + 8)) for y in range(8)], 8, 8),
                                  interlace=1))


# ---- images: JPEG ------------------------------------------------------------
# Made with PIL (Debian's python3-pil: run this with /usr/bin/python3); without
# it the JPEG seeds are left as they are.
try:
    from PIL import Image
except ImportError:
    Image = None
    print('make_corpus.py: no PIL here: JPEG seeds not rewritten', file=sys.stderr)


def jpeg(name, mode, w, h, **save):
    n = {'L': 1, 'RGB': 3, 'CMYK': 4}[mode]
    px = bytes((x * 37 + y * 11 + k * 90 + (x * y) % 7) % 256
               for y in range(h) for x in range(w) for k in range(n))
    import io
    b = io.BytesIO()
    Image.frombytes(mode, (w, h), px).save(b, 'JPEG', **save)
    put('image', name, b.getvalue())


if Image:
    jpeg('gray.jpg', 'L', 8, 8, quality=90)
    jpeg('rgb420.jpg', 'RGB', 17, 13, quality=75)
    jpeg('rgb444.jpg', 'RGB', 9, 7, quality=95, subsampling=0)
    jpeg('progressive.jpg', 'RGB', 16, 16, quality=80, progressive=True)
    jpeg('cmyk.jpg', 'CMYK', 8, 8, quality=90)
    jpeg('wide.jpg', 'RGB', 40, 30, quality=60)
