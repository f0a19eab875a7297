"""Quickstart: encode a request and decode it the way a server does (codec only)."""

from __future__ import annotations

import numpy as np

from graphpipe_client import codec


def main() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = codec.encode_infer_request([x], input_names=["x"], config="demo")
    print(f"request: {msg.nbytes} bytes in {len(msg.segments)} segments")
    req = codec.decode_request(msg.tobytes())
    assert isinstance(req, codec.InferRequest)
    print("server sees:", req.input_names, req.inputs[0].shape, req.config)
    resp = codec.decode_infer_response(codec.encode_infer_response([req.inputs[0] * 2]).tobytes())
    print("result:\n", resp.outputs[0])


if __name__ == "__main__":
    main()
