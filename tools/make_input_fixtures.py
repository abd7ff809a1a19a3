#!/usr/bin/env python3
"""Makes the input fixtures of Fixtures/images and Fixtures/npy with Pillow, NumPy and
real Keras, and what Keras gives for them:

Fixtures/images/
  *.png, *.jpg     small images of every kind bnkit reads (RGB, RGBA, palette, gray,
                   16-bit gray and 1-bit PNG; RGB and gray JPEG), odd sizes, made with Pillow
  expected.npz     for each image, color mode (rgb, gray), interpolation (nearest, bilinear)
                   and preprocess_input mode (none, tf, torch, caffe; gray: none):
                   keras.utils.load_img(color_mode, target_size=(H, W), interpolation)
                   -> img_to_array -> keras.applications.imagenet_utils.preprocess_input
  rgb_cnn_<producer>.h5   a small Conv2D -> BN -> ReLU -> GAP -> Dense model on (H, W, 3)
  rgb_cnn_<producer>.outputs.npy   its outputs on every image (nearest, preprocess 'tf')
  classes.txt      class names for it
Fixtures/npy/
  <dtype>.npy      numpy.save of a (7, 3, 2) array in each dtype bnkit reads (and '>' orders),
  expected.npz     the same values as float32 (what bnkit must read)
  mnist1000_uint8.npy / mnist100_float32.npy / mnist1000.npz   the first 1000 (100)
                   MNIST test images (the float32 one divided by 255), to compare with the IDX file.

Usage: tools/.venv/bin/python tools/make_input_fixtures.py   (uses Keras 3 and tf_keras)
"""
import gzip
import os
import struct

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "Fixtures")
IMAGES = os.path.join(FIXTURES, "images")
NPY = os.path.join(FIXTURES, "npy")
HEIGHT, WIDTH = 24, 20


