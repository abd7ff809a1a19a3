"""Segmentation and 1-D networks as users write them in Keras, beside keras.applications'
classifiers: each is a constructor `(keras, size) -> Model` for either producer (tf_keras or
Keras 3), with random weights (the caller randomizes the BN statistics).

- UNet (Ronneberger et al. 2015, with BatchNormalization as it is usually deployed): four levels
  of Conv 3×3 → BN → ReLU twice and 2×2 max pooling (32 → 256 filters), a 512-filter bottom,
  Conv2DTranspose 2×2/2 up, Concatenate skips, a 1×1 per-pixel softmax over 3 classes. Input
  size × size × 3 (size a multiple of 16).
- XceptionUNet: Keras's example "Image segmentation with a U-Net-like architecture"
  (keras.io/examples/vision/oxford_pets_image_segmentation): a strided stem, SeparableConv2D
  blocks with max pooling and strided 1×1 residuals down, Conv2DTranspose 3×3 blocks with
  UpSampling2D and 1×1 residuals up, a 3×3 softmax over 3 classes. Input size × size × 3 (size a
  multiple of 16).
- FCN1D: Keras's example "Timeseries classification from scratch"
  (keras.io/examples/timeseries/timeseries_classification_from_scratch; Wang et al. 2017): three
  Conv1D 3 → BN → ReLU (64 filters), global average pooling, a 2-class softmax. Input size × 1.
- ResNet1D: the 12-lead ECG network of Ribeiro et al. 2020 ("Automatic diagnosis of the 12-lead
  ECG using a deep neural network", Nature Communications; github.com/antonior92/automatic-ecg-diagnosis):
  Conv1D 16 → BN → ReLU (64 filters), four residual blocks (128, 196, 256, 320 filters, each
  down-sampling by 4 with a strided Conv1D 16; the skip a max pooling and a 1×1 conv; BN → ReLU
  after the Add), Flatten, a 6-class sigmoid. Input size × 12 (the paper's size is 4096; any
  length works, as both paths of a block round their lengths up alike).
"""


def unet(keras, size):
    layers = keras.layers

    def twice(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input((size, size, 3))
    x, skips = inputs, []
    for filters in (32, 64, 128, 256):
        x = twice(x, filters)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = twice(x, 512)
    for filters, skip in zip((256, 128, 64, 32), reversed(skips)):
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skip])
        x = twice(x, filters)
    outputs = layers.Conv2D(3, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="unet")


def xception_unet(keras, size):
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    for filters in (64, 128, 256):
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous)
        x = layers.add([x, residual])
        previous = x
    for filters in (256, 128, 64, 32):
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2)(x)
        residual = layers.UpSampling2D(2)(previous)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous = x
    outputs = layers.Conv2D(3, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs, name="xception_unet")


def fcn1d(keras, size):
    layers = keras.layers
    inputs = keras.Input((size, 1))
    x = inputs
    for _ in range(3):
        x = layers.Conv1D(64, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="fcn1d")


def resnet1d(keras, size):
    layers = keras.layers
    kernel, rate = 16, 0.8
    inputs = keras.Input((size, 12))
    x = layers.Conv1D(64, kernel, padding="same", use_bias=False, kernel_initializer="he_normal")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    y = x
    for filters in (128, 196, 256, 320):
        # The skip: max pooling by the block's stride, then a 1×1 conv to the new width.
        y = layers.MaxPooling1D(4, strides=4, padding="same")(y)
        y = layers.Conv1D(filters, 1, padding="same", use_bias=False, kernel_initializer="he_normal")(y)
        x = layers.Conv1D(filters, kernel, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Dropout(1 - rate)(x)
        x = layers.Conv1D(filters, kernel, strides=4, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.Add()([x, y])
        y = x
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Dropout(1 - rate)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(6, activation="sigmoid", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, outputs, name="resnet1d")


CONSTRUCTORS = {"UNet": unet, "XceptionUNet": xception_unet, "FCN1D": fcn1d, "ResNet1D": resnet1d}
