#!/usr/bin/python3
"""make_corpus.py OUTDIR - build the malformed / hostile ONNX input corpus for onnx-tl.

Writes OUTDIR/cases.json (one entry per case: the model path, the expected exit status and the
regexes the single stderr line must match) and the case files themselves: truncated and random
files, wrong wire types, lying length prefixes, bad tensors, hostile external data (traversal,
absolute paths, symlinks, FIFOs), broken graphs, deep nesting and very large graphs. Generated at
test time (symlinks, FIFOs, external files); deterministic. Run with /usr/bin/python3 (needs onnx).

Manifest entry keys (read by run_malformed.py):
  name   case name             path   model path relative to OUTDIR
  exit   expected exit status  about  what the case is
  must   regexes (re.I) that must all be found in the stderr line once the model's file name
         and path are removed from it (so file names never satisfy a keyword)
  forbid regexes that must not be found in the raw stderr
  json   (exit 0 cases) key -> value expected in `info --json`
  ext    1 when the model uses external data (the runner re-loads exports with their data)
  compare  0: do not compare the export with python3-onnx (names it cannot decode)
  checker  0: the export (like the input) is not for onnx.checker (opsets, attributes)
  export_contains  hex bytes the exported file must contain
  cmds   per-command expectations for `run` and `grad` ({"run": {"exit": .., "must": [..]}}); without
         an entry, error cases expect the same exit 1 and regexes from run and grad (the model is
         loaded first) and valid cases are not run
  inputs graph inputs for run/grad: name -> [numpy dtype, shape] (default X float32 [1,1,4,4]);
         grad's target is int64 [1] (class 0, --loss ce)
"""
import json
import os
import random
import re
import shutil
import struct
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MARKER = "cases.json"

# ------------------------------------------------------------------ keyword regexes
# Loose about wording, strict about content: every error case also names its tensor/node.
PARSE = (r"truncat|pars|invalid|malformed|corrupt|decod|unexpected|end of|wire|protobuf|"
         r"not an? (valid )?onnx|premature|incomplete|overflow|length|too (long|large|big)|exceed")
PRODUCED = (r"produc|defin|unknown|undefined|not found|missing|no such|unresolved|dangling|"
            r"unbound|does not exist|not (an? )?(input|initializer|output)")
CYCLE = r"cycl|circular|loop"
DUP = (r"duplicat|twice|more than once|already|multiple|redefin|again|conflict|unique|ssa|"
       r"(two|2|both|several) (nodes|producers|times)")
SIZE = (r"size|mismatch|expected|bytes|elements|length|count|inconsistent|match|declare|hold|"
        r"too (short|long|few|many|large|small)|short")
ABSURD = (r"elements|too (large|big|many)|huge|overflow|exceed|limit|size|mismatch|expected|"
          r"bytes|absurd|unreasonabl|numel")
NEGATIVE = r"negative|invalid|dim|< ?0|-\d"
DEPTH = r"depth|deep|nest|recurs|limit|too many levels"
REFUSE = (r"outside|escap|travers|refus|reject|not allowed|forbid|unsafe|denied|parent|illegal|"
          r"invalid|may not|must not|cannot contain|disallow|not permitted")
ABSOLUTE = r"absolute|" + REFUSE
LINK = r"link|" + REFUSE
NOFILE = (r"no such|not found|missing|cannot|can't|could not|couldn't|unable|fail|open|exist|"
          r"read")
RANGE = (r"past|beyond|end|offset|exceed|short|size|out of range|bound|truncat|larger|overflow|"
         r"outside|length|mismatch|expected")
DTYPE = r"type"
GRAPH = r"graph"
NOTFILE = (r"regular|not a file|director|fifo|pipe|special|device|invalid|cannot|can't|"
           r"could not|unable|fail|read|refus|not allowed")


def esc(s):
    return re.escape(s)


# ------------------------------------------------------------------ raw protobuf writer
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wt):
    return varint((field << 3) | wt)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def f_fixed32(field, b4):
    return key(field, 5) + b4


def nest(wrappers, core):
    """Serialize a chain of nested messages without O(n^2) copying.

    wrappers: list of (pre, field, post) from outermost to innermost; each level is
    pre + field(len-delimited: next level) + post; core is the innermost payload."""
    sizes = [0] * (len(wrappers) + 1)
    sizes[-1] = len(core)
    for i in range(len(wrappers) - 1, -1, -1):
        pre, field, post = wrappers[i]
        inner = sizes[i + 1]
        sizes[i] = len(pre) + len(key(field, 2)) + len(varint(inner)) + inner + len(post)
    parts = []
    for i, (pre, field, post) in enumerate(wrappers):
        parts.append(pre)
        parts.append(key(field, 2))
        parts.append(varint(sizes[i + 1]))
    parts.append(core)
    for pre, field, post in reversed(wrappers):
        parts.append(post)
    return b"".join(parts)


def read_fields(buf):
    """Top-level fields of a message: list of (field, wire_type, tag_start, payload_start, end)."""
    out = []
    i = 0
    while i < len(buf):
        start = i
        k, i = _rv(buf, i)
        field, wt = k >> 3, k & 7
        if wt == 0:
            _, i = _rv(buf, i)
            out.append((field, wt, start, start, i))
        elif wt == 2:
            n, i = _rv(buf, i)
            out.append((field, wt, start, i, i + n))
            i += n
        elif wt == 5:
            out.append((field, wt, start, i, i + 4))
            i += 4
        elif wt == 1:
            out.append((field, wt, start, i, i + 8))
            i += 8
        else:
            raise ValueError("unsupported wire type")
    return out


def _rv(buf, i):
    n = s = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << s
        s += 7
        if not b & 0x80:
            return n, i


FLOAT_TYPE = f_bytes(1, f_varint(1, TensorProto.FLOAT))  # TypeProto{tensor_type{elem_type}}
# TypeProto{tensor_type{elem_type: FLOAT, shape{dim{dim_value: 1}}}}
FLOAT1_TYPE = f_bytes(1, f_varint(1, TensorProto.FLOAT) + f_bytes(2, f_bytes(1, f_varint(1, 1))))


def vi_raw(name, type_bytes=None):
    return f_bytes(1, name) + f_bytes(2, FLOAT1_TYPE if type_bytes is None else type_bytes)


def opset_raw(domain, version):
    return f_bytes(1, domain) + f_varint(2, version)


def model_raw(graph_bytes, opsets=(("", 13),), graph_field=7, extra=b""):
    b = f_varint(1, 8) + f_bytes(2, "onnx-tl-malformed")
    if graph_bytes is not None:
        b += f_bytes(graph_field, graph_bytes)
    for d, v in opsets:
        b += f_bytes(8, opset_raw(d, v))
    return b + extra


# ------------------------------------------------------------------ the base model
def base_parts():
    """Conv -> Relu -> Flatten -> Gemm, 1x1x4x4 -> 1x3, 47 parameters."""
    rng = np.random.default_rng(20240501)
    inits = {
        "conv.weight": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal((2,)).astype(np.float32),
        "fc.weight": rng.standard_normal((3, 8)).astype(np.float32),
        "fc.bias": rng.standard_normal((3,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["X", "conv.weight", "conv.bias"], ["conv_out"], name="conv1",
                         pads=[0, 0, 0, 0], strides=[1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu1"),
        helper.make_node("Flatten", ["relu_out"], ["flat"], name="flatten1", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["Y"], name="fc", transB=1),
    ]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 4, 4])]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])]
    tensors = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    return nodes, tensors, inputs, outputs, inits


