# cuda_run_common.sh - sourced by the device-call scripts (cuda_session.sh, cuda_session_big.sh, cuda_diag.sh,
# cuda_check.sh) once they have set OUT and DEADLINE: the CUDA libraries' path, the seconds left (left), a timeout
# cut by them (cap SECONDS), a timestamped line in OUT/run.log (log), Nsight Compute's path (NCU, empty without it), and
# the card and commit at its top.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
left() { echo $((DEADLINE - $(date +%s))); }
cap() { local l; l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $((l > 5 ? l - 5 : 1)); }
log() { echo "== $(date -u +%T) ($(left) s left) $*" | tee -a "$OUT/run.log"; }
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$OUT/run.log" 2>&1
git log -1 --format='commit %h' >>"$OUT/run.log" 2>/dev/null
