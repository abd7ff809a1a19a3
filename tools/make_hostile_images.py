#!/usr/bin/env python3
"""Makes Fixtures/images/hostile/: image files a decoder must survive, from files Pillow writes.

  progressive.jpg      a progressive JPEG written by Pillow (libjpeg-turbo), 40 x 30 RGB
  progressive.rgb.npy  what Pillow decodes from it: Image.open(...).convert("RGB"), uint8 H x W x 3
  many_scans.jpg       progressive.jpg with its last scan (an AC refinement) repeated until the
                       file holds 600 scans: valid markers, each scan a full pass over the image.
                       libjpeg decodes it (a repeated refinement is only a warning), one pass over
                       the image per scan: a 2000 x 2000 progressive JPEG with its last scan
                       repeated 200 times took Pillow 3.3 s against 0.12 s. libjpeg-turbo advises
                       capping the scans of untrusted input (djpeg -maxscans).

Truncated and otherwise damaged variants are cut from the fixtures by the tests themselves.

Usage: tools/.venv/bin/python tools/make_hostile_images.py
"""
import io
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "Fixtures", "images", "hostile")
SCANS = 600


def segments(data):
    """The file's markers in order: (marker byte, start, end), a scan's entropy data included in its SOS."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    out, i = [(0xD8, 0, 2)], 2
    while i < len(data):
        assert data[i] == 0xFF, f"marker expected at {i}"
        marker = data[i + 1]
        if marker == 0xD9:
            out.append((marker, i, i + 2))
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        end = i + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed 0 or a restart
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
        out.append((marker, i, end))
        i = end
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([x * 6, y * 8, (x + y) * 3], axis=-1) + rng.normal(0, 10, (30, 40, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    with open(os.path.join(OUT, "progressive.jpg"), "wb") as f:
        f.write(data)
    np.save(os.path.join(OUT, "progressive.rgb.npy"), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))

    parts = segments(data)
    scans = [k for k, (marker, _, _) in enumerate(parts) if marker == 0xDA]
    assert len(scans) > 1, "Pillow wrote a sequential JPEG"
    # The last scan with the tables defined right before it (Huffman tables may change per scan).
    first = scans[-1]
    while parts[first - 1][0] == 0xC4:
        first -= 1
    last_scan = data[parts[first][1]:parts[scans[-1]][2]]
    crafted = data[:parts[-1][1]] + last_scan * (SCANS - len(scans)) + data[parts[-1][1]:]
    with open(os.path.join(OUT, "many_scans.jpg"), "wb") as f:
        f.write(crafted)
    print(f"progressive.jpg: {len(data)} bytes, {len(scans)} scans; many_scans.jpg: {len(crafted)} bytes, {SCANS} scans")


if __name__ == "__main__":
    main()
