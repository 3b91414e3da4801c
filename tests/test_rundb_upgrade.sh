#!/usr/bin/env bash
# labels: cpu model
# A run database from before schema version 5 (no models.config_json) through
# the CLI: it opens and migrates, and the stage that needs the parent's whole
# configuration (`puzzle profile`) reads it from the parent model at its
# recorded path and stores it; when that model has moved, the command fails
# with one line naming the fix, and the fix (rerunning build-library with the
# parent) records it. The stored configuration is the parent's config.json
# (tied embeddings and Llama-3 RoPE scaling of test model 1, read back as given).
# Schema 7's bld_runs.loss: 'token' for new runs, 'global' for the runs of an
# older database (what they were trained with).
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
command -v sqlite3 >/dev/null || { echo "skip: sqlite3 CLI not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
cd "$tmp" || exit 1
q() { sqlite3 run.db "$1"; }

"$MAKE" m --variant 1 --seed 3 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
python3 -c "print('\n'.join('the river and the blue model of seven layers' for _ in range(60)))" >text.txt
cat >space.json <<'EOF2'
{"version": 1, "round_to": 16, "layers": "all", "attention": [{"kind": "noop"}], "ffn": [{"kind": "noop"}]}
EOF2
BUILD=(build-library --db run.db --data text.txt --space space.json --seq-len 32 --tokens 256 --steps 1
       --batch 2 --threads 2)
PROF=("$BIN" profile --db run.db --scenario decode:1x16 --repeats 1 --warmup 0 --threads 2 --cold-mib 0)
"$BIN" "${BUILD[0]}" m "${BUILD[@]:1}" >b1.log 2>&1 || { cat b1.log >&2; echo "build-library failed"; exit 1; }

# The stored configuration says what m/config.json says.
same_config() {
  q "SELECT config_json FROM models WHERE role = 'parent'" >stored.json
  python3 - "$1" <<'EOF2'
import json, sys
a, b = json.load(open("stored.json")), json.load(open(sys.argv[1] + "/config.json"))
keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "rope_theta", "rms_norm_eps",
        "tie_word_embeddings", "rope_scaling", "max_position_embeddings")
bad = [k for k in keys if a.get(k) != b.get(k)]
sys.exit(f"differs in {bad}" if bad else 0)
EOF2
}
check "schema version 10" '[ "$(q "PRAGMA user_version")" = 10 ]'
check "BLD runs record the per-token loss" \
    '[ "$(q "SELECT DISTINCT loss || kept_init FROM bld_runs")" = token0 ]'
check "config_json is the parent's config.json" 'same_config m'
check "tied embeddings and llama3 scaling stored" \
    '[ "$(q "SELECT json_extract(config_json, '"'"'$.tie_word_embeddings'"'"') || json_extract(config_json, '"'"'$.rope_scaling.rope_type'"'"') FROM models")" = 1llama3 ]'

# As an older puzzle left it.
q "DROP VIEW context_block_scores; DROP TABLE context_scores; DROP TABLE context_rounds;
   DROP VIEW eval_summary; DROP TABLE eval_chat; DROP TABLE evals; DROP TABLE distill_curves;
   DROP TABLE distill_runs; DROP TABLE run_stages; DROP TABLE layer_influence; ALTER TABLE models DROP COLUMN config_json;
   ALTER TABLE bld_runs DROP COLUMN loss; ALTER TABLE bld_runs DROP COLUMN kept_init;
   ALTER TABLE bld_runs DROP COLUMN init_val_global; ALTER TABLE bld_runs DROP COLUMN final_val_global;
   PRAGMA user_version = 4"
check "degraded to version 4" '[ "$(q "PRAGMA user_version")" = 4 ]'
"${PROF[@]}" >p1.txt 2>p1.err; rc=$?
check "profile on a version-4 database (rc $rc: $(tail -1 p1.err))" '[ $rc -eq 0 ]'
check "migrated to version 10" '[ "$(q "PRAGMA user_version")" = 10 ]'
check "older BLD runs marked as trained with the global loss" \
    '[ "$(q "SELECT DISTINCT loss || kept_init || (init_val_global IS init_val_nmse) FROM bld_runs")" = global01 ]'
check "the parent's configuration read from m and stored" 'same_config m'

# The parent moved: one line naming the fix; the fix records it.
q "UPDATE models SET config_json = NULL"
mv m m2
"${PROF[@]}" >p2.txt 2>p2.err; rc=$?
check "moved parent: profile fails" '[ $rc -ne 0 ]'
check "one line naming the fix ($(cat p2.err))" \
    '[ "$(wc -l <p2.err)" = 1 ] && grep -q "puzzle build-library PARENT --db run.db" p2.err'
"$BIN" "${BUILD[0]}" m2 "${BUILD[@]:1}" >b2.log 2>&1; rc=$?
check "rerunning build-library with the parent (rc $rc: $(tail -1 b2.log))" '[ $rc -eq 0 ]'
check "configuration recorded" 'same_config m2'
"${PROF[@]}" >p3.txt 2>p3.err; rc=$?
check "profile runs again (rc $rc: $(tail -1 p3.err))" '[ $rc -eq 0 ] && grep -q "^profiled 0 rows" p3.txt'
finish
