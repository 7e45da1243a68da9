"""A plain Keras script in the style of the Keras "Simple MNIST convnet" example: Sequential,
compile, fit on numpy arrays."""

import argparse
import time

import keras
from common import load, report


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epoch_s = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_s.append(time.perf_counter() - self.start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--jit-compile", action="store_true")
    args = parser.parse_args()
    data = load()
    x_train, x_test = data["x_train"][..., None], data["x_test"][..., None]
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(10, kernel_size=5),
        keras.layers.MaxPooling2D(2), keras.layers.ReLU(),
        keras.layers.Conv2D(20, kernel_size=5),
        keras.layers.SpatialDropout2D(0.5),
        keras.layers.MaxPooling2D(2), keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(50, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(args.lr, momentum=args.momentum),
                  metrics=["accuracy"], jit_compile=args.jit_compile)
    timer = EpochTimer()
    model.fit(
        x_train, data["y_train"], batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=[timer]
    )
    _, accuracy = model.evaluate(x_test, data["y_test"], verbose=0)
    report(timer.epoch_s, len(x_train), float(accuracy))


if __name__ == "__main__":
    main()
