#!/usr/bin/env bash
# labels: cpu model
# `puzzle run` and `puzzle report` end to end on a small random model (the
# real tokenizer, hence the label model), with budgets small enough for
# seconds per stage:
#   * an uninterrupted run (A) goes through all 8 stages and records each in
#     run_stages, a distillation run with its curve, and evals of the parent,
#     the child, the distilled child and a baseline (with chat rows), each also
#     on an unseen-domain text (--eval-unseen: perplexity, KL, top-1 only);
#   * a changed unseen-domain file reruns only those four evaluations, and the
#     report and result tables show the new file's rows;
#   * a second run (B) stopped after each stage in turn (--stop-after), and
#     SIGKILLed (the whole process group) in the middle of distillation, then
#     rerun, ends with child and distilled child byte-identical to A's;
#   * a rerun of a finished run skips every stage;
#   * --in-context on a copy of A's database reruns the search stage only (its
#     key holds the option), as search in context: its rounds stored, the
#     child it chose the one of least measured KL, the report's stage list
#     naming it; a rerun skips it, and more --rounds reruns it, continuing
#     from the stored rounds; killed during the rounds and rerun, it ends with
#     the same child; distillation loss weights reach `puzzle distill`;
#   * the report has its Markdown tables (one evals table per text, and the
#     texts side by side) and both pictures of each figure
#     (PNG and SVG) when gnuplot is installed; without gnuplot (GNUPLOT set to
#     a missing program) the tables, no pictures and a clear message.
# The search uses the modeled H100 budget (a cost model, no timing), so A and
# B choose the same child although their CPU profiles differ.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 CLI not installed (scripts/install_deps.sh)"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 not installed (scripts/install_deps.sh)"; exit 1; }
command -v setsid >/dev/null || { echo "skip: setsid not installed"; exit 77; }
cd "$tmp" || exit 1

"$MAKE" m --variant 0 --seed 1 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
python3 - <<'EOF'
import random
w = ("the of and to in is was for on that with as by at from it an be this which or are were "
     "model layer block attention train value 1905 2024 Paris river quickly blue seven").split()
u = ("cat dog moon you will find a fortune tomorrow luck never always friend wise fool money time love "
     "happiness door knock again laugh cry quiet").split()
for name, seed, n, words in (("calib.txt", 7, 120, w), ("train.txt", 9, 200, w), ("eval.txt", 11, 60, w),
                             ("unseen.txt", 13, 60, u)):
    r = random.Random(seed)
    open(name, "w").write("\n".join(" ".join(r.choice(words) for _ in range(r.randint(5, 15))) + "."
                                    for _ in range(n)))
EOF
printf '# test prompts\nWhat is the capital of France?\nWrite a haiku about rain.\n' >chat.txt
cat >space.json <<'EOF'
{"version": 1, "round_to": 16, "layers": "all",
 "attention": [{"kind": "gqa", "n_kv": 1}, {"kind": "linear"}, {"kind": "noop"}],
 "ffn": [{"kind": "swiglu", "n_ff": 48}, {"kind": "linear"}, {"kind": "noop"}]}
EOF
sha() { sha256sum "$1" | cut -d' ' -f1; }
RUN=(run m --space space.json --calib calib.txt --train train.txt --eval eval.txt --chat chat.txt
     --lib-tokens 512 --lib-steps 3 --lib-seq 64 --score-tokens 128 --score-seq 64 --scenario decode:1x32
     --profile-repeats 2 --budget 1xH100 --search-scenario decode:1x64 --speedup 1.02 --baselines shortgpt
     --distill-tokens 512 --distill-seq 32 --distill-batch 2 --distill-lr 3e-3 --eval-tokens 128 --eval-ctx 64
     --chat-tokens 4 --speed-rounds 1 --threads 2 --eval-unseen unseen.txt)

