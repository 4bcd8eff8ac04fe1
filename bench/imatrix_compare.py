#!/usr/bin/env python3
"""Compare two importance matrices in llama.cpp's legacy .imatrix layout (int32 entry count; per entry the
name, ncall, nval and nval float32 values, each value a per-column sum of x^2 scaled so that value / ncall
is the mean over tokens). Prints, per matrix both files hold, the mean and standard deviation over columns
of log(a_j / b_j), the ratio of the two per-token means.

usage: bench/imatrix_compare.py A.imatrix B.imatrix
"""
import math
import struct
import sys


def load(path):
    b = open(path, 'rb').read()
    o = 0
    n, = struct.unpack_from('<i', b, o)
    o += 4
    d = {}
    for _ in range(n):
        ln, = struct.unpack_from('<i', b, o)
        o += 4
        name = b[o:o + ln].decode()
        o += ln
        ncall, nval = struct.unpack_from('<ii', b, o)
        o += 8
        d[name] = (ncall, struct.unpack_from('<%df' % nval, b, o))
        o += 4 * nval
    return d


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    only = sorted(set(a) ^ set(b))
    if only:
        print('in one file only:', ' '.join(only))
    print('%-28s %7s %7s %10s %8s' % ('matrix', 'ncall a', 'ncall b', 'mean log', 'sd log'))
    for k in sorted(set(a) & set(b)):
        (na, va), (nb, vb) = a[k], b[k]
        lr = [math.log((x / na) / (y / nb)) for x, y in zip(va, vb) if x > 0 and y > 0]
        m = sum(lr) / len(lr)
        sd = (sum((x - m) ** 2 for x in lr) / len(lr)) ** 0.5
        print('%-28s %7d %7d %+10.4f %8.4f' % (k, na, nb, m, sd))


if __name__ == '__main__':
    main()
