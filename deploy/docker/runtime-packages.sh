#!/bin/sh
# Prints the Debian packages that provide the shared libraries a binary loads, one per line.
#   runtime-packages.sh BINARY
# Run where the binary was built (the Dockerfile's builder stage, or a Debian 12 host for the
# prebuilt path of tools/image-test.sh): the runtime stage installs exactly these.
set -eu
binary=${1:?usage: runtime-packages.sh BINARY}
libs=$(ldd "$binary") || { echo "runtime-packages: ldd $binary failed" >&2; exit 1; }
if echo "$libs" | grep -q 'not found'; then
  echo "runtime-packages: unresolved libraries:" >&2
  echo "$libs" | grep 'not found' >&2
  exit 1
fi
paths=$(echo "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
packages=$(mktemp)
trap 'rm -f "$packages"' EXIT
for lib in $paths; do
  real=$(readlink -f "$lib")
  # usrmerge: dpkg may know the file under /lib or /usr/lib.
  pkg=$(dpkg-query -S "$real" 2>/dev/null || dpkg-query -S "${real#/usr}" 2>/dev/null ||
    dpkg-query -S "/usr$real" 2>/dev/null) || {
    echo "runtime-packages: no Debian package owns $real" >&2
    exit 1
  }
  echo "${pkg%%:*}" >>"$packages"
done
sort -u "$packages"