# ---- A: uninterrupted ---------------------------------------------------------------------------
mkdir A
"$BIN" "${RUN[@]}" --db A/run.db >A.log 2>&1; rc=$?
check "uninterrupted run succeeds (rc $rc: $(grep 'puzzle run:' A.log | tail -1))" '[ $rc -eq 0 ]'
for k in 1 2 3 4 5 6 7 8; do
    check "progress line of stage $k/8" 'grep -q "^== \[[0-9]* s\] $k/8 " A.log'
done
qa() { sqlite3 A/run.db "$1"; }
v_stages=$(qa "SELECT count(*) FROM run_stages WHERE stage IN ('library', 'scores', 'profiles', 'search', 'realize',
               'distill', 'evaluate', 'report')")
check "the 8 stages recorded ($v_stages)" '[ "$v_stages" = 8 ]'
v_dist=$(qa "SELECT status, steps, total_steps, (SELECT count(*) FROM distill_curves c WHERE c.run_id = r.id)
             FROM distill_runs r")
check "a finished distillation run with its curve ($v_dist)" '[ "$v_dist" = "done|8|8|8" ]'
v_roles=$(qa "SELECT group_concat(role || (solution_id IS NOT NULL), ',') FROM (SELECT * FROM evals
               WHERE text_name = 'eval.txt' ORDER BY id)")
check "evals of parent, child, distilled, baseline with solution ids ($v_roles)" \
    '[ "$v_roles" = "parent0,child1,distilled1,baseline1" ]'
v_full=$(qa "SELECT count(*) FROM evals e WHERE text_name = 'eval.txt' AND perplexity > 0 AND decode_tok_s > 0
             AND chat_n = 2
             AND (SELECT count(*) FROM eval_chat c WHERE c.eval_id = e.id) = 2")
check "every eval has perplexity, decode speed and 2 chat rows ($v_full)" '[ "$v_full" = 4 ]'
v_kids=$(qa "SELECT count(*) FROM evals WHERE text_name = 'eval.txt' AND role <> 'parent'
             AND kl >= 0 AND top1 BETWEEN 0 AND 1
             AND decode_speedup > 0 AND chat_top1 BETWEEN 0 AND 1 AND chat_parent_ll < 0")
check "children have KL, top-1, decode speed-up and chat scores ($v_kids)" '[ "$v_kids" = 3 ]'
v_self=$(qa "SELECT chat_top1 FROM evals WHERE role = 'parent' AND chat_n > 0")
check "the parent agrees with itself on chat ($v_self)" '[ "$v_self" = 1.0 ]'
v_meth=$(qa "SELECT q.method FROM evals e JOIN solutions s ON s.id = e.solution_id JOIN searches q
             ON q.id = s.search_id WHERE e.role = 'distilled' AND e.text_name = 'eval.txt'")
check "the distilled child realizes the MIP solution ($v_meth)" '[ "$v_meth" = mip ]'
v_view=$(qa "SELECT count(*) FROM eval_summary WHERE ppl_vs_parent > 0")
check "eval_summary relates each model to the parent's perplexity on each text ($v_view)" '[ "$v_view" = 8 ]'
# the unseen domain: the same 4 models, that file's hash, quality only (no speed, no chat)
v_unseen=$(qa "SELECT group_concat(role || (solution_id IS NOT NULL) ||
               IFNULL(kl >= 0 AND top1 BETWEEN 0 AND 1, 0), ',')
               FROM (SELECT * FROM evals WHERE text_name = 'unseen.txt' AND text_sha256 = '$(sha unseen.txt)'
               AND perplexity > 0 AND decode_tok_s IS NULL AND IFNULL(chat_n, 0) = 0 ORDER BY id)")
check "unseen-domain evals of the 4 models, KL and top-1 for the children ($v_unseen)" \
    '[ "$v_unseen" = "parent00,child11,distilled11,baseline11" ]'
v_differ=$(qa "SELECT count(DISTINCT round(perplexity, 6)) FROM evals WHERE role = 'parent'")
check "the parent's perplexity differs between the two texts ($v_differ)" '[ "$v_differ" = 2 ]'
v_ustages=$(qa "SELECT count(*) FROM run_stages WHERE stage LIKE 'evaluate-unseen %'")
check "4 unseen-domain steps recorded ($v_ustages)" '[ "$v_ustages" = 4 ]'
result_rows() {  # result table of log $1 under the text $2: its model rows
    sed -n "/^Result/,/^Report/p" "$1" | sed -n "/^  text: $2 /,/^  text: \|^  (/p" |
        grep -cE "^  (parent|child|distilled|shortgpt) "
}
check "the result tables: eval.txt then unseen.txt" \
    '[ "$(sed -n "/^Result/,/^Report/p" A.log | grep -o "^  text: [a-z_.]*" | tr "\n" " ")" = \
       "  text: eval.txt   text: unseen.txt " ]'
check "the result tables list the 4 models under each text" \
    '[ "$(result_rows A.log eval.txt)" = 4 ] && [ "$(result_rows A.log unseen.txt)" = 4 ]'

# ---- a finished run rerun: every stage skipped ----------------------------------------------------
"$BIN" "${RUN[@]}" --db A/run.db >A2.log 2>&1; rc=$?
check "rerun of a finished run succeeds" '[ $rc -eq 0 ]'
check "and skips all 7 stages before the report" '[ "$(grep -c "done before with the same inputs" A2.log)" -ge 7 ]'
check "and runs no stage command" '! grep -qE "^(distill:|search:|step [0-9])" A2.log'

# ---- a changed unseen-domain file: only its four evaluations rerun ---------------------------------
old_unseen=$(sha unseen.txt)
echo "A new fortune: you will rerun the unseen domain." >>unseen.txt
"$BIN" "${RUN[@]}" --db A/run.db >A3.log 2>&1; rc=$?
check "rerun with a changed unseen file succeeds (rc $rc)" '[ $rc -eq 0 ]'
v_new=$(qa "SELECT group_concat(role, ',') FROM (SELECT role FROM evals WHERE text_sha256 = '$(sha unseen.txt)'
            ORDER BY id)")
check "the 4 models evaluated on the new file ($v_new)" '[ "$v_new" = "parent,child,distilled,baseline" ]'
v_nin=$(qa "SELECT count(*) FROM evals WHERE text_name = 'eval.txt'")
check "and the in-domain evaluations not rerun ($v_nin)" '[ "$v_nin" = 4 ]'
check "the result tables show the new file only" \
    '[ "$(result_rows A3.log unseen.txt)" = 4 ] &&
     grep -q "^  text: unseen.txt (sha256 $(sha unseen.txt | cut -c1-12)," A3.log &&
     [ "$(grep -c "^  text: " A3.log)" = 2 ]'

# ---- C: search in context, on a copy of A's database -------------------------------------------------
cp -r A C
"$BIN" "${RUN[@]}" --db C/run.db --in-context --rounds 1 --stop-after search >C.log 2>&1; rc=$?
check "--in-context run succeeds (rc $rc: $(grep 'puzzle run:' C.log | tail -1))" '[ $rc -eq 0 ]'
check "library, scores and profiles skipped, the search rerun" \
    '[ "$(grep -c "done before with the same inputs" C.log)" = 3 ] && grep -q "then in context (at most 1 round" C.log'
qc() { sqlite3 C/run.db "$1"; }
v_res=$(qc "SELECT result FROM run_stages WHERE stage = 'search' AND result LIKE '% in-context'")
v_best=$(qc "SELECT solution_id FROM context_rounds ORDER BY kl, round LIMIT 1")
v_nr=$(qc "SELECT count(*) FROM context_rounds")
check "the search stage's child is the rounds' least measured KL ($v_res; best $v_best of $v_nr rounds)" \
    '[ -n "$v_best" ] && [ "$v_res" = "$v_best in-context" ] && [ "$v_nr" -ge 2 ]'
check "stage cost printed" 'grep -qE "^   search: [0-9.]+ s wall, [0-9.]+ s CPU" C.log'
"$BIN" report --db C/run.db --out C/report >C.report.log 2>&1
check "the report's stage list names the search in context" 'grep -q "search (in-context) [0-9]* s" C/report/report.md'
"$BIN" "${RUN[@]}" --db C/run.db --in-context --rounds 1 --stop-after search >C2.log 2>&1; rc=$?
check "rerun with the same options skips the search" \
    '[ $rc -eq 0 ] && [ "$(grep -c "done before with the same inputs" C2.log)" = 4 ]'
"$BIN" "${RUN[@]}" --db C/run.db --in-context --rounds 2 --stop-after search >C3.log 2>&1; rc=$?
check "more rounds rerun the search (rc $rc), from the stored rounds" \
    '[ $rc -eq 0 ] && [ "$(grep -c "done before with the same inputs" C3.log)" = 3 ] &&
     [ "$(qc "SELECT count(*) FROM context_rounds WHERE round = 0")" = 1 ]'
"$BIN" "${RUN[@]}" --db C/run.db --in-context --rounds 2 --distill-loss-lm 0.5 --stop-after distill >C4.log 2>&1; rc=$?
check "distillation loss weights reach puzzle distill (rc $rc)" \
    '[ $rc -eq 0 ] && grep -q "\"lm\": 0.5," C/child_distilled/distill.json && grep -q "^step 8/8 .* LM " C4.log'
# killed (the whole process group) during the in-context rounds of a fresh copy, then rerun
cp -r A D
setsid "$BIN" "${RUN[@]}" --db D/run.db --in-context --rounds 1 --stop-after search >D.kill.log 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null && ! grep -q "^in context: " D.kill.log 2>/dev/null; do sleep 0.02; done
kill -9 -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null
v_k=$(sqlite3 D/run.db "SELECT count(*) FROM run_stages WHERE result LIKE '% in-context'")
check "killed during the in-context search: the stage not recorded ($v_k)" '[ "$v_k" = 0 ]'
"$BIN" "${RUN[@]}" --db D/run.db --in-context --rounds 1 --stop-after search >D.log 2>&1; rc=$?
v_d=$(sqlite3 D/run.db "SELECT result FROM run_stages WHERE stage = 'search' AND result LIKE '% in-context'")
arch() {  # database $1, solution $2: its variant per layer (ids differ: the rerun stores its own searches)
    sqlite3 "$1" "SELECT group_concat(attn_variant || '/' || ffn_variant, ',') FROM
                  (SELECT * FROM solution_layers WHERE solution_id = ${2%% *} ORDER BY layer)"
}
check "the rerun finishes it with the uninterrupted run's child (rc $rc, $v_d: $(arch D/run.db "$v_d"))" \
    '[ $rc -eq 0 ] && [ -n "$(arch C/run.db "$v_res")" ] && [ "$(arch D/run.db "$v_d")" = "$(arch C/run.db "$v_res")" ]'

# ---- B: stopped after every stage, killed during distillation --------------------------------------
# (Its evaluation skips the baseline and the chat prompts, to save time: they do not touch the children.)
RUN+=(--baselines none --chat none --eval-unseen none)
mkdir B
for s in library scores profiles search realize; do
    "$BIN" "${RUN[@]}" --db B/run.db --stop-after $s >B.$s.log 2>&1; rc=$?
    check "stop after $s (rc $rc)" '[ $rc -eq 0 ] && grep -q "stopped after $s" B.$s.log'
done
v_later=$(sqlite3 B/run.db "SELECT count(*) FROM run_stages WHERE stage IN ('distill', 'evaluate')")
check "stopping after realize left the later stages undone ($v_later)" '[ "$v_later" = 0 ]'
setsid "$BIN" "${RUN[@]}" --db B/run.db >B.kill.log 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null && ! grep -q "^step 5/" B.kill.log 2>/dev/null; do sleep 0.05; done
kill -9 -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null
check "killed during distillation, after a checkpoint" \
    '[ -f B/child_distilled/gkd_checkpoint.bin ] && ! grep -q "^step 8/" B.kill.log'
for s in distill evaluate report; do
    "$BIN" "${RUN[@]}" --db B/run.db --stop-after $s >B.$s.log 2>&1; rc=$?
    check "stop after $s (rc $rc)" '[ $rc -eq 0 ]'
done
check "the killed distillation resumed from its checkpoint" '! grep -q "^step 1/" B.distill.log && grep -q "^step 8/" B.distill.log'
check "interrupted == uninterrupted: child weights" '[ "$(sha A/child/model.safetensors)" = "$(sha B/child/model.safetensors)" ]'
check "interrupted == uninterrupted: distilled child weights" \
    '[ "$(sha A/child_distilled/model.safetensors)" = "$(sha B/child_distilled/model.safetensors)" ]'

# ---- the report ----------------------------------------------------------------------------------------
R=A/report
check "report.md written" '[ -s $R/report.md ]'
for sec in "## Evaluation: parent, children and baselines" "## The block library" "## Speed-up against KL" \
           "## The chosen architecture" "## Distillation" "## Chat replies side by side"; do
    check "section: $sec" 'grep -qF "$sec" $R/report.md'
done
evals_rows() {  # report $1, the table of text $2 (or "The texts side by side"): its model rows
    sed -n "/^### \(Text: \)\?$2\$/,/^##/p" "$1" | grep -cE "^\| (parent|child|distilled|shortgpt) \|"
}
check "evals tables: the 4 models on each text and side by side" \
    '[ "$(evals_rows $R/report.md eval.txt)" = 4 ] && [ "$(evals_rows $R/report.md unseen.txt)" = 4 ] &&
     [ "$(evals_rows $R/report.md "The texts side by side")" = 4 ]'
check "evals tables: in-domain first, then the unseen domain (the changed file's)" \
    '[ "$(grep "^### " $R/report.md | head -3 | tr "\n" ";")" = \
       "### Text: eval.txt;### Text: unseen.txt;### The texts side by side;" ] &&
     grep -q "sha256 $(sha unseen.txt | cut -c1-16)" $R/report.md &&
     ! grep -q "sha256 ${old_unseen:0:16}" $R/report.md'
check "evals tables: the unseen one without speed, the parent at 1.000x of itself" \
    '[ "$(sed -n "/^### Text: unseen.txt/,/^##/p" $R/report.md | grep -c "decode")" = 0 ] &&
     sed -n "/^### Text: unseen.txt/,/^##/p" $R/report.md | grep -qE "^\| parent \| parent \|.* 1\.000x \|"'
check "architecture table: 6 layers" \
    '[ "$(sed -n "/^## The chosen/,/^## Distillation/p" $R/report.md | grep -cE "^\| [0-5] \| ")" = 6 ]'
check "chat: both prompts side by side" '[ "$(grep -c "^\*\*Prompt" $R/report.md)" = 2 ]'
if command -v gnuplot >/dev/null; then
    for f in library_kl tradeoff architecture distill_loss; do
        check "picture $f (PNG + SVG, linked)" \
            '[ -s $R/$f.png ] && [ -s $R/$f.svg ] && grep -q "($f.png)" $R/report.md && head -c 8 $R/$f.png | grep -q PNG'
    done
else
    echo "note: gnuplot not installed; the pictures are not checked"
fi
GNUPLOT=/nonexistent/gnuplot "$BIN" report --db A/run.db --out NG >ng.log 2>&1; rc=$?
check "without gnuplot: succeeds with a clear message" '[ $rc -eq 0 ] && grep -q "gnuplot.*not found" ng.log'
check "without gnuplot: tables, no pictures" \
    '[ -s NG/report.md ] && ! ls NG/*.png >/dev/null 2>&1 && grep -q "not drawn: gnuplot not found" NG/report.md &&
     [ "$(evals_rows NG/report.md eval.txt)" = 4 ]'
"$BIN" report --db nope.db --out X >bad.log 2>&1; rc=$?
check "missing database: one error line" '[ $rc -eq 1 ] && [ $(wc -l <bad.log) -eq 1 ]'
finish
