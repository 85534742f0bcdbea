#!/usr/bin/env bash
# Splits the debug information off release binaries, as they ship:
#   workers/split-debug.sh OUT_DIR BINARY...
# copies each BINARY to OUT_DIR, moves its DWARF into OUT_DIR/<name>.debug
# (objcopy --only-keep-debug), strips it from the copy and links the two
# (.gnu_debuglink, so gdb and addr2line find the .debug file beside it).
# Symbols (function names) stay in the binary. Fails if a shipped binary is
# not under MAX_MB (default 40) MB.
set -euo pipefail
out=$1; shift
max_mb=${MAX_MB:-40}
mkdir -p "$out"
for bin in "$@"; do
  name=$(basename "$bin")
  cp "$bin" "$out/$name"
  (cd "$out" && objcopy --only-keep-debug "$name" "$name.debug" \
    && objcopy --strip-debug --add-gnu-debuglink="$name.debug" "$name")
  bytes=$(stat -c %s "$out/$name")
  mb=$(( (bytes + 1048575) / 1048576 ))
  echo "$name: $((bytes / 1048576)) MB shipped, $(( $(stat -c %s "$out/$name.debug") / 1048576 )) MB in $name.debug"
  if [ "$mb" -gt "$max_mb" ]; then
    echo "split-debug: $name is ${mb} MB, over the ${max_mb} MB limit" >&2
    exit 1
  fi
done
