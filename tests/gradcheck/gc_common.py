"""gc_common.py - helpers shared by the gradient-check case files (tests/gradcheck/cases_*.py)."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.RandomState(1234)


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def model(op, inputs, attrs=None, opset=13, n_outputs=1, domain="", extra_nodes=()):
    """One node `op` whose inputs are initializers (name, array) or None (omitted)."""
    inits, names = [], []
    for i, arr in enumerate(inputs):
        if arr is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        inits.append(numpy_helper.from_array(arr, name))
    outs = [f"out{k}" for k in range(n_outputs)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", domain=domain, **(attrs or {}))
    graph = helper.make_graph([node, *extra_nodes], "gradcheck", [],
                              [helper.make_tensor_value_info(outs[0], TensorProto.FLOAT, None)], inits)
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports)