def make_model(nodes, inits, inputs, outputs, opsets=(("", 13),), name="base"):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                          producer_name="onnx-tl-malformed")
    m.ir_version = 8
    return m


def base_model():
    nodes, tensors, inputs, outputs, _ = base_parts()
    return make_model(nodes, tensors, inputs, outputs)


def graph_raw(nodes=(), inits=(), inputs=(), outputs=(), name="g"):
    """GraphProto bytes from parts given as protos or raw bytes."""
    def ser(x):
        return x if isinstance(x, (bytes, bytearray)) else x.SerializeToString()
    b = b"".join(f_bytes(1, ser(n)) for n in nodes)
    b += f_bytes(2, name)
    b += b"".join(f_bytes(5, ser(t)) for t in inits)
    b += b"".join(f_bytes(11, ser(v)) for v in inputs)
    b += b"".join(f_bytes(12, ser(v)) for v in outputs)
    return b


def python_rejects(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            onnx.ModelProto().ParseFromString(data)
        except Exception:
            return True
    return False


# ------------------------------------------------------------------ corpus
class Corpus:
    def __init__(self, out):
        self.out = out
        self.cases = []
        self.names = set()

    def path(self, rel):
        p = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, rel, data):
        with open(self.path(rel), "wb") as f:
            f.write(data)

    def add(self, name, rel, must, about, exit=1, forbid=(), **extra):
        assert name not in self.names, name
        self.names.add(name)
        c = {"name": name, "path": rel, "exit": exit, "must": list(must),
             "forbid": list(forbid), "about": about}
        c.update(extra)
        self.cases.append(c)

    def bytes_case(self, name, data, must, about, **kw):
        rel = name + ".onnx"
        self.write(rel, data)
        self.add(name, rel, must, about, **kw)

    def model_case(self, name, model, must, about, **kw):
        self.bytes_case(name, model.SerializeToString(), must, about, **kw)


