#!/usr/bin/env python3
"""corrupt.py: damaged copies of a valid checkpoint, one per way a weights
file can be wrong, for run.sh (python3 stdlib only).

    python3 corrupt.py GOOD.safetensors OUTDIR

writes OUTDIR/NAME.safetensors for each NAME below, and prints one line per
file: NAME, then a word the loader's refusal must contain."""
import json, os, struct, sys, zlib

good, out = sys.argv[1], sys.argv[2]
raw = open(good, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
head = json.loads(raw[8:8 + n])
data = raw[8 + n:]
meta = head.pop('__metadata__', {})
names = list(head)                 # file order


def tensor(name):
    b, e = head[name]['data_offsets']
    return data[b:e]


def build(tensors, meta, crc=True, fix=None):
    """tensors: [(name, dtype, shape, bytes)]; the CRC-32 of the F32 data is
    recomputed unless crc is False; fix(header) may edit offsets after."""
    h, at, blob = {}, 0, b''
    meta = dict(meta)
    if crc:
        meta['crc32'] = '%08x' % zlib.crc32(b''.join(t[3] for t in tensors if t[1] == 'F32'))
    h['__metadata__'] = meta
    for name, dtype, shape, b in tensors:
        h[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [at, at + len(b)]}
        at += len(b)
        blob += b
    if fix:
        fix(h)
    text = json.dumps(h, separators=(',', ':')).encode()
    text += b' ' * (-(8 + len(text)) % 8)
    return struct.pack('<Q', len(text)) + text + blob


def same():
    return [(k, head[k]['dtype'], head[k]['shape'], tensor(k)) for k in names]


def write(name, word, b):
    with open(os.path.join(out, name + '.safetensors'), 'wb') as f:
        f.write(b)
    print(name, word)


first, last = names[0], names[-1]          # conv1.weight, the last momentum
bias = 'conv1.bias'

write('empty', 'short', b'')
write('truncated', 'past the end', raw[:len(raw) // 2])
write('header_length', 'past the end', struct.pack('<Q', len(raw)) + raw[8:])
write('not_json', 'JSON', struct.pack('<Q', n) + b'PK\x03\x04' + b' ' * (n - 4) + data)

f16 = [(k, d, s, b) for k, d, s, b in same()]
i = names.index(bias)
vals = struct.unpack('<%df' % (len(f16[i][3]) // 4), f16[i][3])
f16[i] = (bias, 'F16', f16[i][2], struct.pack('<%de' % len(vals), *vals))
write('dtype_f16', 'F16', build(f16, meta))

write('missing_tensor', 'no tensor', build([t for t in same() if t[0] != first], meta))

shaped = same()
shaped[i] = (bias, 'F32', [2, len(shaped[i][3]) // 8], shaped[i][3])
write('wrong_shape', 'shape', build(shaped, meta))


def past_end(h):
    b, e = h[last]['data_offsets']
    h[last]['data_offsets'] = [b + 8, e + 8]


write('offsets_past_end', 'past the end', build(same(), meta, fix=past_end))


def overlap(h):
    h['momentum.' + bias]['data_offsets'] = list(h[bias]['data_offsets'])


write('offsets_overlap', 'overlap', build(same(), meta, fix=overlap))

flipped = bytearray(raw)
flipped[8 + n + len(data) // 3] ^= 0x40
write('crc_mismatch', 'CRC', bytes(flipped))
