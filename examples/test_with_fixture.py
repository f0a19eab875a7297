"""Testing your own application code with the bundled server's pytest fixture.

``graphpipe_serve`` comes with the package (a pytest plugin): it starts a real
GraphPipe server around any callable and stops it when the test ends. Run it:
``pytest examples/test_with_fixture.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphpipe_client as gp


# --- the application code under test -------------------------------------
def rank_documents(url: str, scores_in: np.ndarray) -> list[int]:
    """Ask a scoring model for scores and return document indices, best first."""
    scores = gp.remote.execute(url, scores_in)
    assert isinstance(scores, np.ndarray)
    return [int(i) for i in np.argsort(-scores.ravel(), kind="stable")]


# --- the tests ----------------------------------------------------------------
def test_ranking_uses_the_models_scores(graphpipe_serve: gp.testing.ServeFactory) -> None:
    server = graphpipe_serve(lambda x: x * np.array([1.0, -1.0, 2.0]))
    assert rank_documents(server.url, np.array([1.0, 5.0, 1.0])) == [2, 0, 1]


def test_ranking_surfaces_model_errors(graphpipe_serve: gp.testing.ServeFactory) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("scores must be finite")

    server = graphpipe_serve(broken)
    with pytest.raises(gp.HTTPStatusError, match="scores must be finite"):
        rank_documents(server.url, np.array([np.nan]))


def test_ranking_survives_a_flaky_server(graphpipe_serve: gp.testing.ServeFactory) -> None:
    server = graphpipe_serve(lambda x: x)
    server.set_faults(status=503, body=b"warming up", times=1)  # the client retries a 503
    assert rank_documents(server.url, np.array([0.1, 0.9])) == [1, 0]