def build(out):
    C = Corpus(out)
    base = base_model()
    onnx.checker.check_model(base)
    base_bytes = base.SerializeToString()
    nodes, tensors, inputs, outputs, arrays = base_parts()

    # ---------------------------------------------------------- valid sanity cases
    C.bytes_case("valid_base", base_bytes, [], "valid Conv+Relu+Flatten+Gemm model", exit=0,
                 json={"params_total": 47})

    # float_data written unpacked and dims written packed: both legal protobuf encodings.
    bias = arrays["fc.bias"]
    t_unpacked = (f_bytes(1, varint(3)) +
                  f_varint(2, TensorProto.FLOAT) +
                  b"".join(f_fixed32(4, struct.pack("<f", float(v))) for v in bias) +
                  f_bytes(8, "fc.bias"))
    g = graph_raw(nodes, [t for t in tensors if t.name != "fc.bias"] + [t_unpacked], inputs,
                  outputs)
    data = model_raw(g)
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m)
    last = m.graph.initializer[-1]
    assert list(last.dims) == [3] and len(last.float_data) == 3
    C.bytes_case("valid_packed_dims_unpacked_floats", data, [],
                 "legal but unusual encodings: packed dims, unpacked float_data", exit=0,
                 json={"params_total": 47})

    # Names with quotes, backslashes, control characters and non-ASCII: info --json must stay JSON.
    weird = "we\"ird\\name\t\u00e9\u4e2d"
    wn = [helper.make_node("Relu", ["X"], [weird], name="n\"ode\\1"),
          helper.make_node("Relu", [weird], ["Y"], name="line\nbreak")]
    wm = make_model(wn, [], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])])
    onnx.checker.check_model(wm)
    C.model_case("valid_weird_names", wm, [], "names needing JSON escapes", exit=0,
                 json={"params_total": 0})

    # Nested If, 3 levels: nesting itself is fine.
    C.bytes_case("valid_nested_if_3", deep_if(3), [], "If inside If inside If", exit=0)
    onnx.checker.check_model(onnx.load_from_string(deep_if(3)))
    C.bytes_case("valid_nested_if_10", deep_if(10), [],
                 "If nested 10 deep (about 40 nested messages): a nesting limit must allow it",
                 exit=0)

    # External data inside the model directory.
    ext_valid = ext_model("w.bin")
    C.write("ext_valid/w.bin", arrays["conv.weight"].tobytes())
    C.write("ext_valid/ext_valid.onnx", ext_valid.SerializeToString())
    onnx.checker.check_model(os.path.join(out, "ext_valid/ext_valid.onnx"))
    C.add("ext_valid", "ext_valid/ext_valid.onnx", [], "external data next to the model",
          exit=0, ext=1, json={"params_total": 47})

    # ---------------------------------------------------------- file level
    C.add("missing_model_file", "does_not_exist.onnx", [NOFILE], "model file does not exist")
    os.makedirs(os.path.join(out, "a_directory.onnx"))
    C.add("model_is_directory", "a_directory.onnx", [NOTFILE], "model path is a directory")
    os.symlink("/dev/zero", os.path.join(out, "dev_zero.onnx"))
    C.add("model_is_dev_zero", "dev_zero.onnx", [], "model is a symlink to /dev/zero (endless)")
    C.bytes_case("empty_file", b"", [r"empty|graph|no model|pars|truncat|invalid|zero|size"],
                 "0-byte file")

    # ---------------------------------------------------------- truncation
    fields = read_fields(base_bytes)
    gf = [f for f in fields if f[0] == 7][0]
    _, _, g_tag, g_pay, g_end = gf
    cuts = {
        "trunc_1": 1,
        "trunc_graph_tag": g_tag + 1,
        "trunc_graph_start": g_pay + 3,
        "trunc_graph_mid": (g_pay + g_end) // 2,
        "trunc_graph_end": g_end - 1,
        "trunc_last_byte": len(base_bytes) - 1,
    }
    # inside conv.weight's raw_data
    raw_at = base_bytes.find(arrays["conv.weight"].tobytes())
    assert raw_at > 0
    cuts["trunc_in_raw_data"] = raw_at + 10
    for name, n in cuts.items():
        data = base_bytes[:n]
        assert python_rejects(data), name
        C.bytes_case(name, data, [PARSE], "base model truncated to %d of %d bytes" %
                     (n, len(base_bytes)))

    # ---------------------------------------------------------- random bytes
    for size in (1, 2, 16, 100, 1000, 65536):
        rng = random.Random(1000 + size)
        while True:
            data = bytes(rng.getrandbits(8) for _ in range(size))
            if python_rejects(data):
                break
        C.bytes_case("random_%d" % size, data, [PARSE], "%d seeded random bytes" % size)

    # ---------------------------------------------------------- wrong wire types / raw breakage
    # graph (field 7, a message) written as a varint: no graph can come out of this.
    C.bytes_case("wire_graph_as_varint",
                 f_varint(1, 8) + f_varint(7, 5) + f_bytes(8, opset_raw("", 13)),
                 [PARSE + "|" + GRAPH], "ModelProto.graph encoded with wire type 0")
    # NodeProto.op_type (string) written as a varint.
    relu_raw = (f_bytes(1, "conv_out") + f_bytes(2, "relu_out") + f_bytes(3, "relu1") +
                f_varint(4, 7))
    g = graph_raw([nodes[0], relu_raw] + nodes[2:], tensors, inputs, outputs)
    C.bytes_case("wire_op_type_as_varint", model_raw(g),
                 [PARSE + r"|op.?type|empty|missing"],
                 "NodeProto.op_type of relu1 encoded with wire type 0")
    # TensorProto.dims written as fixed32.
    t = (f_fixed32(1, struct.pack("<I", 3)) + f_varint(2, TensorProto.FLOAT) +
         f_bytes(8, "fc.bias") + f_bytes(9, bias.tobytes()))
    g = graph_raw(nodes, [x for x in tensors if x.name != "fc.bias"] + [t], inputs, outputs)
    C.bytes_case("wire_dims_as_fixed32", model_raw(g), [PARSE + "|" + SIZE + r"|dims|rank"],
                 "TensorProto.dims of fc.bias encoded with wire type 5")
    # TensorProto.raw_data written as a varint.
    t = (f_varint(1, 3) + f_varint(2, TensorProto.FLOAT) + f_bytes(8, "fc.bias") +
         f_varint(9, 12))
    g = graph_raw(nodes, [x for x in tensors if x.name != "fc.bias"] + [t], inputs, outputs)
    C.bytes_case("wire_raw_data_as_varint", model_raw(g), [PARSE + "|" + SIZE + r"|data"],
                 "TensorProto.raw_data of fc.bias encoded with wire type 0")
    # Wire types no parser accepts.
    for name, data, about in [
        ("wire_type_7", base_bytes + key(30, 7) + b"\x00" * 8, "a field with wire type 7"),
        ("wire_type_6", key(30, 6) + base_bytes, "a field with wire type 6"),
        ("wire_start_group", base_bytes + key(31, 3) + f_varint(1, 1), "unterminated group"),
        ("wire_field_0", b"\x02\x00" + base_bytes, "field number 0"),
        ("varint_11_bytes", b"\x08" + b"\xff" * 10 + b"\x01" + base_bytes[2:],
         "ir_version as an 11-byte varint"),
    ]:
        assert python_rejects(data), name
        C.bytes_case(name, data, [PARSE], about)
    # Python's parser stops at an unmatched end-group tag and keeps what it read (nothing here).
    C.bytes_case("wire_end_group", key(31, 4) + base_bytes, [PARSE + "|" + GRAPH],
                 "an unmatched end-group tag before the model")

    # ---------------------------------------------------------- lying length prefixes
    gbytes = base_bytes[g_pay:g_end]
    head = base_bytes[:g_tag]
    tail = base_bytes[g_end:]
    for name, n, about in [
        ("len_graph_2_40", 1 << 40, "graph length prefix 2^40"),
        ("len_graph_2_31", (1 << 31) - 1, "graph length prefix 2^31-1"),
        ("len_graph_u64_max", (1 << 64) - 1, "graph length prefix 2^64-1 (10-byte varint)"),
        ("len_graph_2_32_wrap", (1 << 32) + len(gbytes),
         "graph length 2^32+n: a 32-bit length would read exactly the graph"),
    ]:
        data = head + key(7, 2) + varint(n) + gbytes + tail
        assert python_rejects(data), name
        C.bytes_case(name, data, [PARSE], about)
    # Packed float_data claiming ~2 GiB inside an initializer.
    t = (f_varint(1, 3) + f_varint(2, TensorProto.FLOAT) + f_bytes(8, "fc.bias") +
         key(4, 2) + varint(0x7FFFFFF0) + bias.tobytes())
    g = graph_raw(nodes, [x for x in tensors if x.name != "fc.bias"], inputs, outputs)
    g += f_bytes(5, t)  # the lie is inside a correctly delimited initializer
    data = model_raw(g)
    assert python_rejects(data)
    C.bytes_case("len_packed_floats_2g", data, [PARSE],
                 "packed float_data of fc.bias with a 2 GiB length inside a 32-byte message")
    # A node input string whose length runs past the end of the file (all lengths agree).
    l_n = 1 + 3 + (1 << 20)
    l_g = 1 + len(varint(l_n)) + l_n
    data = (f_varint(1, 8) + key(7, 2) + varint(l_g) + key(1, 2) + varint(l_n) + key(1, 2) +
            varint(1 << 20) + b"abc")
    assert python_rejects(data)
    C.bytes_case("len_string_past_eof", data, [PARSE], "string length prefix past end of file")

    # ---------------------------------------------------------- huge repeated fields
    t = (b"".join(f_varint(1, 2) for _ in range(1000000)) + f_varint(2, TensorProto.FLOAT) +
         f_bytes(8, "many_dims_t"))
    g = graph_raw(nodes, tensors, inputs, outputs) + f_bytes(5, t)
    C.bytes_case("repeated_dims_1e6", model_raw(g), [ABSURD + r"|rank|dims", esc("many_dims_t")],
                 "initializer with 1,000,000 dims of 2 (2^1000000 elements)")
    t = (f_varint(1, 3) + f_varint(2, TensorProto.FLOAT) + f_bytes(8, "fc.bias") +
         f_bytes(4, b"\x00" * 4000000))
    g = graph_raw(nodes, [x for x in tensors if x.name != "fc.bias"] + [t], inputs, outputs)
    C.bytes_case("repeated_floats_1e6", model_raw(g), [SIZE, esc("fc.bias")],
                 "fc.bias dims [3] with 1,000,000 float_data values")

    # ---------------------------------------------------------- tensor data mismatches
    def with_init(t, drop=None):
        ts = [x for x in tensors if x.name != drop] + [t]
        return make_model(nodes, ts, inputs, outputs)

    t = numpy_helper.from_array(arrays["fc.weight"], "fc.weight")
    t.raw_data = t.raw_data[:40]
    C.model_case("raw_data_short", with_init(t, "fc.weight"), [SIZE, esc("fc.weight")],
                 "fc.weight [3,8] float with 40 bytes of raw_data (needs 96)")
    t = numpy_helper.from_array(arrays["fc.weight"], "fc.weight")
    t.raw_data = t.raw_data + b"\0" * 8
    C.model_case("raw_data_long", with_init(t, "fc.weight"), [SIZE, esc("fc.weight")],
                 "fc.weight [3,8] float with 104 bytes of raw_data (needs 96)")
    t = TensorProto(name="fc.bias", data_type=TensorProto.FLOAT, dims=[3],
                    float_data=[1.0, 2.0, 3.0, 4.0, 5.0])
    C.model_case("float_data_count", with_init(t, "fc.bias"), [SIZE, esc("fc.bias")],
                 "fc.bias dims [3] with 5 float_data values")
    t = TensorProto(name="fc.bias", data_type=TensorProto.FLOAT, dims=[3], float_data=[1.0])
    C.model_case("float_data_few", with_init(t, "fc.bias"), [SIZE, esc("fc.bias")],
                 "fc.bias dims [3] with 1 float_data value")
    t = TensorProto(name="shape_t", data_type=TensorProto.INT64, dims=[2], int64_data=[1, 2, 3])
    C.model_case("int64_data_count", with_init(t), [SIZE, esc("shape_t")],
                 "int64 initializer dims [2] with 3 int64_data values")
    t = TensorProto(name="labels_t", data_type=TensorProto.STRING, dims=[3],
                    string_data=[b"a", b"b"])
    C.model_case("string_data_count", with_init(t), [SIZE, esc("labels_t")],
                 "string initializer dims [3] with 2 strings")
    t = TensorProto(name="fc.bias", data_type=TensorProto.FLOAT, dims=[3])
    C.model_case("no_data", with_init(t, "fc.bias"), [SIZE, esc("fc.bias")],
                 "fc.bias dims [3] without any data field")
    t = TensorProto(name="odd_t", data_type=99, dims=[1], raw_data=b"\0" * 4)
    C.model_case("dtype_99", with_init(t), [DTYPE, esc("odd_t")], "initializer data_type 99")
    t = TensorProto(name="odd_t", data_type=0, dims=[1], raw_data=b"\0" * 4)
    C.model_case("dtype_undefined", with_init(t), [DTYPE, esc("odd_t")],
                 "initializer data_type 0 (UNDEFINED)")

    # ---------------------------------------------------------- absurd and negative dims
    for name, dims, raw, about in [
        ("absurd_dims_2_40", [1 << 20, 1 << 20], None, "dims [2^20, 2^20] (2^40 floats), no data"),
        ("absurd_dims_2_40_raw", [1 << 20, 1 << 20], b"\0" * 16,
         "dims [2^20, 2^20] with 16 bytes of raw_data"),
        ("dims_overflow_int64", [1 << 62, 8], None, "dims [2^62, 8]: product overflows int64"),
        ("dims_product_wraps_0", [1 << 33, 1 << 31], None,
         "dims [2^33, 2^31]: product is 2^64, 0 after wrap-around"),
        ("nbytes_wraps_0", [1 << 62], None, "dims [2^62] float: 2^64 bytes, 0 after wrap-around"),
        ("dims_int64_max", [(1 << 63) - 1], None, "dims [2^63-1]"),
    ]:
        t = TensorProto(name="giant_t", data_type=TensorProto.FLOAT, dims=dims)
        if raw is not None:
            t.raw_data = raw
        C.model_case(name, with_init(t), [ABSURD, esc("giant_t")], about)
    t = TensorProto(name="fc.bias", data_type=TensorProto.FLOAT, dims=[-3],
                    raw_data=bias.tobytes())
    C.model_case("negative_dim", with_init(t, "fc.bias"), [NEGATIVE, esc("fc.bias")],
                 "fc.bias dims [-3]")
    t = TensorProto(name="fc.bias", data_type=TensorProto.FLOAT, dims=[-1, -3],
                    raw_data=bias.tobytes())
    C.model_case("negative_dims_pair", with_init(t, "fc.bias"), [NEGATIVE, esc("fc.bias")],
                 "fc.bias dims [-1, -3]: product 3 matches the data, but dims are negative")
    # Tensor in a Constant node's attribute.
    cn = helper.make_node("Constant", [], ["big_c"], name="const_big",
                          value=TensorProto(name="big_value", data_type=TensorProto.FLOAT,
                                            dims=[1 << 20, 1 << 20]))
    m = make_model(nodes + [cn], tensors, inputs, outputs)
    C.model_case("attr_tensor_absurd", m, [ABSURD, r"const_big|big_value"],
                 "Constant node const_big whose value has 2^40 elements and no data")

    # ---------------------------------------------------------- external data
    cw = arrays["conv.weight"].tobytes()  # 72 bytes
    C.write("x.bin", cw)
    C.write("outside/secret.bin", cw)
    os.makedirs(os.path.join(out, "outside/dir"), exist_ok=True)
    C.write("outside/dir/w.bin", cw)
    outside_abs = os.path.abspath(os.path.join(out, "outside/secret.bin"))

    def ext_case(name, location, must, about, files=None, links=None, fifo=None, dirs=None,
                 offset=None, length=None, extra=None, dims=None):
        d = name
        for rel, data in (files or {}).items():
            C.write(os.path.join(d, rel), data)
        for rel, target in (links or {}).items():
            p = C.path(os.path.join(d, rel))
            os.symlink(target, p)
        for rel in (dirs or []):
            os.makedirs(os.path.join(out, d, rel), exist_ok=True)
        if fifo:
            p = C.path(os.path.join(d, fifo))
            os.mkfifo(p)
        m = ext_model(location, offset, length, extra, dims)
        C.write(os.path.join(d, name + ".onnx"), m.SerializeToString())
        C.add(name, os.path.join(d, name + ".onnx"), must, about, ext=1)

    T = esc("conv.weight")
    ext_case("ext_dotdot", "../x.bin", [REFUSE, T], "location '../x.bin' (the file exists)")
    ext_case("ext_dotdot_inner", "sub/../../x.bin", [REFUSE, T],
             "location 'sub/../../x.bin'", dirs=["sub"])
    ext_case("ext_absolute", "/etc/passwd", [ABSOLUTE, T], "location '/etc/passwd'")
    ext_case("ext_absolute_data", outside_abs, [ABSOLUTE, T],
             "absolute location of a file with the right size")
    ext_case("ext_symlink", "data.bin", [LINK, T],
             "data.bin is a symlink to ../outside/secret.bin",
             links={"data.bin": "../outside/secret.bin"})
    ext_case("ext_symlink_abs", "data.bin", [LINK, T],
             "data.bin is a symlink to an absolute path outside", links={"data.bin": outside_abs})
    ext_case("ext_symlink_dir", "sub/w.bin", [LINK, T],
             "sub is a symlink to ../outside/dir", links={"sub": "../outside/dir"})
    ext_case("ext_missing", "absent_w.bin", [NOFILE, esc("absent_w.bin")],
             "location names a file that does not exist")
    ext_case("ext_offset_past_end", "w.bin", [RANGE, T], "offset 4096 in a 72-byte file",
             files={"w.bin": cw}, offset=4096, length=72)
    ext_case("ext_length_past_end", "w.bin", [RANGE, T], "length 4096 in a 72-byte file",
             files={"w.bin": cw}, offset=0, length=4096)
    ext_case("ext_offset_length_overflow", "w.bin", [RANGE + r"|invalid", T],
             "offset 2^63-8 + length 72 overflows", files={"w.bin": cw},
             offset=(1 << 63) - 8, length=72)
    ext_case("ext_short_file", "w.bin", [RANGE, T], "no offset/length, data file has 40 bytes",
             files={"w.bin": cw[:40]})
    ext_case("ext_length_mismatch", "w.bin", [SIZE, T],
             "length 40 for a 72-byte tensor (file has 72)", files={"w.bin": cw}, offset=0,
             length=40)
    ext_case("ext_offset_negative", "w.bin", [r"offset|invalid|negative", T], "offset '-8'",
             files={"w.bin": cw}, offset="-8", length=72)
    ext_case("ext_offset_garbage", "w.bin", [r"offset|invalid|number|pars|integer", T],
             "offset '12abc'", files={"w.bin": cw}, offset="12abc")
    ext_case("ext_no_location", None, [r"location|missing|external|invalid", T],
             "external data without a location entry", files={"w.bin": cw})
    ext_case("ext_empty_location", "", [r"location|empty|external|invalid|" + NOTFILE, T],
             "location ''")
    ext_case("ext_location_is_dir", "subdir", [NOTFILE, T], "location is a directory",
             dirs=["subdir"])
    ext_case("ext_fifo", "pipe.bin", [NOTFILE, T],
             "location is a FIFO nobody writes to (must not hang)", fifo="pipe.bin")
    ext_case("ext_absurd_dims", "w.bin", [ABSURD + "|" + RANGE, T],
             "external tensor with dims [2^20, 2^20]", files={"w.bin": cw},
             dims=[1 << 20, 1 << 20])

    # ---------------------------------------------------------- graph structure
    def with_nodes(ns, outs=outputs, ins=inputs, ts=tensors):
        return make_model(ns, ts, ins, outs)

    ghost = helper.make_node("Relu", ["phantom_t"], ["relu_out"], name="relu1")
    C.model_case("unproduced_input", with_nodes([nodes[0], ghost] + nodes[2:]),
                 [PRODUCED, esc("phantom_t"), esc("relu1")],
                 "relu1 reads 'phantom_t' which nothing produces")
    anon = helper.make_node("Relu", ["phantom_t"], ["relu_out"])
    C.model_case("unproduced_input_unnamed", with_nodes([nodes[0], anon] + nodes[2:]),
                 [PRODUCED, esc("phantom_t")], "an unnamed node reads 'phantom_t'")
    p = helper.make_node("Add", ["X", "q_out"], ["p_out"], name="node_p")
    q = helper.make_node("Relu", ["p_out"], ["q_out"], name="node_q")
    r = helper.make_node("Identity", ["p_out"], ["Y"], name="node_r")
    io4 = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3])]
    oo4 = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])]
    C.model_case("cycle_two_nodes", with_nodes([p, q, r], oo4, io4, []),
                 [CYCLE, r"node_p|node_q"], "node_p and node_q feed each other")
    s = helper.make_node("Add", ["X", "s_out"], ["s_out"], name="node_s")
    r = helper.make_node("Identity", ["s_out"], ["Y"], name="node_r")
    C.model_case("cycle_self", with_nodes([s, r], oo4, io4, []),
                 [CYCLE + "|" + PRODUCED + "|" + DUP, r"node_s"],
                 "node_s reads its own output")
    d1 = helper.make_node("Relu", ["X"], ["twin_out"], name="node_d1")
    d2 = helper.make_node("Sigmoid", ["X"], ["twin_out"], name="node_d2")
    r = helper.make_node("Identity", ["twin_out"], ["Y"], name="node_r")
    C.model_case("duplicate_output", with_nodes([d1, d2, r], oo4, io4, []),
                 [DUP + r"|produc", esc("twin_out")],
                 "node_d1 and node_d2 both produce 'twin_out'")
    relu_init = numpy_helper.from_array(np.zeros((1, 2, 2, 2), np.float32), "relu_out")
    C.model_case("output_shadows_initializer", with_nodes(nodes, ts=tensors + [relu_init]),
                 [DUP + r"|produc|initializer", esc("relu_out")],
                 "relu1 produces 'relu_out' which is also an initializer")
    ins = inputs + [helper.make_tensor_value_info("relu_out", TensorProto.FLOAT, None)]
    C.model_case("output_shadows_graph_input", with_nodes(nodes, ins=ins),
                 [DUP + r"|produc|input", esc("relu_out")],
                 "relu1 produces 'relu_out' which is also a graph input")
    outs = outputs + [helper.make_tensor_value_info("orphan_out", TensorProto.FLOAT, [1, 3])]
    C.model_case("graph_output_unproduced", with_nodes(nodes, outs),
                 [PRODUCED, esc("orphan_out")], "graph output 'orphan_out' has no producer")
    C.bytes_case("no_graph", model_raw(None), [GRAPH], "ModelProto without a graph")
    eo = helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu1")
    eo.op_type = ""
    C.model_case("empty_op_type", with_nodes([nodes[0], eo] + nodes[2:]),
                 [r"op.?type|empty|missing|op", esc("relu1")], "relu1 has an empty op_type")
    # Subgraph scoping.
    then_g = helper.make_graph([helper.make_node("Add", ["relu_out", "phantom_t"], ["t_out"],
                                                 name="inner_add")],
                               "then_g", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Identity", ["relu_out"], ["e_out"],
                                                 name="inner_id")],
                               "else_g", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    ifn = helper.make_node("If", ["cond"], ["if_out"], name="branch_if",
                           then_branch=then_g, else_branch=else_g)
    fl = helper.make_node("Flatten", ["if_out"], ["flat"], name="flatten1", axis=1)
    m = with_nodes(nodes[:2] + [ifn, fl, nodes[3]], ins=inputs + [cond])
    C.model_case("subgraph_unproduced", m, [PRODUCED, esc("phantom_t")],
                 "inside If branch_if, inner_add reads 'phantom_t' which nothing produces")
    then_ok = helper.make_graph([helper.make_node("Identity", ["relu_out"], ["inner_only"],
                                                  name="inner_id2")],
                                "then_ok", [],
                                [helper.make_tensor_value_info("inner_only", TensorProto.FLOAT,
                                                               None)])
    ifn2 = helper.make_node("If", ["cond"], ["if_out"], name="branch_if",
                            then_branch=then_ok, else_branch=else_g)
    outs = outputs + [helper.make_tensor_value_info("inner_only", TensorProto.FLOAT, [1, 2, 2, 2])]
    m = with_nodes(nodes[:2] + [ifn2, fl, nodes[3]], outs, inputs + [cond])
    C.model_case("output_only_in_subgraph", m, [PRODUCED, esc("inner_only")],
                 "graph output 'inner_only' is produced only inside a subgraph")
    t = numpy_helper.from_array(np.zeros((4,), np.float32), "sub_init")
    t.raw_data = t.raw_data[:6]
    then_bad = helper.make_graph([helper.make_node("Add", ["relu_out", "sub_init"], ["t_out"],
                                                   name="inner_add")],
                                 "then_bad", [],
                                 [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)],
                                 initializer=[t])
    ifn3 = helper.make_node("If", ["cond"], ["if_out"], name="branch_if",
                            then_branch=then_bad, else_branch=else_g)
    m = with_nodes(nodes[:2] + [ifn3, fl, nodes[3]], ins=inputs + [cond])
    C.model_case("subgraph_init_short", m, [SIZE, esc("sub_init")],
                 "initializer sub_init [4] with 6 bytes inside an If branch")
    # Hostile names in messages: one line, no terminal escapes.
    nl = helper.make_node("Relu", ["phantom_t"], ["relu_out"], name="evil\nnext line")
    C.model_case("newline_in_name", with_nodes([nodes[0], nl] + nodes[2:]),
                 [PRODUCED, esc("phantom_t"), r"evil"],
                 "node named 'evil\\nnext line' reads an unproduced input: message stays one line")
    ansi = helper.make_node("Relu", ["phantom_t"], ["relu_out"], name="\x1b[2J\x1b[31mred")
    C.model_case("escape_in_name", with_nodes([nodes[0], ansi] + nodes[2:]),
                 [PRODUCED, esc("phantom_t")],
                 "node name with ANSI escapes: they must not reach the terminal raw",
                 forbid=[r"\x1b"])

    longn = helper.make_node("Relu", ["phantom_t"], ["relu_out"], name="a" * 1000000)
    C.model_case("long_name_unproduced", with_nodes([nodes[0], longn] + nodes[2:]),
                 [PRODUCED, esc("phantom_t")],
                 "node with a 1 MB name reads an unproduced input: the line must still say what "
                 "is wrong (elide the name, not the problem)")
    # Invalid UTF-8 in a name of an otherwise valid model: kept byte for byte, JSON stays valid.
    bad_name = b"bad\xff\xfe\xc3name"
    relu_raw = (f_bytes(1, "conv_out") + f_bytes(2, "relu_out") + f_bytes(3, bad_name) +
                f_bytes(4, "Relu"))
    g = graph_raw([nodes[0], relu_raw] + nodes[2:], tensors, inputs, outputs)
    # ... and in an op type (a custom domain's op): the op histogram of info --json is valid UTF-8
    # (found by fuzz.info: tests/fuzz/found/info_json_bad_utf8_op_type.onnx)
    odd_raw = (f_bytes(1, "X") + f_bytes(2, "Y") + f_bytes(3, "odd_node") + f_bytes(4, b"Op\xd6\xff\xed\xa0\x80x") +
               f_bytes(7, "com.example"))
    g_odd = f_bytes(1, odd_raw) + f_bytes(2, "odd") + f_bytes(11, vi_raw("X")) + f_bytes(12, vi_raw("Y"))
    C.bytes_case("valid_bad_utf8_op_type", model_raw(g_odd, opsets=(("", 13), ("com.example", 1))), [],
                 "op type with invalid UTF-8 (a surrogate too): info --json must still print valid JSON",
                 exit=0, json={"params_total": 0}, compare=0)
    C.bytes_case("valid_bad_utf8_name", model_raw(g), [],
                 "node name with invalid UTF-8: info --json must still print valid JSON", exit=0,
                 json={"params_total": 47}, compare=0, export_contains=bad_name.hex())

    # ---------------------------------------------------------- deep nesting
    C.bytes_case("deep_if_5000", deep_if(5000), [DEPTH + "|" + PARSE],
                 "If nested 5000 deep (15000 nested messages): refuse, do not overflow the stack")
    C.bytes_case("deep_if_50000", deep_if(50000), [DEPTH + "|" + PARSE], "If nested 50000 deep")
    C.bytes_case("deep_type_100000", deep_type(100000), [DEPTH + "|" + PARSE],
                 "graph input whose TypeProto is a sequence nested 100000 deep")

    # ---------------------------------------------------------- size and speed
    C.bytes_case("empty_nodes_2m", model_raw(b"\x0a\x00" * 2000000 + f_bytes(2, "g")),
                 [r"op.?type|empty|missing|memory|need|limit|too (large|many)|budget|exceed"],
                 "2,000,000 empty NodeProtos in 4 MB: memory must stay bounded")
    C.bytes_case("many_nodes_100000", relu_chain(100000), [],
                 "chain of 100000 Relu nodes: valid, must be fast", exit=0)
    C.bytes_case("long_cycle_100000", relu_chain(100000, cycle=True),
                 [CYCLE, r"node_\d+"], "100000-node chain closed into a cycle")
    C.bytes_case("long_chain_unproduced", relu_chain(100000, ghost_at=50000),
                 [PRODUCED, esc("phantom_t"), r"node_50000\b"],
                 "node_50000 of a 100000-node chain reads 'phantom_t'")
    C.bytes_case("many_attrs_100000", many_attrs(100000), [],
                 "custom-domain node with 100000 attributes: valid, must be fast", exit=0)
    C.bytes_case("many_inits_100000", many_inits(100000), [],
                 "100000 small initializers: valid, must be fast", exit=0,
                 json={"params_total": 100000})

    build_execution_cases(C, nodes, tensors, inputs, outputs)

    with open(os.path.join(out, MARKER), "w") as f:
        json.dump({"cases": C.cases}, f, indent=1)
    return C.cases


