#!/usr/bin/env bash
# Copy what a clean checkout holds (tracked + untracked-not-ignored files) to $1.
set -euo pipefail
dest=$1
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$dest"
