"""Image runs: a classifier trained here on the real training images (numpy only: one hidden
layer of ReLUs, Adam), and what it says of samples: how often it names the label a sample was
asked for, and the Frechet distance between its hidden features of samples and of real test
images (an FID with a classifier of the dataset's own), beside the same distance for as many
real training images (the floor: the small-sample bias of the estimate and the train/test gap).
"""
import os

import numpy as np


class Classifier:
    def __init__(self, w1, b1, w2, b2):
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2

    def features(self, x):
        return np.maximum(np.asarray(x, np.float32) @ self.w1 + self.b1, 0.0)

    def predict(self, x):
        return np.argmax(self.features(x) @ self.w2 + self.b2, axis=1)


def train_classifier(x, y, classes, hidden=256, epochs=8, batch=128, lr=1e-3, seed=0):
    """Softmax cross-entropy on rows x [N, D] in [-1, 1], Adam."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    D = x.shape[1]
    p = [rng.standard_normal((D, hidden)).astype(np.float32) * np.sqrt(2.0 / D), np.zeros(hidden, np.float32),
         rng.standard_normal((hidden, classes)).astype(np.float32) * np.sqrt(1.0 / hidden), np.zeros(classes, np.float32)]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            xb, yb = x[idx], y[idx]
            h = np.maximum(xb @ p[0] + p[1], 0.0)
            z = h @ p[2] + p[3]
            z -= z.max(1, keepdims=True)
            prob = np.exp(z)
            prob /= prob.sum(1, keepdims=True)
            prob[np.arange(len(yb)), yb] -= 1.0
            gz = prob / len(yb)
            gh = (gz @ p[2].T) * (h > 0)
            grads = [xb.T @ gh, gh.sum(0), h.T @ gz, gz.sum(0)]
            step += 1
            for k in range(4):
                m[k] = 0.9 * m[k] + 0.1 * grads[k]
                v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
                p[k] -= lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
    return Classifier(*p)


def classifier_for(data, cache=None):
    """The classifier of a dataset ({x, y, value_range, ...} of fmtools.load_dataset), trained once
    and kept in cache (an .npz beside the dataset) when given."""
    import fmtools
    if cache and os.path.exists(cache):
        z = np.load(cache)
        return Classifier(z["w1"], z["b1"], z["w2"], z["b2"])
    x = fmtools.to_model_space(data["x"], data["value_range"])
    c = train_classifier(x, data["y"], int(data["y"].max()) + 1)
    if cache:
        np.savez(cache + ".tmp.npz", w1=c.w1, b1=c.b1, w2=c.w2, b2=c.b2)
        os.replace(cache + ".tmp.npz", cache)
    return c


def frechet(a, b):
    """Frechet distance between Gaussians fitted to feature rows a and b:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), by symmetric eigendecompositions."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, q = np.linalg.eigh(sa)
    ra = (q * np.sqrt(np.clip(w, 0, None))) @ q.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ sb @ ra), 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross)


def image_metrics(samples, labels, data, classifier, seed=0):
    """Accuracy against the requested labels, Frechet distance to the test images, and the same for
    real images: the classifier's accuracy on the test set and the floor of the distance."""
    import fmtools
    rng = np.random.default_rng(seed)
    test = fmtools.to_model_space(data["x_test"], data["value_range"])
    train = fmtools.to_model_space(data["x"], data["value_range"])
    x = np.clip(np.asarray(samples, np.float32).reshape(len(samples), -1), -1, 1)
    floor_rows = train[rng.choice(len(train), len(x), replace=False)]
    ft = classifier.features(test)
    out = {"classifier_test_accuracy": float(np.mean(classifier.predict(test) == data["y_test"])),
           "frechet": frechet(classifier.features(x), ft),
           "frechet_floor_real_train": frechet(classifier.features(floor_rows), ft),
           "n_samples": int(len(x))}
    if labels is not None:
        out["sample_accuracy"] = float(np.mean(classifier.predict(x) == np.asarray(labels)))
        out["per_class_accuracy"] = [float(np.mean(classifier.predict(x[labels == k]) == k))
                                     for k in range(int(np.max(labels)) + 1)]
    return out
