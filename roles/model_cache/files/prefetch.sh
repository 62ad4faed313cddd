# Prefetch one Hugging Face model into a directory on the cache PVC.
# Arguments: MODEL REVISION DEST [INCLUDE_PATTERN...]; HF_TOKEN comes from the environment.
set -eu
model="$1"; revision="$2"; dest="$3"; shift 3
if [ "$#" -gt 0 ]; then set -- --include "$@"; fi
mkdir -p "$dest"
echo "prefetching ${model}@${revision} into ${dest}"
if command -v hf >/dev/null 2>&1; then
  hf download "$model" --revision "$revision" --local-dir "$dest" "$@"
elif command -v huggingface-cli >/dev/null 2>&1; then
  huggingface-cli download "$model" --revision "$revision" --local-dir "$dest" "$@"
else
  echo "neither hf nor huggingface-cli is in the image; use an image with huggingface_hub" >&2
  exit 2
fi
printf '%s@%s\n' "$model" "$revision" > "$dest/.gpuops-model-cache"
du -sh "$dest" 2>/dev/null || true
echo "done: ${model}@${revision}"
