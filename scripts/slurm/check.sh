#!/usr/bin/env bash
# make check-slurm: the sbatch script README shows (scripts/slurm/extract.sbatch),
# submitted unchanged to a real Slurm, here a single node started for the
# check from Debian's packages (apt-get install -y slurm-wlm munge; as root).
#
# 1. Writes a throwaway slurm.conf + cgroup.conf for this one node and a
#    munge key into a temporary folder, starts munged, slurmctld and slurmd
#    on it (their own socket, ports, state and logs: nothing under /etc or
#    /var is touched), and stops exactly those processes on exit.
# 2. Makes small data (generated PNGs, 2 splits x 3 classes) and the tiny
#    ONNX base of the tests (scripts/export_model.py tiny), or takes DATA and
#    MODEL from the environment.
# 3. sbatch --array=0-2 --wait scripts/slurm/extract.sbatch: three shards.
# 4. xfer train on the shards, and on an unsharded run of the same data:
#    the shards' rows equal the unsharded file's (same paths, same vectors,
#    bit for bit), and the two trained heads are the same bytes.
#
# Env: XFER (target/release/xfer), VPY (.venv/bin/python), DATA, MODEL,
# SIZE (32 for the tiny model), KEEP=1 keeps the temporary folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
XFER=${XFER:-target/release/xfer}
VPY=${VPY:-.venv/bin/python}
say() { echo "check-slurm: $*" >&2; }

missing=()
for c in munged slurmctld slurmd sbatch sinfo; do
    command -v "$c" >/dev/null || missing+=("$c")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "missing ${missing[*]}: apt-get install -y slurm-wlm munge"
    exit 1
fi
[ "$(id -u)" = 0 ] || { say "run as root (slurmd and munged start as root here)"; exit 1; }
[ -x "$XFER" ] || { say "$XFER missing: make setup"; exit 1; }
[ -x "$VPY" ] || { say "$VPY missing: make setup"; exit 1; }

tmp=$(mktemp -d /tmp/xfer-slurm.XXXXXX)
chmod 700 "$tmp"
pids=()
stop() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$rc" != 0 ]; then
        for log in "$tmp"/*.log; do
            [ -f "$log" ] && { say "--- $log"; tail -n 20 "$log" >&2; }
        done
    fi
    if [ "${KEEP:-}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap stop EXIT INT TERM

# --- a one-node Slurm --------------------------------------------------------
node=$(hostname -s)
read -r ctld_port slurmd_port < <("$VPY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
cpus=$(nproc)
mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
mkdir -p "$tmp/etc" "$tmp/state" "$tmp/spool" "$tmp/munge"
chmod 700 "$tmp/munge"
head -c 1024 /dev/urandom > "$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
cat > "$tmp/etc/slurm.conf" <<EOF
ClusterName=xfercheck
SlurmctldHost=$node
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=check Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$tmp/etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
export SLURM_CONF=$tmp/etc/slurm.conf

munged --foreground --force --socket="$tmp/munge/munge.sock" --key-file="$tmp/munge/munge.key" \
    --log-file="$tmp/munged.log" --pid-file="$tmp/munge/munged.pid" --seed-file="$tmp/munge/seed" \
    >"$tmp/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$tmp/munge/munge.sock" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N "$node" -f "$SLURM_CONF" >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
state=
for _ in $(seq 60); do
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || { say "node $node not idle after 30 s (state: ${state:-none})"; exit 1; }
say "Slurm $(sinfo -V | awk '{print $2}') up: node $node, $cpus CPUs (munged, slurmctld, slurmd: pids ${pids[*]})"

# --- data and model ------------------------------------------------------------
SIZE=${SIZE:-32}
if [ -z "${DATA:-}" ]; then
    DATA=$tmp/data
    "$VPY" - "$DATA" <<'EOF'
import pathlib, sys
from PIL import Image
root = pathlib.Path(sys.argv[1])
for si, split in enumerate(["train", "validation"]):
    for ci, cls in enumerate(["hat", "pants", "shoes"]):
        d = root / split / cls
        d.mkdir(parents=True)
        for i in range(5):
            seed = si * 1000 + ci * 100 + i
            img = Image.new("RGB", (24 + i, 18 + ci))
            img.putdata([((x * 31 + y * 17 + seed * 101) % 256, (x * y + seed) % 256, (seed * 7 + y) % 256)
                         for y in range(img.height) for x in range(img.width)])
            img.save(d / f"{i:03d}.png")
EOF
fi
if [ -z "${MODEL:-}" ]; then
    MODEL=$tmp/tiny.onnx
    "$VPY" scripts/export_model.py tiny --dim 16 --seed 3 --out "$MODEL" >/dev/null
fi

# --- the sbatch script, unchanged, as an array of 3 ---------------------------
job=$(sbatch --parsable --wait --array=0-2 --output="$tmp/slurm-%A_%a.out" \
    scripts/slurm/extract.sbatch "$DATA" "$MODEL" "$tmp/sharded" --size "$SIZE" --device cpu) || {
    say "the array job failed:"
    tail -n 5 "$tmp"/slurm-*.out >&2
    exit 1
}
job=${job%%;*}
say "job $job: 3 array tasks done"
for i in 0 1 2; do
    grep -H "" "$tmp/slurm-${job}_$i.out" | tail -n 1 >&2
done

# --- train on the shards; compare with an unsharded run ------------------------
"$XFER" extract --data "$DATA" --model "$MODEL" --out "$tmp/whole" --size "$SIZE" --device cpu --quiet
for f in sharded whole; do
    "$XFER" train --features "$tmp/$f" --out "$tmp/run-$f" --epochs 3 --seed 1 >"$tmp/train-$f.out" 2>&1 || {
        say "xfer train on $f failed:"
        cat "$tmp/train-$f.out" >&2
        exit 1
    }
done
"$VPY" - "$tmp" <<'EOF'
import pathlib, sys
import pyarrow.parquet as pq
tmp = pathlib.Path(sys.argv[1])
whole = sorted((tmp / "whole").glob("*.parquet"))
if not whole:
    sys.exit("no unsharded feature files")
for w in whole:
    split = w.stem
    shards = sorted((tmp / "sharded").glob(f"{split}-*-of-3.parquet"))
    if len(shards) != 3:
        sys.exit(f"{split}: {len(shards)} shard files, expected 3")
    a = pq.read_table(w).to_pydict()
    rows = {}
    for s in shards:
        t = pq.read_table(s).to_pydict()
        for i, p in enumerate(t["path"]):
            if p in rows:
                sys.exit(f"{split}: {p} in two shards")
            rows[p] = (t["class"][i], t["label"][i], t["sha256"][i], t["features"][i])
    if sorted(rows) != sorted(a["path"]):
        sys.exit(f"{split}: the shards hold other paths than the unsharded file")
    for i, p in enumerate(a["path"]):
        if rows[p] != (a["class"][i], a["label"][i], a["sha256"][i], a["features"][i]):
            sys.exit(f"{split}: {p} differs between the shards and the unsharded file")
    print(f"check-slurm: {split}: {len(rows)} rows in 3 shards, equal to the unsharded file", file=sys.stderr)
heads = [(tmp / f"run-{f}" / "head.safetensors").read_bytes() for f in ("sharded", "whole")]
if heads[0] != heads[1]:
    sys.exit("xfer train on the shards gave another head than on the unsharded file")
print("check-slurm: xfer train on the shards: the same head as on the unsharded file", file=sys.stderr)
EOF
say "ok"
