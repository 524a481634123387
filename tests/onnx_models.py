"""Real ONNX models for the tests, built here: nothing is downloaded."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp(
    n_features: int,
    hidden: int,
    n_classes: int,
    *,
    seed: int = 0,
    batch: int | str = "n",
    dtype: int = TensorProto.FLOAT,
) -> bytes:
    """A two-layer perceptron x -> relu(x W1 + b1) -> logits, with onnx.helper.

    Outputs "logits" (n, n_classes) and "hidden" (n, hidden).
    """
    rng = np.random.default_rng(seed)
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    w1 = (rng.normal(size=(n_features, hidden)) / np.sqrt(n_features)).astype(np_dtype)
    w2 = (rng.normal(size=(hidden, n_classes)) / np.sqrt(hidden)).astype(np_dtype)
    b1 = rng.normal(size=hidden).astype(np_dtype) * 0.1
    b2 = rng.normal(size=n_classes).astype(np_dtype) * 0.1
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", dtype, [batch, n_features])],
        [
            helper.make_tensor_value_info("logits", dtype, [batch, n_classes]),
            helper.make_tensor_value_info("hidden", dtype, [batch, hidden]),
        ],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    return checked_model(graph)


def checked_model(graph: onnx.GraphProto) -> bytes:
    """``graph`` as a model of the default opset 17 (IR 8, which this
    onnxruntime reads), checked by the ONNX checker, serialized."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def external_data_model() -> bytes:
    """A model whose weight lives in an external file "weights.bin"."""
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3, 2])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", "24")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def custom_domain_model(domain: str = "com.example.custom") -> bytes:
    """A model with one node from an operator domain no runtime registers."""
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain=domain)],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
    )
    return model.SerializeToString()


def sklearn_classifier(zipmap: bool, *, double: bool = False, seed: int = 0):
    """A logistic regression on 3 string classes, converted with skl2onnx.

    Returns (model bytes, X of shape (120, 6) float32, fitted classifier).
    """
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    noisy = X[:, :3] + rng.normal(size=(120, 3))
    y = np.array(["owl", "cat", "emu"])[np.argmax(noisy, axis=1)]
    classifier = LogisticRegression(max_iter=500).fit(X, y)
    sample = X[:1].astype(np.float64 if double else np.float32)
    options = {id(classifier): {"zipmap": zipmap}}
    model = to_onnx(classifier, sample, options=options, target_opset=17)
    return model.SerializeToString(), X, classifier


def torch_network(
    *, fixed_batch: int | None = None, dropout: bool = False, seed: int = 0
) -> bytes:
    """A small PyTorch network exported to ONNX: 6 -> 16 (relu) -> 4.

    Outputs "logits" and "hidden" (the 16 activations). ``fixed_batch``
    exports a fixed batch axis; ``dropout`` keeps a Dropout(0.5) before the
    last layer in training mode.
    """
    import torch

    torch.manual_seed(seed)

    class Network(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = torch.nn.Linear(6, 16)
            self.drop = torch.nn.Dropout(0.5)
            self.last = torch.nn.Linear(16, 4)

        def forward(self, x):
            hidden = torch.relu(self.first(x))
            return self.last(self.drop(hidden)), hidden

    network = Network()
    example = torch.zeros(fixed_batch or 2, 6)
    buffer = io.BytesIO()
    axes = {} if fixed_batch else {n: {0: "n"} for n in ("x", "logits", "hidden")}
    mode = torch.onnx.TrainingMode.TRAINING if dropout else torch.onnx.TrainingMode.EVAL
    if not dropout:
        network.eval()
    with warnings.catch_warnings():
        # torch 2.13 calls the TorchScript exporter and its training
        # option deprecated; both still export what the tests need.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network, (example,), buffer, input_names=["x"],
            output_names=["logits", "hidden"], dynamic_axes=axes, dynamo=False,
            training=mode, do_constant_folding=not dropout, opset_version=17,
        )
    return buffer.getvalue()


def run_in_process(model: bytes, x: np.ndarray, outputs=None) -> list:
    """Run ``model`` on all of ``x`` at once with onnxruntime, in this process."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(outputs, {name: x})