UNSUP = r"not supported|unsupported|not implemented"
ANYNODE = r"conv1|relu1|flatten1|\bfc\b"


def build_execution_cases(C, nodes, tensors, inputs, outputs):
    """Models that load but must not execute (opsets, attributes, sizes decided at run time), and
    load-time refusals of opset imports, duplicates and deeply nested subgraphs; run and grad too."""
    def run_err(must, grad=True):
        d = {"run": {"exit": 1, "must": must}}
        d["grad"] = {"exit": 1, "must": must} if grad else None
        return d

    # ---------------------------------------------------------- opsets
    for v in (1, 5):  # Relu (since 6) does not exist in the implementation at these opsets
        m = make_model(nodes, tensors, inputs, outputs, opsets=(("", v),))
        C.model_case("opset_%d" % v, m, [], "base model importing the default domain at opset %d: "
                     "info/export work, run/grad name relu1 (Relu) as unsupported at opset %d" % (v, v),
                     exit=0, checker=0, cmds=run_err([UNSUP, r"opset", r"\b%d\b" % v, esc("relu1"), r"\bRelu\b"]))
    for name, v in (("opset_99", 99), ("opset_2_62", 1 << 62)):
        m = make_model(nodes, tensors, inputs, outputs, opsets=(("", v),))
        C.model_case(name, m, [], "base model at opset %d: run/grad refuse (never a wrong answer)" % v,
                     exit=0, checker=0, cmds=run_err([UNSUP, r"opset", r"\b%d\b" % v, ANYNODE,
                                           r"Conv|Relu|Flatten|Gemm"]))
    C.model_case("opset_none", make_model(nodes, tensors, inputs, outputs, opsets=()), [],
                 "no opset_import at all: run/grad say the default domain is not imported", exit=0, checker=0,
                 cmds=run_err([r"opset", r"import", ANYNODE]))
    for name, v in (("opset_0", 0), ("opset_negative", -5)):
        C.model_case(name, make_model(nodes, tensors, inputs, outputs, opsets=(("", v),)),
                     [r"opset", r"version|invalid"], "default domain imported at opset %d" % v)
    C.model_case("opset_twice", make_model(nodes, tensors, inputs, outputs, opsets=(("", 13), ("", 7))),
                 [r"opset", DUP], "default domain imported twice (13 and 7): ambiguous")
    C.model_case("opset_twice_alias", make_model(nodes, tensors, inputs, outputs,
                                                 opsets=(("", 13), ("ai.onnx", 13))),
                 [r"opset", DUP], "default domain imported as '' and as 'ai.onnx'")

    # ---------------------------------------------------------- attributes
    def swap(i, node):
        ns = list(nodes)
        ns[i] = node
        return ns
    cat = [helper.make_node("Concat", ["relu_out", "relu_out"], ["cat"], name="cat1"),
           helper.make_node("Flatten", ["cat"], ["flat"], name="flatten1", axis=1),
           helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["Y"], name="fc", transB=1)]
    C.model_case("attr_required_missing", make_model(nodes[:2] + cat, tensors, inputs, outputs), [],
                 "Concat cat1 without its required 'axis': run/grad name node and attribute", exit=0, checker=0,
                 cmds=run_err([r"required|missing", r"\baxis\b", esc("cat1")]))
    fl = helper.make_node("Flatten", ["relu_out"], ["flat"], name="flatten1")
    fl.attribute.append(helper.make_attribute("axis", 1.5))
    C.model_case("attr_wrong_type", make_model(swap(2, fl), tensors, inputs, outputs), [],
                 "Flatten axis given as a float", exit=0, checker=0,
                 cmds=run_err([r"type|float|int", r"\baxis\b", esc("flatten1")]))
    cv = helper.make_node("Conv", ["X", "conv.weight", "conv.bias"], ["conv_out"], name="conv1",
                          kernel_shape=[3, 3, 3], strides=[1, 1])
    C.model_case("attr_bad_value", make_model(swap(0, cv), tensors, inputs, outputs), [],
                 "Conv kernel_shape of rank 3 on a 2-D convolution", exit=0, checker=0,
                 cmds=run_err([r"kernel|shape|rank|spatial|dims", esc("conv1")]))

    # ---------------------------------------------------------- duplicates
    C.model_case("dup_graph_input", make_model(nodes, tensors, inputs + inputs, outputs),
                 [DUP, esc("X")], "graph input X declared twice")
    C.model_case("dup_initializer", make_model(nodes, tensors + tensors[:1], inputs, outputs),
                 [DUP, esc("conv.weight")], "initializer conv.weight defined twice")
    x14 = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])]
    y12 = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])]
    sp = [helper.make_node("Split", ["X"], ["a", "a"], name="split1", axis=1, num_outputs=2),
          helper.make_node("Identity", ["a"], ["Y"], name="id1")]
    C.model_case("dup_output_same_node", make_model(sp, [], x14, y12, opsets=(("", 18),)),
                 [DUP + r"|produc", esc("split1")], "Split split1 lists output 'a' twice")
    C.model_case("dup_graph_output", make_model(nodes, tensors, inputs, outputs + outputs), [],
                 "graph output Y listed twice (legal): run writes Y.npy once", exit=0,
                 cmds={"run": {"exit": 0}, "grad": {"exit": 0}})
    x12 = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])]
    col = [helper.make_node("Relu", ["X"], ["y:0"], name="r"), helper.make_node("Neg", ["X"], ["y_0"], name="n")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("y:0", "y_0")]
    C.model_case("output_file_collision", make_model(col, [], x12, outs), [],
                 "outputs 'y:0' and 'y_0' both map to y_0.npy: run refuses instead of overwriting one",
                 exit=0, inputs={"X": ["float32", [1, 2]]},
                 cmds={"run": {"exit": 1, "must": [r"both|same|collid", esc("y:0"), esc("y_0")]},
                       "grad": None})

    pw = [numpy_helper.from_array(np.ones((2,), np.float32), n) for n in ("w/a", "w_a")]
    pn = [helper.make_node("Mul", ["X", "w/a"], ["t"], name="m1"), helper.make_node("Add", ["t", "w_a"], ["Y"], name="a1")]
    C.model_case("grad_file_collision", make_model(pn, pw, x12, y12), [],
                 "parameters 'w/a' and 'w_a' both map to grad/w_a.npy: grad refuses, run works", exit=0,
                 inputs={"X": ["float32", [1, 2]]},
                 cmds={"run": {"exit": 0}, "grad": {"exit": 1, "must": [r"both|same|collid", esc("w/a"), esc("w_a")]}})

    # ---------------------------------------------------------- sizes decided at run time
    x1 = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])]
    y1 = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])]
    for name, shape, about in (("run_constantofshape_2_40", [1 << 20, 1 << 20], "2^40 elements"),
                               ("run_constantofshape_2_36", [1 << 18, 1 << 18], "2^36 floats (256 GiB)"),
                               ("run_expand_2_40", [1 << 20, 1 << 20], "Expand to 2^40 elements")):
        shp = numpy_helper.from_array(np.array(shape, np.int64), "big_shape")
        first = (helper.make_node("Expand", ["X", "big_shape"], ["big"], name="big_node")
                 if "expand" in name else
                 helper.make_node("ConstantOfShape", ["big_shape"], ["big"], name="big_node"))
        ns = [first, helper.make_node("ReduceSum", ["big"], ["s"], name="rs", keepdims=0),
              helper.make_node("Add", ["X", "s"], ["Y"], name="addy")]
        C.model_case(name, make_model(ns, [shp], x1, y1), [],
                     "%s computed at run time: refused before allocation (memory stays bounded)" % about,
                     exit=0, inputs={"X": ["float32", [1]]},
                     cmds={"run": {"exit": 1, "must": [ABSURD + r"|memory|refus|limit", esc("big"),
                                                       esc("big_node")]}, "grad": None})

    # ---------------------------------------------------------- recursive subgraphs through run/grad
    C.bytes_case("run_nested_if_3", deep_if(3), [], "If nested 3 deep: run and grad refuse If "
                 "(not implemented) naming the node", exit=0, inputs={"X": ["float32", [1]]},
                 cmds={"run": {"exit": 1, "must": [UNSUP + r"|cond", r"\bIf\b|cond", r"if_0|cond"]},
                       "grad": None})
    C.bytes_case("deep_loop_5000", deep_loop(5000), [DEPTH + "|" + PARSE],
                 "Loop bodies nested 5000 deep: refused, no stack overflow")
    C.bytes_case("deep_graphs_attr_3000", deep_loop(3000, graphs=True), [DEPTH + "|" + PARSE],
                 "custom op whose GRAPHS attribute nests 3000 deep")
    C.bytes_case("valid_nested_loop_4", deep_loop(4), [], "Loop nested 4 deep (valid)", exit=0)


