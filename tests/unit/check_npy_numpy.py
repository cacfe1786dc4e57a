#!/usr/bin/python3
"""check_npy_numpy.py - numpy must read what otl_npy_save writes.

Usage: check_npy_numpy.py TEST_NPY DATADIR OUTDIR
Runs the C unit test (which writes rt_*.npy round trips of the golden files and c_*.npy tensors
built in C into OUTDIR), then loads every written file with numpy (allow_pickle=False) and
compares it with the golden file (or the pattern of make_npy_goldens.py). Exit 0 only if all match.
"""
import os
import subprocess
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_npy_goldens import pattern  # noqa: E402

# c_*.npy written by test_npy.c's test_save: dtype and shape
BUILT = {
    "c_f2.npy": ("<f2", (3, 4)),
    "c_f8_scalar.npy": ("<f8", ()),
    "c_i4.npy": ("<i4", (2, 3, 4)),
    "c_b1_empty.npy": ("|b1", (3, 0)),
    "c_u1.npy": ("|u1", (300,)),
    "c_f4_long.npy": ("<f4", (1, 1, 1234567)),
}
# goldens numpy itself refuses (lenient header): compare against the pattern instead
LENIENT = {"ok_hdr_list.npy": ("<f4", (2, 3))}


def main():
    exe, data, out = sys.argv[1:4]
    r = subprocess.run([exe, data, out])
    failures = []
    if r.returncode != 0:
        failures.append("%s exited with %d" % (exe, r.returncode))
    n = 0
    for f in sorted(os.listdir(out)):
        p = os.path.join(out, f)
        if f.startswith("rt_"):
            orig = f[3:]
            if orig in LENIENT:
                want = pattern(*LENIENT[orig])
            else:
                want = np.load(os.path.join(data, orig), allow_pickle=False)
        elif f in BUILT:
            want = pattern(*BUILT[f])
        else:
            continue
        n += 1
        try:
            got = np.load(p, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            failures.append("%s: numpy cannot read it: %s" % (p, e))
            continue
        if got.dtype != want.dtype or got.shape != want.shape:
            failures.append("%s: %s %s, expected %s %s" % (p, got.dtype, got.shape, want.dtype,
                                                           want.shape))
        elif not np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
            failures.append("%s: values differ" % p)
        elif not got.flags.c_contiguous:
            failures.append("%s: not C order" % p)
    if n < 30:
        failures.append("only %d written files found in %s" % (n, out))
    for f in failures:
        print("FAIL", f)
    print("check_npy_numpy: %d files read by numpy, %d failures" % (n, len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
