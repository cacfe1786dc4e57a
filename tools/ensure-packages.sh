#!/bin/sh
# ensure-packages.sh PKG... - install the Debian packages that are missing.
# As root with apt-get: installs them. Otherwise prints the exact command and fails.
missing=""
for p in "$@"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
  case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || exit 1
  apt-get install -y -qq --no-install-recommends $missing || exit 1
  exit 0
fi
echo "missing Debian packages. Run:" >&2
echo "  sudo apt-get install -y$missing" >&2
exit 1