def deep_loop(depth, graphs=False):
    """Loop whose body holds a Loop ... `depth` deep (graphs=True: a custom op with a GRAPHS
    attribute instead). Bodies: (iter, cond, v) -> (cond, v)."""
    def node(inputs, outputs, name, op, attrs=b"", domain=""):
        b = (b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
             + f_bytes(3, name) + f_bytes(4, op) + attrs)
        return b + (f_bytes(7, domain) if domain else b"")
    i64 = f_bytes(1, f_varint(1, TensorProto.INT64) + f_bytes(2, b""))
    bool_scalar = f_bytes(1, f_varint(1, TensorProto.BOOL) + f_bytes(2, b""))
    opsets = f_bytes(8, opset_raw("", 13)) + (f_bytes(8, opset_raw("com.example", 1)) if graphs else b"")
    wrappers = [(f_varint(1, 8) + f_bytes(2, "onnx-tl-malformed"), 7, opsets)]
    op, dom, attr_field, attr_type = ("Nest", "com.example", 11, 10) if graphs else ("Loop", "", 6, 5)
    for k in range(depth):
        ins = ["", "cond"] + ["v_%d" % k] if not graphs else ["v_%d" % k]
        outs = ["w_%d" % k]
        if k == 0:
            post_g = (f_bytes(2, "g_0") + f_bytes(12, vi_raw("w_0")) +
                      f_bytes(11, vi_raw("cond", bool_scalar)) + f_bytes(11, vi_raw("v_0")))
        else:  # a Loop body: (iteration, cond, v) -> (cond, w)
            post_g = (f_bytes(1, node(["cond"], ["cond_o_%d" % k], "cid_%d" % k, "Identity")) +
                      f_bytes(2, "g_%d" % k) + f_bytes(12, vi_raw("cond_o_%d" % k, bool_scalar)) +
                      f_bytes(12, vi_raw("w_%d" % k)) + f_bytes(11, vi_raw("it_%d" % k, i64)) +
                      f_bytes(11, vi_raw("cond", bool_scalar)) + f_bytes(11, vi_raw("v_%d" % k)))
        wrappers.append((b"", 1, post_g))
        wrappers.append((node(ins, outs, "loop_%d" % k, op, domain=dom), 5, b""))
        wrappers.append((f_bytes(1, "body") + f_varint(20, attr_type), attr_field, b""))
    d = depth
    core = (f_bytes(1, node(["v_%d" % d], ["w_%d" % d], "id_%d" % d, "Identity")) +
            f_bytes(1, node(["cond"], ["cond_o_%d" % d], "cid_%d" % d, "Identity")) +
            f_bytes(2, "g_%d" % d) + f_bytes(11, vi_raw("it_%d" % d, i64)) +
            f_bytes(11, vi_raw("cond", bool_scalar)) + f_bytes(11, vi_raw("v_%d" % d)) +
            f_bytes(12, vi_raw("cond_o_%d" % d, bool_scalar)) + f_bytes(12, vi_raw("w_%d" % d)))
    return nest(wrappers, core)


