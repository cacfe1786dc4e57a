"""cases_core.py - gradient-check cases for the core ops (ops/core.c) and losses.
Each cases_*.py file defines CASES = {op: [(case name, model, extra otl_gradcheck args)]} and a
line '# ops: A B C' that tests/gradcheck.cmake reads to register gradcheck.<op> tests."""
# ops: Identity
from gc_common import model, rand

CASES = {
    "Identity": [
        ("vector", model("Identity", [rand(7)]), []),
        ("matrix", model("Identity", [rand(3, 4)]), []),
    ],
}
