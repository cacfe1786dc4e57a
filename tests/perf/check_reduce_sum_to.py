#!/usr/bin/python3
"""ReduceSumTo on float32 bias-like shapes (the C column / channel sums of ops/grad_ops.c) and on
shapes that take the oneDNN path, through `onnx-tl grad --loss mse` of Add(x, b): the gradient of
b against float64 NumPy within 1e-5 relative.

    check_reduce_sum_to.py ONNX_TL WORKDIR
"""
import onnx, numpy as np, subprocess, os, sys
from onnx import helper as h, TensorProto as T, numpy_helper
os.makedirs(sys.argv[2], exist_ok=True)
os.chdir(sys.argv[2])
rs=np.random.RandomState(1)
cases = [((4,300,7,5),(1,300,1,1)), ((3,37,600),(600,)), ((33,10),(10,)), ((6,5,4),(5,1)), ((2,3,4,5),(3,1,5)), ((70000,3),(1,3)), ((2,3,300),(1,1,1))]
ok=True
for xs, bs in cases:
    b = rs.randn(*bs).astype(np.float32)
    g = h.make_graph([h.make_node("Add",["x","b"],["y"])],"g",[h.make_tensor_value_info("x",T.FLOAT,list(xs))],
        [h.make_tensor_value_info("y",T.FLOAT,list(xs))],[numpy_helper.from_array(b,"b")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("",13)]); onnx.save(m,"m.onnx")
    x = rs.randn(*xs).astype(np.float32); t = rs.randn(*xs).astype(np.float32)
    np.save("x.npy",x); np.save("t.npy",t)
    r=subprocess.run([sys.argv[1],"grad","m.onnx","--input","x=x.npy","--target","t.npy","--loss","mse","-o","o"],capture_output=True,text=True)
    if r.returncode: print(r.stderr); ok=False; continue
    gb = np.load("o/grad/b.npy")
    dy = (2*(x.astype(np.float64)+b-t)/x.size)
    axes = tuple(i for i in range(len(xs)) if i < len(xs)-len(bs) or bs[i-(len(xs)-len(bs))]==1)
    ref = dy.sum(axis=axes).reshape(bs)
    err = np.abs(gb-ref).max()/np.abs(ref).max()
    print(xs,bs,"rel err %.2e"%err); ok &= err < 1e-5
print("OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
