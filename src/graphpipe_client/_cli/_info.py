"""``graphpipe-client info``: print a model's metadata, as a table or as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .._client import Client
from .._wire.messages import IOMetadata, ModelMetadata
from ._common import EXIT_OK, client_options

__all__ = ["cmd_info", "metadata_json"]


def _dtype_name(dtype: np.dtype[Any] | None) -> str | None:
    if dtype is None:
        return None
    return "string" if dtype.kind in "OSU" else dtype.name


def _io_json(io: IOMetadata) -> dict[str, Any]:
    return {
        "name": io.name,
        "description": io.description,
        "shape": None if io.shape is None else list(io.shape),
        "dtype": _dtype_name(io.dtype),
    }


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    """The metadata as ``info --json`` prints it.

    Example:
        >>> from graphpipe_client import IOMetadata, ModelMetadata
        >>> metadata_json(ModelMetadata(name="m", inputs=(IOMetadata("x", shape=(None, 2)),)))["inputs"]
        [{'name': 'x', 'description': '', 'shape': [None, 2], 'dtype': None}]
    """
    return {
        "name": meta.name,
        "version": meta.version,
        "server": meta.server,
        "description": meta.description,
        "inputs": [_io_json(io) for io in meta.inputs],
        "outputs": [_io_json(io) for io in meta.outputs],
    }


def cmd_info(args: argparse.Namespace) -> int:
    """Run ``info``: fetch the metadata of ``args.url`` and print it; the exit status."""
    with Client(args.url, **client_options(args)) as client:
        meta = client.metadata()
    if args.json:
        print(json.dumps(metadata_json(meta), indent=2))
    else:
        print(meta)
    return EXIT_OK
