"""Model serving: the V2 model server and the traffic router.

The model server (``mlform serve``) answers the Open Inference Protocol (KServe V2) for one
registered model version:

* :mod:`mlform.serving.protocol`: V2 JSON requests to input matrices and outputs to
  responses (pure, no I/O);
* :mod:`mlform.serving.loaded_model`: a registry reference to a loaded predictor;
* :mod:`mlform.serving.metrics`: its Prometheus metrics (``GET /metrics``);
* :mod:`mlform.serving.prediction_log`: the buffered JSON-lines log of its predictions;
* :mod:`mlform.serving.server`: the HTTP server (the V2 endpoints, labels, metrics).
* :mod:`mlform.serving.workers`: its listening socket, worker processes and graceful shutdown.

The traffic router that splits requests between model versions during a rollout lives in
:mod:`mlform.serving.router` and :mod:`mlform.serving.routes`.
"""
