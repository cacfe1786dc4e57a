#!/usr/bin/python3
"""run_gradcheck.py GRADCHECK_BIN OP WORKDIR - finite-difference checks of OP's gradient rule.

Builds the small models of OP's cases (tests/gradcheck/cases_*.py; several shapes and attribute
combinations; every float initializer is a parameter) with python-onnx, runs otl_gradcheck on
each with the case's tolerances, and exits 1 if any case fails. Adding a gradient rule means
adding its cases to the family's cases file and its name to that file's '# ops:' line.
"""
import glob
import importlib
import os
import subprocess
import sys

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def all_cases():
    cases = {}
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases_*.py"))):
        mod = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        cases.update(mod.CASES)
    return cases


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    binary, op, work = sys.argv[1:]
    CASES = all_cases()
    if op not in CASES:
        print(f"run_gradcheck: no cases for op '{op}'", file=sys.stderr)
        return 1
    os.makedirs(work, exist_ok=True)
    failed = []
    for name, m, args in CASES[op]:
        path = os.path.join(work, f"{op}_{name}.onnx")
        onnx.save(m, path)
        r = subprocess.run([binary, path, *args], capture_output=True, text=True, timeout=300)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            failed.append(name)
    if failed:
        print(f"gradcheck {op}: FAILED cases: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"gradcheck {op}: {len(CASES[op])} cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