def picture(width, height, seed):
    """A smooth gradient with shapes and noise: real structure for resizing and JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = 127 + 120 * np.sin(x / width * 6.3 + seed)
    g = 127 + 120 * np.cos(y / height * 5.1 - seed)
    b = (x * y * 255.0 / (width * height))
    rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (height, width, 3))
    rgb[height // 4: height // 2, width // 3: width // 2] = [250, 20, 30]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def make_images():
    os.makedirs(IMAGES, exist_ok=True)
    made = []
    rgb = picture(37, 29, 1)
    Image.fromarray(rgb).save(os.path.join(IMAGES, "rgb.png")); made.append("rgb.png")
    alpha = np.clip(np.arange(41 * 33).reshape(33, 41) % 256, 0, 255).astype(np.uint8)
    rgba = np.dstack([picture(41, 33, 2), alpha])
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMAGES, "rgba.png")); made.append("rgba.png")
    Image.fromarray(picture(30, 45, 3)).quantize(colors=37).save(os.path.join(IMAGES, "palette.png")); made.append("palette.png")
    Image.fromarray(picture(17, 13, 4)).convert("L").save(os.path.join(IMAGES, "gray.png")); made.append("gray.png")
    gray16 = (np.arange(26 * 31).reshape(26, 31) * 97 % 700).astype(np.uint16)
    Image.fromarray(gray16).save(os.path.join(IMAGES, "gray16.png")); made.append("gray16.png")
    Image.fromarray(picture(22, 27, 5)).convert("1").save(os.path.join(IMAGES, "bilevel.png")); made.append("bilevel.png")
    Image.fromarray(picture(64, 48, 6)).save(os.path.join(IMAGES, "photo.jpg"), quality=90); made.append("photo.jpg")
    Image.fromarray(picture(15, 19, 7)).convert("L").save(os.path.join(IMAGES, "gray.jpg"), quality=85); made.append("gray.jpg")
    Image.fromarray(picture(20, 24, 8)).save(os.path.join(IMAGES, "exact.png")); made.append("exact.png")  # no resize needed
    with open(os.path.join(IMAGES, "damaged.jpg"), "wb") as f:
        f.write(open(os.path.join(IMAGES, "photo.jpg"), "rb").read()[:300])
    return made


def keras3():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    return keras


def expected_arrays(names):
    keras = keras3()
    from keras.src.applications import imagenet_utils
    out = {}
    for name in names:
        path = os.path.join(IMAGES, name)
        for color, mode_list in [("rgb", ["none", "tf", "torch", "caffe"]), ("gray", ["none"])]:
            for interpolation in ["nearest", "bilinear"]:
                image = keras.utils.load_img(path, color_mode="rgb" if color == "rgb" else "grayscale",
                                             target_size=(HEIGHT, WIDTH), interpolation=interpolation)
                base = keras.utils.img_to_array(image, dtype="float32")
                for mode in mode_list:
                    x = base.copy()
                    if mode != "none":
                        x = imagenet_utils.preprocess_input(x[None], mode=mode)[0]
                    out[f"{name}-{color}-{interpolation}-{mode}"] = x.astype(np.float32)
    np.savez(os.path.join(IMAGES, "expected.npz"), **out)
    return out


def rgb_models(expected, names):
    with open(os.path.join(IMAGES, "classes.txt"), "w") as f:
        f.write("\n".join(["cat", "dog", "bird", "fish", "horse"]) + "\n")
    for producer in ["keras2", "keras3"]:
        if producer == "keras2":
            import tf_keras as keras
        else:
            keras = keras3()
        keras.utils.set_random_seed(3)
        L = keras.layers
        model = keras.Sequential([
            keras.Input(shape=(HEIGHT, WIDTH, 3)),
            L.Conv2D(8, 3, padding="same", use_bias=False),
            L.BatchNormalization(),
            L.ReLU(),
            L.GlobalAveragePooling2D(),
            L.Dense(5, activation="softmax"),
        ], name="rgb_cnn")
        bn = model.layers[1]
        rng = np.random.default_rng(4)
        bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.uniform(-0.5, 0.5, 8), rng.uniform(-0.2, 0.2, 8), rng.uniform(0.5, 2, 8)])
        model.save(os.path.join(IMAGES, f"rgb_cnn_{producer}.h5"))
        batch = np.stack([expected[f"{n}-rgb-nearest-tf"] for n in names])
        np.save(os.path.join(IMAGES, f"rgb_cnn_{producer}.outputs.npy"), np.asarray(model.predict(batch, verbose=0), dtype=np.float32))


def make_npy():
    os.makedirs(NPY, exist_ok=True)
    rng = np.random.default_rng(9)
    values = rng.integers(0, 100, (7, 3, 2)).astype(np.float64) + rng.choice([0.0, 0.5, 0.25], (7, 3, 2))
    expected = {}
    for dtype in ["<f4", ">f4", "<f8", ">f8", "<f2", "|u1", "|i1", "<i2", ">i2", "<u2", "<i4", ">i4", "<u4", "<i8", "<u8", "|b1"]:
        name = {"<": "le", ">": "be", "|": "na"}[dtype[0]] + "_" + dtype[1:]
        data = (values - (0 if dtype[1] in "ub" else 40)).astype(np.dtype(dtype)) if dtype[1] != "b" else (values > 50)
        np.save(os.path.join(NPY, f"{name}.npy"), data)
        expected[name] = data.astype(np.float32)
    np.savez(os.path.join(NPY, "expected.npz"), **expected)
    with gzip.open(os.path.join(FIXTURES, "mnist", "t10k-images.idx3-ubyte.gz")) as f:
        raw = f.read()
    images = np.frombuffer(raw, np.uint8, offset=16)[:1000 * 784].reshape(1000, 28, 28)
    np.save(os.path.join(NPY, "mnist1000_uint8.npy"), images)
    np.save(os.path.join(NPY, "mnist100_float32.npy"), images[:100].astype(np.float32) / np.float32(255))
    np.savez_compressed(os.path.join(NPY, "mnist1000.npz"), x_test=images, y_test=np.zeros(1000, np.int64))


def main():
    names = make_images()
    expected = expected_arrays(names)
    rgb_models(expected, names)
    make_npy()
    print(f"wrote {len(names)} images, {len(expected)} expected arrays, two rgb_cnn models, npy fixtures")


if __name__ == "__main__":
    main()
