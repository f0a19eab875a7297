"""A tiny, deterministic demo model: an iris flower classifier."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from .._wire.messages import IOMetadata, ModelMetadata
from ._model import SERVER_NAME

__all__ = ["DEMO_CLASSES", "demo_metadata", "demo_model"]

DEMO_CLASSES: Final = ("setosa", "versicolor", "virginica")
"""The classes of :func:`demo_model`, in the order of ``probabilities`` columns and ``label`` values.

Example:
    >>> from graphpipe_client.testing import DEMO_CLASSES
    >>> DEMO_CLASSES[2]
    'virginica'
"""

# The mean measurements (cm) of each species in Fisher's iris data: sepal
# length, sepal width, petal length, petal width. Nearest class mean is a
# linear classifier: argmin |x - m|^2 = argmax x.m - |m|^2 / 2.
_MEANS: Final = np.array(
    [
        [5.01, 3.43, 1.46, 0.25],
        [5.94, 2.77, 4.26, 1.33],
        [6.59, 2.97, 5.55, 2.03],
    ],
    dtype=np.float32,
)
_WEIGHTS: Final = np.ascontiguousarray(_MEANS.T)  # (4, 3)
_BIAS: Final = (-0.5 * (_MEANS * _MEANS).sum(axis=1)).astype(np.float32)  # (3,)


def _temperature(config: str) -> float:
    temperature = 1.0
    for item in config.replace(";", ",").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if key.strip() != "temperature" or not sep:
            raise ValueError(
                f"unknown config {item.strip()!r}: the demo model accepts 'temperature=<number > 0>'"
            )
        try:
            temperature = float(value)
        except ValueError:
            raise ValueError(f"temperature must be a number, not {value.strip()!r}") from None
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {value.strip()}")
    return temperature


def demo_model(
    features: npt.ArrayLike, *, config: str = ""
) -> dict[str, npt.NDArray[np.float32] | npt.NDArray[np.int64]]:
    """Classify iris flowers from their four measurements (a fixed-weight linear model).

    ``features`` is an ``(N, 4)`` array (sepal length, sepal width, petal
    length, petal width, in cm; any numeric dtype, computed in float32). The
    model scores each class by its nearest class mean, which is a linear map
    ``features @ W + b``, and returns a dict:

    - ``"probabilities"``: float32 ``(N, 3)``, the softmax of the scores
      divided by the temperature (columns: :data:`DEMO_CLASSES`);
    - ``"label"``: int64 ``(N,)``, the index of the most likely class.

    ``config`` may say ``"temperature=2.0"`` (default 1): a higher temperature
    gives softer probabilities; it never changes the labels.

    Raises:
        ValueError: ``features`` is not ``(N, 4)``, or the config is invalid.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client.testing import demo_model
        >>> out = demo_model(np.array([[5.1, 3.5, 1.4, 0.2], [6.5, 3.0, 5.8, 2.2]], np.float32))
        >>> out["label"]
        array([0, 2])
        >>> out["probabilities"].sum(axis=1).round(5)
        array([1., 1.], dtype=float32)
    """
    x = np.asarray(features)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"features must be numeric, not {x.dtype}")
    if x.ndim != 2 or x.shape[1] != 4:
        raise ValueError(f"features must have shape (N, 4), got {tuple(x.shape)}")
    scores = (x.astype(np.float32, copy=False) @ _WEIGHTS + _BIAS) / np.float32(
        _temperature(config)
    )
    scores -= scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return {"probabilities": probabilities, "label": scores.argmax(axis=1).astype(np.int64)}


demo_metadata: Final = ModelMetadata(
    name="iris",
    version="1",
    server=SERVER_NAME,
    description=(
        "Iris flower classifier (nearest class mean, a linear model). "
        "Config: 'temperature=<number>' softens the probabilities."
    ),
    inputs=(
        IOMetadata(
            "features",
            "sepal length, sepal width, petal length, petal width (cm)",
            (None, 4),
            np.dtype(np.float32),
        ),
    ),
    outputs=(
        IOMetadata(
            "probabilities",
            "probability of each class: setosa, versicolor, virginica",
            (None, 3),
            np.dtype(np.float32),
        ),
        IOMetadata(
            "label",
            "index of the most likely class: 0 setosa, 1 versicolor, 2 virginica",
            (None,),
            np.dtype(np.int64),
        ),
    ),
)
"""The metadata of :func:`demo_model` (names, descriptions, shapes, dtypes): serve them together.

Example:
    >>> from graphpipe_client.testing import demo_metadata, demo_model, serve
    >>> demo_metadata.input_names, demo_metadata.output_names
    (('features',), ('probabilities', 'label'))
    >>> with serve(demo_model, metadata=demo_metadata) as server:
    ...     server.metadata.name
    'iris'
"""
