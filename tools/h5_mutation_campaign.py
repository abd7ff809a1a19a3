#!/usr/bin/env python3
"""Mutation campaign over real Keras files: damaged or crafted .h5 / .keras files
given to `bnconv fold`, looking for crashes (exit by a signal), hangs (over the
time limit) and unclear refusals.

Mutations (chosen at random, seeded): bit flips; byte runs set to 0x00, 0xFF or
random bytes; truncation; a chunk of another input file spliced in; oversized
length/offset fields (2-, 4- or 8-byte little-endian integers overwritten with
huge values, mostly in the metadata near the start and end of the file). For a
.keras archive, half the mutations change the zip bytes and half change the
model.weights.h5 inside it (the archive is rebuilt around it).

Each outcome is one of: loaded (exit 0, an output written), refused (exit 65,
one line on stderr naming the file, no output), crash, hang, unclear (any other
exit, a message not naming the file or not one line, or an output left behind
on failure). Crashes, hangs and unclear refusals are kept in --keep DIR.

Usage:
  tools/h5_mutation_campaign.py --bnconv .build/release/bnconv --count 20000 [--seed 1]
      [--timeout 10] [--jobs 2] [--keep DIR] [FILES...]      (default FILES: the Keras fixtures)
Prints counts per mutation and outcome, the slowest run, and 'N passed, N failed'
(failed: crashes, hangs and unclear refusals). Set BNKIT_HDF5_IN_PROCESS=1 in the
environment to measure bnconv with libhdf5 in process (the design before isolation).
"""
import argparse
import concurrent.futures
import glob
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "Fixtures")


def default_inputs():
    files = sorted(glob.glob(os.path.join(FIXTURES, "*_keras[23].h5")) + glob.glob(os.path.join(FIXTURES, "*.keras")))
    return [f for f in files if "two_inputs" not in f and "big_cnn" not in f]


def huge_values(rng, width):
    top = (1 << (8 * width)) - 1
    return rng.choice([top, top // 2 + 1, top // 2, rng.randrange(top // 16, top + 1), (1 << (8 * width - 4))])


def mutate_bytes(data, rng, others):
    data = bytearray(data)
    kind = rng.choice(["bitflip", "byterun", "truncate", "splice", "length", "length"])
    n = len(data)
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "byterun":
        length = rng.randint(1, 64)
        start = rng.randrange(max(1, n - length))
        fill = rng.choice(["zero", "ff", "random"])
        for i in range(start, min(n, start + length)):
            data[i] = 0 if fill == "zero" else 0xFF if fill == "ff" else rng.randrange(256)
        kind += "-" + fill
    elif kind == "truncate":
        data = data[:rng.randrange(n)]
    elif kind == "splice":
        other = rng.choice(others)
        length = rng.randint(16, 4096)
        source = rng.randrange(max(1, len(other) - length))
        target = rng.randrange(max(1, n - length))
        chunk = other[source:source + length]
        data[target:target + len(chunk)] = chunk
    else:
        width = rng.choice([2, 4, 8])
        # HDF5 metadata lives mostly near the start (superblock, root group, headers) and end.
        region = rng.random()
        if region < 0.6:
            offset = rng.randrange(min(n - width, 4096))
        elif region < 0.8:
            offset = rng.randrange(max(0, n - 8192), n - width)
        else:
            offset = rng.randrange(n - width)
        data[offset:offset + width] = huge_values(rng, width).to_bytes(width, "little")
        kind = f"length{width * 8}"
    return bytes(data), kind


def mutate(path, data, rng, others):
    if path.endswith(".keras") and rng.random() < 0.5:
        with zipfile.ZipFile(io.BytesIO(data)) as source:
            members = [(info, source.read(info.filename)) for info in source.infolist()]
        out = io.BytesIO()
        kind = None
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
            for info, content in members:
                if info.filename == "model.weights.h5":
                    content, kind = mutate_bytes(content, rng, others)
                target.writestr(info, content)
        return out.getvalue(), "inner-" + (kind or "none")
    return mutate_bytes(data, rng, others)


def run_one(bnconv, path, timeout):
    out = path + ".bin"
    start = time.monotonic()
    try:
        result = subprocess.run([bnconv, "fold", path, "-o", out], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang", timeout, ""
    elapsed = time.monotonic() - start
    stderr = result.stderr.decode(errors="replace").strip()
    wrote = os.path.exists(out)
    if result.returncode < 0:
        return f"crash (signal {-result.returncode})", elapsed, stderr
    if result.returncode == 0:
        return ("loaded" if wrote else "unclear"), elapsed, stderr
    lines = stderr.split("\n")
    if result.returncode == 65 and len(lines) == 1 and path in lines[0] and not wrote:
        return "refused", elapsed, stderr
    return f"unclear (exit {result.returncode})", elapsed, stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--bnconv", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", help="folder for inputs that crashed, hung or were refused unclearly")
    args = parser.parse_args()
    files = args.files or default_inputs()
    contents = {f: open(f, "rb").read() for f in files}
    others = list(contents.values())
    print(f"{len(files)} input files: " + ", ".join(os.path.basename(f) for f in files), flush=True)
    work = tempfile.mkdtemp(prefix="bnkit-campaign-")
    counts, slowest, lock = {}, (0.0, ""), threading.Lock()
    failures = []

    def case(i):
        nonlocal slowest
        rng = random.Random(args.seed * 1_000_003 + i)
        path = files[i % len(files)]
        data, kind = mutate(path, contents[path], rng, others)
        ext = os.path.splitext(path)[1]
        target = os.path.join(work, f"case{i}{ext}")
        with open(target, "wb") as f:
            f.write(data)
        outcome, elapsed, stderr = run_one(args.bnconv, target, args.timeout)
        with lock:
            counts.setdefault(kind, {}).setdefault(outcome, 0)
            counts[kind][outcome] += 1
            if elapsed > slowest[0]:
                slowest = (elapsed, f"case {i} ({os.path.basename(path)}, {kind}): {outcome}")
            if outcome not in ("loaded", "refused"):
                failures.append((i, os.path.basename(path), kind, outcome, stderr[:300]))
                if args.keep:
                    os.makedirs(args.keep, exist_ok=True)
                    shutil.copy(target, os.path.join(args.keep, f"{outcome.split()[0]}-{os.path.basename(path)}-{kind}-{i}{ext}"))
        for leftover in (target, target + ".bin"):
            if os.path.exists(leftover):
                os.remove(leftover)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for n, _ in enumerate(pool.map(case, range(args.count)), 1):
            if n % 1000 == 0:
                print(f"  {n} runs, {time.monotonic() - started:.0f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    totals = {}
    for kind in sorted(counts):
        print(f"{kind:16} " + ", ".join(f"{o}: {c}" for o, c in sorted(counts[kind].items())))
        for o, c in counts[kind].items():
            totals[o] = totals.get(o, 0) + c
    print("total:           " + ", ".join(f"{o}: {c}" for o, c in sorted(totals.items())))
    print(f"slowest run: {slowest[0]:.2f} s, {slowest[1]}")
    for failure in failures[:20]:
        print("FAIL case %d (%s, %s): %s: %s" % failure)
    bad = sum(c for o, c in totals.items() if o not in ("loaded", "refused"))
    print(f"{args.count - bad} passed, {bad} failed")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
