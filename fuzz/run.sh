#!/bin/sh
# Fuzz every target for a bounded time, then minimise its corpus.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). New corpus entries land in fuzz/corpus/<target>/ and crash inputs
# in fuzz/artifacts/<target>/; both are replayed on stable by `cargo test --test fuzz_corpus`,
# so check them in (after fixing the crash). Each target runs under `timeout`, so the whole run
# is bounded by SECONDS x targets plus build time.
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"ticket grant_uri codec frame envelope offer manifest receive_core names send_core"}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/agentferry/target-fuzz}"
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t: ${secs}s"
    # -max_len keeps inputs (and the checked-in corpus) small; -rss_limit_mb catches runaway
    # allocation (issue 9, item 2) as a crash.
    timeout $((secs + 120)) cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=1024 -malloc_limit_mb=512 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==.*ERROR|SUMMARY|Done)' || true
    timeout 300 cargo +nightly fuzz cmin "$t" "corpus/$t" >/dev/null 2>&1 || true
done
du -sh corpus artifacts
