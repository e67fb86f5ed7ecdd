#!/usr/bin/env bash
# Fabric benchmarks of issue 5, measured in one run on loopback:
#   64 B ping-pong latency:  accel pingpong over RoCE v2/UDP
#                            vs fi_pingpong -p tcp -e msg   (goal <= 1.0x)
#                            vs fi_pingpong -p udp -e dgram (goal <= 1.5x)
#                            vs the same datagrams without RoCE processing
#                            (tools/examples/udp_pingpong_floor.rs; no goal)
#   64 KiB bandwidth:        accel pingpong --op write -s 65536 (RDMA WRITE)
#                            vs fi_pingpong -p tcp -e msg -S 65536 (goal >= 1.0x)
#                            vs the same datagrams without RoCE processing
#                            (tools/examples/udp_gso_floor.rs: what the wire
#                            format allows here; no goal)
# Each figure is the median of RUNS runs. Needs libfabric-bin (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
if ! command -v fi_pingpong >/dev/null; then
    apt-get install -y libfabric-bin >/dev/null
fi
cargo build --release -q -p accel-tools --bin accel --example udp_gso_floor --example udp_pingpong_floor
ACCEL=target/release/accel
FLOOR=target/release/examples/udp_gso_floor
FLOOR64=target/release/examples/udp_pingpong_floor

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# fi_pingpong prints "bytes #sent #ack total time MB/sec usec/xfer Mxfers/sec";
# usec/xfer is half a round trip.
fi_run() { # args: fi options...; prints fi_pingpong's result line
    local port=$((40000 + RANDOM % 20000)) out
    timeout 60 fi_pingpong -B "$port" "$@" >/dev/null 2>&1 &
    sleep 0.3
    out=$(timeout 60 fi_pingpong -P "$port" "$@" 127.0.0.1)
    wait
    printf '%s\n' "$out" | sed -n 2p
}
fi_rtt() { fi_run "$@" | awk '{print $7 * 2}'; }
fi_mbps() { fi_run "$@" | awk '{print $6}'; }
# accel pingpong --json: usec_per_iter is a round trip; bytes/seconds both ways.
# The output is parsed after the run: a parser starting up beside it would
# take CPU from it (2 cores, 4 busy threads).
accel_json() { # args: accel pingpong options; prints the JSON of the client
    local port=$((40000 + RANDOM % 20000)) out
    $ACCEL pingpong --server --udp 127.0.0.1 -p "$port" "$@" >/dev/null &
    sleep 0.3
    out=$($ACCEL pingpong --connect 127.0.0.1 --udp 127.0.0.2 -p "$port" "$@" --json)
    wait
    printf '%s\n' "$out"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

declare -a a_lat a_p50 r_lat r_p50 f_tcp f_udp a_bw f_bw r_bw
for _ in $(seq "$RUNS"); do
    j=$(accel_json -s 64 -n 10000)
    a_lat+=("$(printf '%s' "$j" | field usec_per_iter)")
    a_p50+=("$(printf '%s' "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rtt_usec"]["p50"])')")
    out=$($FLOOR64 10000)
    read -r rl rp <<<"$out"
    r_lat+=("$rl")
    r_p50+=("$rp")
    f_tcp+=("$(fi_rtt -p tcp -e msg -I 10000 -S 64)")
    f_udp+=("$(fi_rtt -p udp -e dgram -I 10000 -S 64)")
    # MB/s (10^6 bytes) of payload both ways, as fi_pingpong counts it.
    a_bw+=("$(accel_json --op write -m 4096 -s 65536 -n 2000 | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["bytes"]/j["seconds"]/1e6)')")
    f_bw+=("$(fi_mbps -p tcp -e msg -I 2000 -S 65536)")
    r_bw+=("$($FLOOR 2000)")
done
al=$(printf '%s\n' "${a_lat[@]}" | median)
ap=$(printf '%s\n' "${a_p50[@]}" | median)
rl=$(printf '%s\n' "${r_lat[@]}" | median)
rp=$(printf '%s\n' "${r_p50[@]}" | median)
ft=$(printf '%s\n' "${f_tcp[@]}" | median)
fu=$(printf '%s\n' "${f_udp[@]}" | median)
ab=$(printf '%s\n' "${a_bw[@]}" | median)
fb=$(printf '%s\n' "${f_bw[@]}" | median)
rb=$(printf '%s\n' "${r_bw[@]}" | median)
printf '%-44s %12s %12s %8s %s\n' benchmark accel baseline ratio goal
printf '%-44s %9.2f us %9.2f us %7.2fx %s\n' "64 B round trip vs fi_pingpong tcp msg" "$al" "$ft" "$(echo "$al / $ft" | bc -l)" "<= 1.0x"
printf '%-44s %9.2f us %9.2f us %7.2fx %s\n' "64 B round trip vs fi_pingpong udp dgram" "$al" "$fu" "$(echo "$al / $fu" | bc -l)" "<= 1.5x"
printf '%-44s %9.2f us %9.2f us %7.2fx %s\n' "64 B round trip vs its datagrams, raw (mean)" "$al" "$rl" "$(echo "$al / $rl" | bc -l)" "(floor)"
printf '%-44s %9.2f us %9.2f us %7.2fx %s\n' "64 B round trip vs its datagrams, raw (p50)" "$ap" "$rp" "$(echo "$ap / $rp" | bc -l)" "(floor)"
printf '%-44s %7.0f MB/s %7.0f MB/s %7.2fx %s\n' "64 KiB RDMA WRITE vs fi_pingpong tcp msg" "$ab" "$fb" "$(echo "$ab / $fb" | bc -l)" ">= 1.0x"
printf '%-44s %7.0f MB/s %7.0f MB/s %7.2fx %s\n' "64 KiB RDMA WRITE vs its datagrams, raw" "$ab" "$rb" "$(echo "$ab / $rb" | bc -l)" "(floor)"
