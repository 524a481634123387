"""ONNX models in, predictions out: the runner behind ``RankRequest.inference``.

``checks`` refuses unsafe models before onnxruntime sees them, ``graph``
reads and rewrites a model's graph, ``cache`` holds loaded models by their
SHA-256, ``runner`` runs one model in chunks, and ``inference`` turns a
request's models into the predictions and embeddings the edge checks.
"""
