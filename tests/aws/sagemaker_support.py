"""Helpers for the SageMaker tests: a config on moto, and a local KMeans inference server.

The server stands in for the model container behind a SageMaker endpoint only (moto does not run
models): it speaks SageMaker's documented KMeans JSON inference format, answering with the
nearest of the centres it was given, and can answer ThrottlingException first.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

ROLE = "arn:aws:iam::123456789012:role/segmentation-sagemaker"
BUCKET = "sc-staging"


class KMeansEndpoint:
    """``POST /endpoints/<name>/invocations`` -> ``{"predictions": [...]}``."""

    def __init__(self, centres: np.ndarray, throttle_first: int = 0) -> None:
        self.centres = np.asarray(centres, dtype=float)
        self.throttle_left = throttle_first
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.lock:
                    owner.requests.append(
                        {
                            "path": self.path,
                            "bytes": len(body),
                            "type": self.headers["Content-Type"],
                        }
                    )
                    throttle = owner.throttle_left > 0
                    owner.throttle_left -= 1 if throttle else 0
                if throttle:
                    payload = json.dumps({"message": "Rate exceeded"}).encode()
                    self.send_response(400)
                    self.send_header("x-amzn-ErrorType", "ThrottlingException:")
                else:
                    x = np.array([r["features"] for r in json.loads(body)["instances"]])
                    d = np.linalg.norm(x[:, None, :] - owner.centres[None, :, :], axis=2)
                    preds = [
                        {"closest_cluster": float(i), "distance_to_cluster": float(row[i])}
                        for row, i in zip(d, d.argmin(axis=1), strict=True)
                    ]
                    payload = json.dumps({"predictions": preds}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KMeansEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
