#!/usr/bin/env python3
"""Makes a shifted copy of an IDX image file: a faded scan (low contrast and a
brighter background) and, optionally, sensor noise, for trying BN recalibration
(AdaBN) on a domain shift.

    x' = clip(round(contrast * x + brightness * 255 + noise * 255 * N(0, 1)), 0, 255)

Usage: tools/domain_shift.py IN.idx[.gz] OUT.idx [--contrast 0.3] [--brightness 0.6]
                                                [--noise 0] [--invert] [--seed 0]
The output is a plain uint8 IDX file of the same dimensions. numpy only.
"""
import argparse
import gzip
import struct

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--contrast", type=float, default=0.3)
    parser.add_argument("--brightness", type=float, default=0.6)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--invert", action="store_true", help="255 - x first (white digits on black become black on white)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    raw = open(args.input, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, code, ndims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code != 0x08:
        raise SystemExit(f"{args.input}: not a uint8 IDX file")
    header = 4 + 4 * ndims
    dims = struct.unpack(">" + "I" * ndims, raw[4:header])
    x = np.frombuffer(raw, dtype=np.uint8, offset=header).astype(np.float64)
    if x.size != int(np.prod(dims)):
        raise SystemExit(f"{args.input}: the data does not match the header")
    if args.invert:
        x = 255.0 - x
    y = args.contrast * x + args.brightness * 255.0
    if args.noise > 0:
        y += np.random.default_rng(args.seed).normal(0.0, args.noise * 255.0, size=y.shape)
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    with open(args.output, "wb") as f:
        f.write(raw[:header])
        f.write(y.tobytes())


if __name__ == "__main__":
    main()
