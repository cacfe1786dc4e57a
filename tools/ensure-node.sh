#!/bin/sh
# ensure-node.sh - Node.js and npm, needed by the ONNX Runtime comparisons in the tests.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  exit 0
fi
exec sh "$(dirname "$0")/ensure-packages.sh" nodejs npm