def ext_model(location, offset=None, length=None, extra=None, dims=None):
    m = base_model()
    t = [x for x in m.graph.initializer if x.name == "conv.weight"][0]
    t.ClearField("raw_data")
    if dims is not None:
        del t.dims[:]
        t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    if location is not None:
        e = t.external_data.add()
        e.key, e.value = "location", location
    if offset is not None:
        e = t.external_data.add()
        e.key, e.value = "offset", str(offset)
    if length is not None:
        e = t.external_data.add()
        e.key, e.value = "length", str(length)
    for k, v in (extra or {}).items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return m


def deep_if(depth):
    """Structurally valid model: If nested `depth` deep through then_branch."""
    def node(inputs, outputs, name, op, attrs=b""):
        return (b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
                + f_bytes(3, name) + f_bytes(4, op) + attrs)

    def else_graph(k):
        return (f_bytes(1, node(["x"], ["e_%d" % k], "else_id_%d" % k, "Identity")) +
                f_bytes(2, "else_%d" % k) + f_bytes(12, vi_raw("e_%d" % k, FLOAT1_TYPE)))

    bool_scalar = f_bytes(1, f_varint(1, TensorProto.BOOL) + f_bytes(2, b""))
    wrappers = [(f_varint(1, 8) + f_bytes(2, "onnx-tl-malformed"), 7,
                 f_bytes(8, opset_raw("", 13)))]
    for k in range(depth):
        post_g = f_bytes(2, "g_%d" % k) + f_bytes(12, vi_raw("y_%d" % k, FLOAT1_TYPE))
        if k == 0:
            post_g += (f_bytes(11, vi_raw("cond", bool_scalar)) +
                       f_bytes(11, vi_raw("x", FLOAT1_TYPE)))
        wrappers.append((b"", 1, post_g))
        else_attr = f_bytes(1, "else_branch") + f_varint(20, 5) + f_bytes(6, else_graph(k))
        pre_n = node(["cond"], ["y_%d" % k], "if_%d" % k, "If", f_bytes(5, else_attr))
        wrappers.append((pre_n, 5, b""))
        wrappers.append((f_bytes(1, "then_branch") + f_varint(20, 5), 6, b""))
    core = (f_bytes(1, node(["x"], ["y_%d" % depth], "id_%d" % depth, "Identity")) +
            f_bytes(2, "g_%d" % depth) + f_bytes(12, vi_raw("y_%d" % depth, FLOAT1_TYPE)))
    return nest(wrappers, core)


