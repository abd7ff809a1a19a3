#!/usr/bin/env python3
"""Small models with every layer and fold pattern of the larger architectures, made by
real Keras (tf_keras = keras2, Keras 3 = keras3) with random weights and randomized BN
statistics, and Keras's own outputs for random inputs.

Usage: tools/.venv/bin/python tools/make_architecture_fixtures.py [--producer keras2|keras3] [--out Fixtures/architectures]

For each model NAME and producer P it writes:
  NAME_P.h5       the model, model.save('....h5')
  NAME_P.x.npy    4 float32 inputs, uniform(-2, 2)
  NAME_P.y.npy    Keras's outputs for them, model(x, training=False)
  NAME_P.json     producer, versions, BN layer count, input and output shapes

Models:
  se_block           Conv → BN → swish, squeeze-and-excitation (GAP keepdims, 1×1 convs, Multiply), Dense head
  inverted_hswish    MobileNetV3's inverted residual: 1×1 conv → BN → hard-swish (Keras 3 hard_silu;
                     tf_keras x·ReLU6(x+3)·(1/6) as TFOpLambda ops), depthwise → BN → ReLU6, 1×1 → BN, Add
  separable_block    Xception/NASNet: SeparableConv2D → BN → ReLU, strided separable (depth multiplier 2) → BN,
                     ZeroPadding2D, Cropping2D, MaxPooling2D, Add
  convnext_block     ConvNeXt: 4×4/4 stem, LayerNormalization, 7×7 conv with groups = channels, Dense on the
                     channel axis, gelu, LayerScale, Add, GAP → LayerNormalization → Dense
  densenet_block     BN → ReLU → Conv, Concatenate, transition with AveragePooling2D; BN before a valid conv
  cnn1d              audio / time series: Conv1D (causal, dilated), SeparableConv1D, DepthwiseConv1D,
                     MaxPooling1D, AveragePooling1D, ZeroPadding1D, Cropping1D, UpSampling1D, GlobalAveragePooling1D
  unet               segmentation: Conv2DTranspose → BN, UpSampling2D (nearest and bilinear), Concatenate skips,
                     Subtract / Maximum / Minimum / Average merges, a per-pixel softmax map as the output
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def models(keras, producer):
    layers = keras.layers
    is3 = producer == "keras3"

    def bn_relu(x, activation="relu"):
        x = layers.BatchNormalization()(x)
        return layers.Activation(activation)(x)

    def hard_swish(x):
        if is3:
            return layers.Activation("hard_silu")(x)
        return layers.Multiply()([x, layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])

    def se_block():
        inp = keras.Input((16, 16, 3))
        x = layers.Conv2D(12, 3, padding="same", use_bias=False)(inp)
        x = bn_relu(x, "swish")
        s = layers.GlobalAveragePooling2D(keepdims=True)(x)
        s = layers.Conv2D(4, 1, activation="relu")(s)
        s = layers.Conv2D(12, 1, activation="sigmoid")(s)
        x = layers.Multiply()([x, s])
        x = layers.Conv2D(8, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inp, layers.Dense(5, activation="softmax")(x))

    def inverted_hswish():
        inp = keras.Input((12, 12, 8))
        x = layers.Conv2D(24, 1, use_bias=False)(inp)
        x = layers.BatchNormalization()(x)
        x = hard_swish(x)
        x = layers.DepthwiseConv2D(5, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(8, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Add()([inp, x])
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inp, layers.Dense(4)(x))

    def separable_block():
        inp = keras.Input((15, 15, 4))
        x = layers.SeparableConv2D(8, 3, padding="same", use_bias=False)(inp)
        x = bn_relu(x)
        y = layers.SeparableConv2D(8, 3, strides=2, padding="same", depth_multiplier=2)(x)
        y = layers.BatchNormalization()(y)
        p = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        p = layers.Cropping2D(((1, 0), (1, 0)))(p)
        p = layers.MaxPooling2D(3, strides=2, padding="same")(p)
        x = layers.Add()([y, p])
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(6, 3, padding="valid", activation="relu", dilation_rate=2)(x)
        x = layers.GlobalMaxPooling2D()(x)
        return keras.Model(inp, layers.Dense(3)(x))

    def convnext_block():
        if is3:
            from keras.src.applications.convnext import LayerScale
        else:
            from tf_keras.src.applications.convnext import LayerScale
        inp = keras.Input((16, 16, 3))
        x = layers.Conv2D(16, 4, strides=4)(inp)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        r = x
        x = layers.Conv2D(16, 7, padding="same", groups=16)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        x = layers.Dense(64)(x)
        x = layers.Activation("gelu")(x)
        x = layers.Dense(16)(x)
        x = LayerScale(0.5, 16)(x)
        x = layers.Add()([r, x])
        x = layers.LayerNormalization(axis=[1, 2, 3], epsilon=1e-3)(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        return keras.Model(inp, layers.Dense(6)(x))

    def densenet_block():
        inp = keras.Input((12, 12, 6))
        x = inp
        for _ in range(2):
            y = bn_relu(x)
            y = layers.Conv2D(8, 1, use_bias=False)(y)
            y = bn_relu(y)
            y = layers.Conv2D(4, 3, padding="same", use_bias=False)(y)
            x = layers.Concatenate()([x, y])
        x = bn_relu(x)
        x = layers.BatchNormalization()(x)
        x = layers.Conv2D(8, 2, strides=2, padding="valid")(x)
        x = layers.AveragePooling2D(2)(x)
        x = layers.Flatten()(x)
        return keras.Model(inp, layers.Dense(4)(x))

    def cnn1d():
        inp = keras.Input((40, 3))
        x = layers.Conv1D(8, 3, padding="causal", dilation_rate=2, use_bias=False)(inp)
        x = bn_relu(x)
        x = layers.SeparableConv1D(12, 5, padding="same", depth_multiplier=2)(x)
        x = bn_relu(x)
        x = layers.DepthwiseConv1D(3, padding="valid")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling1D(2)(x)
        x = layers.ZeroPadding1D((1, 2))(x)
        x = layers.Conv1D(10, 3, strides=2, groups=2, activation="relu")(x)
        x = layers.Cropping1D((1, 0))(x)
        x = layers.UpSampling1D(2)(x)
        x = layers.AveragePooling1D(3, strides=2, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.GlobalAveragePooling1D()(x)
        return keras.Model(inp, layers.Dense(4, activation="softmax")(x))

    def unet():
        inp = keras.Input((16, 16, 3))
        c1 = bn_relu(layers.Conv2D(8, 3, padding="same", use_bias=False)(inp))
        d1 = layers.MaxPooling2D(2)(c1)
        c2 = bn_relu(layers.Conv2D(16, 3, padding="same", use_bias=False)(d1))
        d2 = layers.MaxPooling2D(2)(c2)
        b = bn_relu(layers.Conv2D(16, 3, padding="same")(d2))
        u2 = layers.Conv2DTranspose(16, 3, strides=2, padding="same", use_bias=False)(b)
        u2 = layers.BatchNormalization()(u2)
        n2 = layers.UpSampling2D(2, interpolation="bilinear")(b)
        u2 = layers.Average()([u2, n2])
        u2 = layers.Concatenate()([u2, c2])
        u2 = bn_relu(layers.Conv2D(8, 3, padding="same")(u2))
        u1 = layers.Conv2DTranspose(8, 2, strides=2, padding="valid")(u2)
        u1 = layers.BatchNormalization()(u1)
        n1 = layers.UpSampling2D(2)(u2)
        n1 = layers.Conv2D(8, 1)(n1)
        m = layers.Maximum()([u1, n1])
        s = layers.Subtract()([u1, n1])
        lo = layers.Minimum()([m, s])
        u1 = layers.Concatenate()([m, lo, c1])
        out = layers.Conv2D(3, 1, activation="softmax")(u1)
        return keras.Model(inp, out)

    return {"se_block": se_block, "inverted_hswish": inverted_hswish, "separable_block": separable_block,
            "convnext_block": convnext_block, "densenet_block": densenet_block, "cnn1d": cnn1d, "unet": unet}


def walk(layers):
    for layer in layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from walk(layer.layers)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producer", choices=["keras2", "keras3"], default=None)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "Fixtures", "architectures"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for producer in [args.producer] if args.producer else ["keras2", "keras3"]:
        if producer == "keras2":
            import tf_keras as keras
        else:
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            import keras
        for index, (name, make) in enumerate(models(keras, producer).items()):
            keras.utils.set_random_seed(args.seed + index)
            model = make()
            rng = np.random.default_rng(args.seed + index)
            count = 0
            for layer in walk(model.layers):
                if type(layer).__name__ == "BatchNormalization":
                    shape = layer.get_weights()[-1].shape
                    new = ([rng.uniform(0.5, 1.5, shape)] if layer.scale else []) + ([rng.uniform(-0.5, 0.5, shape)] if layer.center else [])
                    new += [rng.uniform(-0.5, 0.5, shape), rng.uniform(0.5, 2.0, shape)]
                    layer.set_weights([w.astype(np.float32) for w in new])
                    count += 1
                elif type(layer).__name__ in ("LayerNormalization", "LayerScale") and layer.get_weights():
                    layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if i == 0 else
                                       rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for i, w in enumerate(layer.get_weights())])
            x = rng.uniform(-2, 2, (4,) + tuple(model.input_shape[1:])).astype(np.float32)
            y = np.asarray(model(x, training=False), dtype=np.float32)
            base = os.path.join(args.out, f"{name}_{producer}")
            model.save(base + ".h5")
            np.save(base + ".x.npy", x)
            np.save(base + ".y.npy", y)
            with open(base + ".json", "w") as f:
                json.dump({"producer": producer, "keras_version": keras.__version__, "batch_norm_layers": count,
                           "input_shape": list(model.input_shape[1:]), "output_shape": list(y.shape[1:])}, f, indent=1)
            print(f"wrote {base}.h5: {count} BatchNormalization layers, output {y.shape[1:]}")
            keras.backend.clear_session()


if __name__ == "__main__":
    main()
