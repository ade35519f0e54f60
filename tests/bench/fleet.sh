# Sourced by the single-tool benchmarks (cpu.sh, memory.sh): a work directory with its
# cleanup, and a fresh simulated fleet of N hosts at v4.65.0 for each run. Expects SIM,
# KEEP and log() to be set by the caller.

# bench_work NAME: WORK and FLEET, removed (and the fleet stopped) when the script ends.
bench_work() {
    WORK=$(mktemp -d "/tmp/fleetup-$1.XXXXXX")
    chmod 755 "$WORK" # the fleet's login user must reach the fleet dir
    FLEET="$WORK/fleet"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local rc=$?
    "$SIM" down --dir "$FLEET" >/dev/null 2>&1 || true
    if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}

# bench_fresh_fleet N LOG: N hosts at v4.65.0, none touched yet; fleet-sim's output to LOG.
bench_fresh_fleet() {
    local n=$1 out=$2
    if [ ! -f "$WORK/spec-$n.yml" ]; then
        {
            echo "hosts:"
            for i in $(seq -w 1 "$n"); do
                echo "  - {name: sl-$i, groups: [production], version: v4.65.0}"
            done
        } >"$WORK/spec-$n.yml"
    fi
    "$SIM" down --dir "$FLEET" >/dev/null 2>&1 || true
    rm -rf "$FLEET" && mkdir -p "$FLEET"
    "$SIM" up --dir "$FLEET" --spec "$WORK/spec-$n.yml" --owner $$ >"$out" 2>&1 ||
        { cat "$out" >&2; exit 2; }
}