def deep_type(depth):
    """Graph input 'x' whose type is sequence(sequence(...(tensor float)...)), depth levels."""
    wrappers = [(f_varint(1, 8) + f_bytes(2, "onnx-tl-malformed"), 7,
                 f_bytes(8, opset_raw("", 13)))]
    node = f_bytes(1, "x") + f_bytes(2, "y") + f_bytes(3, "id0") + f_bytes(4, "Identity")
    wrappers.append((f_bytes(1, node) + f_bytes(2, "deep_type") + f_bytes(12, vi_raw("y")), 11,
                     b""))
    wrappers.append((f_bytes(1, "x"), 2, b""))  # ValueInfoProto.type
    for _ in range(depth):
        wrappers.append((b"", 4, b""))  # TypeProto.sequence_type
        wrappers.append((b"", 1, b""))  # Sequence.elem_type
    return nest(wrappers, FLOAT_TYPE)


def relu_chain(n, cycle=False, ghost_at=None):
    parts = []
    for i in range(n):
        src = "t_%d" % (i - 1) if i else ("t_%d" % (n - 1) if cycle else "X")
        if i == ghost_at:
            src = "phantom_t"
        parts.append(f_bytes(1, f_bytes(1, src) + f_bytes(2, "t_%d" % i) +
                             f_bytes(3, "node_%d" % i) + f_bytes(4, "Relu")))
    if cycle:
        out_name = "Y"
        parts.append(f_bytes(1, f_bytes(1, "t_%d" % (n - 1)) + f_bytes(2, "Y") +
                             f_bytes(3, "node_out") + f_bytes(4, "Identity")))
    else:
        out_name = "t_%d" % (n - 1)
    g = (b"".join(parts) + f_bytes(2, "chain") + f_bytes(11, vi_raw("X")) +
         f_bytes(12, vi_raw(out_name)))
    return model_raw(g)


