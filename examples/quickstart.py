"""Quickstart, and the README's main job: a real round trip against the bundled server.

Starts the bundled GraphPipe server on 127.0.0.1 with the demo model (an iris
classifier), then calls it the 2018 way (``remote.execute``) and with a
configured ``Client`` (``execute_multi`` with names and a config), and prints
the metadata and the results.

Run it: ``python examples/quickstart.py`` (or ``nox -s demo``).
"""

from __future__ import annotations

import numpy as np

from graphpipe_client import Client, remote
from graphpipe_client.testing import DEMO_CLASSES, demo_metadata, demo_model, serve

# sepal length, sepal width, petal length, petal width (cm)
FLOWERS = np.array(
    [
        [5.1, 3.5, 1.4, 0.2],
        [6.2, 2.9, 4.3, 1.3],
        [7.7, 3.0, 6.1, 2.3],
    ],
    dtype=np.float32,
)


def main() -> None:
    with serve(demo_model, metadata=demo_metadata) as server:
        print(f"serving the demo model at {server.url}\n")

        # The drop-in API of the 2018 client: one call, one pooled connection.
        print(remote.metadata(server.url), end="\n\n")
        _probabilities, labels = remote.execute(server.url, FLOWERS)
        print("remote.execute ->", [DEMO_CLASSES[i] for i in labels])

        # A configured client: names, a config for the model, several outputs.
        with Client(server.url, timeout=(2, 10), retries=2) as client:
            soft, labels2 = client.execute_multi(
                [FLOWERS],
                input_names=["features"],
                output_names=["probabilities", "label"],
                config="temperature=4.0",
            )
        np.set_printoptions(precision=3, suppress=True)
        print("Client.execute_multi(temperature=4.0) ->")
        print(soft)
        assert labels2.tolist() == labels.tolist() == [0, 1, 2], "unexpected demo answer"
        print(
            f"\n{server.requests_served} requests on {server.connections_accepted} connections: ok"
        )


if __name__ == "__main__":
    main()
