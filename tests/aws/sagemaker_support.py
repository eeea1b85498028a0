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


def kmeans_answer(centres: np.ndarray):
    """SageMaker KMeans: nearest centre and the distance to it."""

    def answer(x: np.ndarray) -> dict:
        d = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=2)
        return {
            "predictions": [
                {"closest_cluster": float(i), "distance_to_cluster": float(row[i])}
                for row, i in zip(d, d.argmin(axis=1), strict=True)
            ]
        }

    return answer


def pca_answer(components: np.ndarray):
    """SageMaker PCA: the projection on the given components (d x k)."""

    def answer(x: np.ndarray) -> dict:
        return {"projections": [{"projection": [float(v) for v in row]} for row in x @ components]}

    return answer


class KMeansEndpoint:
    """``POST /endpoints/<name>/invocations`` -> SageMaker's JSON answer for KMeans (or PCA)."""

    def __init__(self, centres: np.ndarray, throttle_first: int = 0, answer=None) -> None:
        self.centres = np.asarray(centres, dtype=float)
        self.answer = answer or kmeans_answer(self.centres)
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
                    payload = json.dumps(owner.answer(x)).encode()
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
