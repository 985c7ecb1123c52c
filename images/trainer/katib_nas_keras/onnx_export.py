"""The Keras model as an ONNX graph, written layer by layer from its weights with the onnx package.

tf2onnx 1.17 (the usual converter) converts these Keras 3 models with ReLU, but turns Keras's GELU
into an `Erfc` node, which is no ONNX operator, so onnxruntime refuses the model; it also takes about
3 s per export. The trainer builds only a few layer types, each a few ONNX operators. The graph takes
(batch, C, H, W) float32 and returns logits, like the PyTorch trainer's export, so the server loads
either unchanged. The caller checks the result against
TensorFlow's own outputs before the model is published."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .model import Standardize

OPSET = 17
# The newest IR version onnxruntime 1.31 reads; onnx 1.23 would otherwise write a newer one.
IR_VERSION = 10


class Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _activation(graph: Graph, x: str, name: str) -> str:
    if name == "relu":
        return graph.op("Relu", [x])
    if name == "tanh":
        return graph.op("Tanh", [x])
    if name == "silu":
        return graph.op("Mul", [x, graph.op("Sigmoid", [x])])
    if name == "gelu":  # exact GELU, as keras.activations.gelu and torch.nn.GELU: x/2 * (1 + erf(x/sqrt 2))
        erf = graph.op("Erf", [graph.op("Mul", [x, graph.const("inv_sqrt2", np.array(1 / math.sqrt(2)))])])
        one_plus = graph.op("Add", [erf, graph.const("one", np.array(1.0))])
        return graph.op("Mul", [graph.op("Mul", [x, graph.const("half", np.array(0.5))]), one_plus])
    if name == "linear":
        return x
    raise ValueError(f"no ONNX mapping for activation {name!r}")


def to_onnx(model: keras.Model) -> onnx.ModelProto:
    graph = Graph()
    x = "input"
    channels_last = False  # Keras's layout after Permute; the ONNX graph itself stays (N, C, H, W)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            continue
        if isinstance(layer, Standardize):
            x = graph.op("Mul", [x, graph.const("scale", layer.scale.numpy())])
            x = graph.op("Add", [x, graph.const("shift", layer.shift.numpy())])
        elif isinstance(layer, keras.layers.Permute):
            if tuple(layer.dims) != (2, 3, 1):
                raise ValueError(f"no ONNX mapping for Permute{layer.dims}")
            channels_last = True
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = (w.numpy() for w in layer.weights)
            k = kernel.shape[0]
            x = graph.op(
                "Conv",
                [x, graph.const("conv_w", kernel.transpose(3, 2, 0, 1)), graph.const("conv_b", bias)],
                kernel_shape=[k, kernel.shape[1]],
                pads=[k // 2, kernel.shape[1] // 2, k // 2, kernel.shape[1] // 2],
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = (w.numpy() for w in layer.weights)
            x = graph.op(
                "BatchNormalization",
                [x, *(graph.const(n, v) for n, v in (("bn_g", gamma), ("bn_b", beta), ("bn_m", mean), ("bn_v", var)))],
                epsilon=float(layer.epsilon),
            )
        elif isinstance(layer, keras.layers.Activation):
            x = _activation(graph, x, keras.activations.serialize(layer.activation))
        elif isinstance(layer, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D):
            op = "MaxPool" if isinstance(layer, keras.layers.MaxPooling2D) else "AveragePool"
            x = graph.op(op, [x], kernel_shape=list(layer.pool_size), strides=list(layer.strides))
        elif isinstance(layer, keras.layers.Flatten):
            if channels_last:  # Keras flattens (H, W, C): bring the ONNX (C, H, W) into that order first
                x = graph.op("Transpose", [x], perm=[0, 2, 3, 1])
            x = graph.op("Flatten", [x], axis=1)
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = (w.numpy() for w in layer.weights)
            x = graph.op("Gemm", [x, graph.const("dense_w", kernel), graph.const("dense_b", bias)])
            x = _activation(graph, x, keras.activations.serialize(layer.activation))
        else:
            raise ValueError(f"no ONNX mapping for the layer {type(layer).__name__}")
    graph.nodes.append(helper.make_node("Identity", [x], ["logits"]))
    c, h, w = model.input_shape[1:]
    classes = model.output_shape[-1]
    onnx_graph = helper.make_graph(
        graph.nodes,
        "katib_nas_keras",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        graph.initializers,
    )
    proto = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="katib-nas")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: keras.Model, sample: np.ndarray, path: Path) -> float:
    """Write the ONNX model to `path` and return the largest difference between onnxruntime's and
    TensorFlow's logits on `sample`."""
    import onnxruntime as ort

    onnx.save_model(to_onnx(model), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": sample.astype(np.float32)})[0]
    keras_logits = np.asarray(model(sample, training=False))
    return float(np.abs(onnx_logits - keras_logits).max())