def many_attrs(n):
    attrs = b"".join(f_bytes(5, f_bytes(1, "a%d" % i) + f_varint(3, i) + f_varint(20, 2))
                     for i in range(n))
    node = (f_bytes(1, "X") + f_bytes(2, "Y") + f_bytes(3, "custom0") + f_bytes(4, "Custom") +
            attrs + f_bytes(7, "com.example"))
    g = f_bytes(1, node) + f_bytes(2, "attrs") + f_bytes(11, vi_raw("X")) + f_bytes(12, vi_raw("Y"))
    return model_raw(g, opsets=(("", 13), ("com.example", 1)))


def many_inits(n):
    one = struct.pack("<f", 1.0)
    inits = b"".join(f_bytes(5, f_varint(2, TensorProto.FLOAT) + f_bytes(8, "w_%d" % i) +
                             f_bytes(9, one)) for i in range(n))
    node = f_bytes(1, "X") + f_bytes(1, "w_0") + f_bytes(2, "Y") + f_bytes(3, "add0") + \
        f_bytes(4, "Add")
    g = (f_bytes(1, node) + f_bytes(2, "inits") + inits + f_bytes(11, vi_raw("X")) +
         f_bytes(12, vi_raw("Y")))
    return model_raw(g)


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: make_corpus.py OUTDIR\n")
        return 2
    out = argv[1]
    if os.path.lexists(out):
        if os.path.isdir(out) and not os.path.islink(out) and (
                not os.listdir(out) or os.path.exists(os.path.join(out, MARKER))):
            shutil.rmtree(out)
        else:
            sys.stderr.write("make_corpus.py: %s exists and is not a corpus directory\n" % out)
            return 1
    os.makedirs(out)
    cases = build(os.path.abspath(out))
    print("make_corpus.py: %d cases in %s" % (len(cases), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
