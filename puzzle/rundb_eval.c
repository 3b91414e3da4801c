// rundb_eval.c — the pipeline's end in the run database (see rundb.h):
// distillation runs and their loss curves, evaluations with their chat
// replies, the stages `puzzle run` finished, and the named data sets that
// `puzzle report` draws (all of their SQL is here, like every other stage's).
#include "rundb_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void pz_rundb_sha256_hex(const void *data, size_t n, char hex[65]) { rundb_sha256_hex(data, n, hex); }

// A solution id to store: the given one, else the child row's at path, else NULL (0).
static long solution_for(pz_rundb *db, long given, const char *path, char *err) {
    if (given > 0) return given;
    long sol = 0;
    if (pz_rundb_child_solution(db, path, &sol, err) < 0) return -1;
    return sol;
}

int pz_rundb_record_distill(pz_rundb *db, const pz_rundb_distill_run *r, long *id, char *err) {
    long sol = solution_for(db, r->solution_id, r->child, err);
    if (sol < 0) return -1;
    double first = r->n_points > 0 ? r->cos_loss[0] + r->kl[0] : NAN;
    double last = r->n_points > 0 ? r->cos_loss[r->n_points - 1] + r->kl[r->n_points - 1] : NAN;
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT INTO distill_runs (child_path, teacher_path, out_dir, solution_id, status, data, "
                        "data_sha256, data_tokens, tokens, seq_len, batch, accum, ranks, threads, lr, lr_min_ratio, "
                        "warmup, weight_decay, prec, seed, steps, total_steps, tokens_done, resumed_at_step, wall_s, "
                        "tokens_per_s, first_loss, last_loss, error, loss_cos, loss_kl, loss_lm, kl_temperature) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tttkttt" "llll" "iii" "dd" "l" "d" "t" "lllll" "dddd" "t" "dddd", r->child, r->teacher, r->out_dir, sol, r->status, r->data,
                        r->data_sha256, r->data_tokens, r->tokens, (long)r->seq_len, (long)r->batch, r->accum,
                        r->ranks, r->threads, r->lr, r->lr_min_ratio, r->warmup, r->weight_decay, r->prec,
                        (long)r->seed, r->steps, r->total_steps, r->tokens_done, r->resumed_at_step, r->wall_s,
                        r->tokens_per_s, first, last, r->error, r->loss_cos, r->loss_kl, r->loss_lm,
                        r->kl_temperature);
    long run = rc < 0 ? 0 : (long)rundb_last_id(db);
    rundb_stmt q = {0};
    if (rc >= 0 && r->n_points > 0 &&
        (rc = rundb_prepare(db, &q, err,
                            "INSERT INTO distill_curves (run_id, step, tokens, loss, cos_loss, kl, lr, grad_norm) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", "")) == 0) {
        for (int i = 0; i < r->n_points && rc >= 0; i++) {
            long step = i + 1;
            if ((rc = rundb_rebind(&q, "lllddddd", run, step, step * r->tokens_per_step,
                                   r->cos_loss[i] + r->kl[i], r->cos_loss[i], r->kl[i], r->lr_curve[i],
                                   r->grad_norm ? r->grad_norm[i] : NAN)) == 0)
                rc = rundb_step(&q);
        }
        rundb_done(&q);
    }
    if (rundb_end(db, rc < 0 ? -1 : 0, err)) return -1;
    if (id) *id = run;
    return 0;
}

int pz_rundb_record_eval(pz_rundb *db, const pz_rundb_eval *e, long *id, char *err) {
    long sol = solution_for(db, e->solution_id, e->model_path, err);
    if (sol < 0) return -1;
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT INTO evals (model_path, role, solution_id, label, ref_path, text_name, text_sha256, "
                        "text_tokens, skip_tokens, ctx, perplexity, nll, kl, top1, ref_perplexity, decode_tok_s, "
                        "prefill_tok_s, ref_decode_tok_s, ref_prefill_tok_s, decode_speedup, prefill_speedup, "
                        "speed_ctx, speed_rounds, chat_file, chat_sha256, chat_n, chat_max_tokens, chat_parent_ll, "
                        "chat_top1, threads, wall_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "ttktttt" "klk" "ddddddddddd" "kk" "tt" "kk" "dd" "i" "d", e->model_path, e->role, sol, e->label, e->ref_path,
                        e->text_name, e->text_sha256, e->text_tokens, e->skip_tokens, e->ctx, e->perplexity, e->nll,
                        e->kl, e->top1, e->ref_perplexity, e->decode_tok_s, e->prefill_tok_s, e->ref_decode_tok_s,
                        e->ref_prefill_tok_s, e->decode_speedup, e->prefill_speedup, (long)e->speed_ctx,
                        (long)e->speed_rounds, e->chat_file, e->chat_sha256, (long)e->chat_n, (long)e->chat_max_tokens,
                        e->chat_parent_ll,
                        e->chat_top1, e->threads, e->wall_s);
    long eid = rc < 0 ? 0 : (long)rundb_last_id(db);
    for (int i = 0; rc >= 0 && e->chat && i < e->chat_n; i++) {
        const pz_rundb_chat_row *c = &e->chat[i];
        char *ids = NULL;
        if (c->reply_ids && (ids = malloc(12 * (size_t)c->reply_tokens + 1))) {
            size_t k = 0;
            ids[0] = 0;
            for (int j = 0; j < c->reply_tokens; j++) k += (size_t)sprintf(ids + k, j ? " %d" : "%d", c->reply_ids[j]);
        }
        rc = rundb_exec(db, err,
                        "INSERT INTO eval_chat (eval_id, idx, prompt, reply, reply_tokens, parent_ll, top1, "
                        "top1_tokens, reply_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "lltt" "iddi" "t", eid, (long)i, c->prompt, c->reply, c->reply_tokens, c->parent_ll, c->top1,
                        c->top1_tokens, ids);
        free(ids);
    }
    if (rundb_end(db, rc < 0 ? -1 : 0, err)) return -1;
    if (id) *id = eid;
    return 0;
}

int pz_rundb_find_eval(pz_rundb *db, const char *model_path, const char *role, const char *text_sha256,
                       int want_chat, long *id, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT max(id) FROM evals WHERE model_path = ? AND role = ? AND (?3 IS NULL OR text_sha256 = ?3)"
                      " AND (? = 0 OR chat_n > 0)",
                      "ttti", model_path, role, text_sha256, want_chat))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1 && rundb_is_null(&q, 0)) rc = 0;
    if (rc == 1) *id = (long)rundb_int64(&q, 0);
    rundb_done(&q);
    return rc;
}

int pz_rundb_parent_chat(pz_rundb *db, const char *parent_path, const char *chat_sha256, int n, int max_tokens,
                         int32_t **ids, int *lens, char *err) {
    long eid = 0;
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT max(id) FROM evals WHERE role = 'parent' AND model_path = ? AND chat_sha256 = ? "
                      "AND chat_n = ? AND chat_max_tokens = ?",
                      "ttii", parent_path, chat_sha256, n, max_tokens))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1 && rundb_is_null(&q, 0)) rc = 0;
    if (rc == 1) eid = (long)rundb_int64(&q, 0);
    rundb_done(&q);
    if (rc <= 0) return rc;
    if (rundb_prepare(db, &q, err, "SELECT idx, reply_ids, reply_tokens FROM eval_chat WHERE eval_id = ? ORDER BY idx",
                      "l", eid))
        return -1;
    int got = 0;
    for (int i = 0; i < n; i++) ids[i] = NULL, lens[i] = 0;
    while ((rc = rundb_step(&q)) == 1) {
        int i = rundb_int(&q, 0), m = rundb_int(&q, 2);
        if (i < 0 || i >= n || rundb_is_null(&q, 1) || m <= 0) break;
        if (!(ids[i] = malloc(sizeof(int32_t) * (size_t)m))) {
            rc = pz_err(err, "out of memory");
            break;
        }
        const char *t = rundb_text(&q, 1);
        char *end;
        int k = 0;
        for (; k < m; k++, t = end) {
            long v = strtol(t, &end, 10);
            if (end == t) break;
            ids[i][k] = (int32_t)v;
        }
        if (k != m) break;
        lens[i] = m;
        got++;
    }
    rundb_done(&q);
    if (rc >= 0 && got == n) return 1;
    for (int i = 0; i < n; i++) free(ids[i]), ids[i] = NULL, lens[i] = 0;
    return rc < 0 ? -1 : 0;
}

int pz_rundb_stage_done(pz_rundb *db, const char *stage, const char *key, char *result, size_t cap, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err, "SELECT result FROM run_stages WHERE stage = ? AND key = ?", "tt", stage, key))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1 && result) rundb_copy(&q, 0, result, cap);
    rundb_done(&q);
    return rc;
}

int pz_rundb_stage_finish(pz_rundb *db, const char *stage, const char *key, const char *result, double wall_s,
                          char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err, "INSERT OR REPLACE INTO run_stages (stage, key, result, wall_s) VALUES (?, ?, ?, ?)",
                        "tttd", stage, key, result, wall_s);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_newest_solution(pz_rundb *db, const char *method, long *id, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT s.id FROM solutions s WHERE s.rank = 1 AND s.search_id = (SELECT max(id) FROM searches "
                      "WHERE ?1 IS NULL OR method = ?1)",
                      "t", method))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) *id = (long)rundb_int64(&q, 0);
    rundb_done(&q);
    return rc;
}

int pz_rundb_child_solution(pz_rundb *db, const char *path, long *solution_id, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT solution_id FROM models WHERE role = 'child' AND path = ? AND solution_id IS NOT NULL "
                      "ORDER BY id DESC LIMIT 1",
                      "t", path))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) *solution_id = (long)rundb_int64(&q, 0);
    rundb_done(&q);
    return rc;
}

// ---- report data sets --------------------------------------------------------------------------
// The scoring windows most blocks are scored on (pz_rundb_pick_scores' choice).
#define PICKED_SCORES                                                                                  \
    "(SELECT data_hash, seq_len FROM scores GROUP BY 1, 2 ORDER BY count(*) DESC, max(created_at) DESC " \
    "LIMIT 1)"

typedef struct {
    const char *name;
    const char *sql;  // at most one parameter: the set's arg (a long)
} report_set;

static const report_set sets[] = {
    // The library's replace-1-block KL: layer x variant (attn or ffn half).
    {"library_kl",
     "SELECT b.layer, CASE b.sub WHEN 'attn' THEN 'attn ' || b.attn_variant WHEN 'ffn' THEN 'ffn ' || b.ffn_variant "
     "ELSE b.attn_variant || '+' || b.ffn_variant END AS variant, b.is_parent, s.kl "
     "FROM blocks b JOIN scores s ON s.block_id = b.block_id "
     "WHERE (s.data_hash, s.seq_len) = " PICKED_SCORES " ORDER BY b.sub, b.attn_kind, b.attn_size DESC, "
     "b.ffn_kind DESC, b.ffn_size DESC, b.layer"},
    // Every search's best solution: predicted speed-up and summed block KL.
    {"solutions",
     "SELECT solution_id, method, budget, scenario, target_speedup, speedup, score, params_m, n_changed "
     "FROM solution_summary WHERE rank = 1 AND status <> 'infeasible' ORDER BY method, speedup"},
    // The newest evaluation of each model on each text (eval_summary) whose contents are that
    // file's newest (a changed file's old rows are left out), grouped by text (its sha256; the
    // texts in the order first evaluated), the models in a fixed order within.
    {"evals",
     "SELECT v.eval_id, v.role, v.label, v.model_path, v.solution_id, v.method, v.predicted_speedup, v.params_m, "
     "v.text_name, v.text_tokens, v.perplexity, v.ppl_vs_parent, v.kl, v.top1, v.decode_tok_s, v.prefill_tok_s, "
     "v.decode_speedup, v.prefill_speedup, v.chat_n, v.chat_parent_ll, v.chat_top1, e.text_sha256 "
     "FROM eval_summary v JOIN evals e ON e.id = v.eval_id "
     "WHERE e.text_name IS NULL OR e.text_sha256 = (SELECT y.text_sha256 FROM evals y "
     "WHERE y.text_name = e.text_name ORDER BY y.id DESC LIMIT 1) "
     "ORDER BY (SELECT min(x.id) FROM evals x WHERE x.text_sha256 IS e.text_sha256), "
     "CASE v.role WHEN 'parent' THEN 0 WHEN 'child' THEN 1 WHEN 'distilled' THEN 2 ELSE 3 END, v.label, "
     "v.predicted_speedup, v.eval_id"},
    // A solution's layers (arg: solution id) beside the parent's.
    {"architecture",
     "SELECT l.layer, l.attn_kind, l.attn_size, l.ffn_kind, l.ffn_size, l.attn_variant, l.ffn_variant, "
     "p.n_kv AS parent_n_kv, p.n_ff AS parent_n_ff "
     "FROM solution_layers l LEFT JOIN layers p ON p.layer = l.layer "
     "AND p.model_id = (SELECT id FROM models WHERE role = 'parent') WHERE l.solution_id = ? ORDER BY l.layer"},
    // The solution to draw: the newest distilled one's, else the newest MIP child evaluated, else the newest MIP one.
    {"chosen_solution",
     "SELECT id FROM (SELECT solution_id AS id, 0 AS o, id AS k FROM distill_runs WHERE solution_id IS NOT NULL "
     "UNION ALL SELECT e.solution_id, 1, e.id FROM evals e JOIN solutions s ON s.id = e.solution_id "
     "JOIN searches q ON q.id = s.search_id WHERE e.role = 'child' AND q.method = 'mip' "
     "UNION ALL SELECT s.id, 2, s.id FROM solutions s JOIN searches q ON q.id = s.search_id "
     "WHERE s.rank = 1 AND q.method = 'mip') ORDER BY o, k DESC LIMIT 1"},
    // The distillation runs that finished (the newest per output directory).
    {"distill_runs",
     "SELECT r.id, r.out_dir, r.child_path, r.status, r.steps, r.total_steps, r.tokens_done, r.lr, r.seq_len, "
     "r.batch * r.accum * r.ranks AS windows_per_step, r.first_loss, r.last_loss, r.wall_s, r.tokens_per_s, "
     "r.loss_cos, r.loss_kl, r.loss_lm, r.kl_temperature "
     "FROM distill_runs r WHERE r.id = (SELECT max(x.id) FROM distill_runs x WHERE x.out_dir = r.out_dir) "
     "ORDER BY r.id"},
    // One run's loss curve (arg: run id).
    {"distill_curve",
     "SELECT step, tokens, loss, cos_loss, kl, lr FROM distill_curves WHERE run_id = ? ORDER BY step"},
    // Chat replies of the evaluations in eval_summary, prompt by prompt.
    {"chat",
     // a label shared by models of several speed-ups (one database, several runs) gets the
     // predicted speed-up beside it
     "SELECT c.idx, c.prompt, CASE WHEN e.predicted_speedup IS NOT NULL AND (SELECT count(DISTINCT x.model_path) "
     "FROM eval_summary x WHERE x.label = e.label) > 1 THEN e.label || printf(' %.3fx', e.predicted_speedup) "
     "ELSE e.label END AS label, c.reply, c.parent_ll, c.top1 "
     "FROM eval_chat c JOIN eval_summary e ON e.eval_id = c.eval_id "
     "ORDER BY c.idx, CASE e.role WHEN 'parent' THEN 0 WHEN 'child' THEN 1 WHEN 'distilled' THEN 2 ELSE 3 END, "
     "e.label, e.predicted_speedup, e.eval_id"},
    // Facts for the report's head.
    {"run_facts",
     "SELECT (SELECT path FROM models WHERE role = 'parent'), (SELECT count(*) FROM blocks), "
     "(SELECT count(*) FROM blocks WHERE status = 'done'), (SELECT count(*) FROM scores), "
     "(SELECT count(*) FROM searches), (SELECT count(*) FROM evals), "
     "(SELECT group_concat(stage || CASE WHEN stage = 'search' AND instr(result, ' ') > 0 THEN ' (' || "
     "substr(result, instr(result, ' ') + 1) || ')' ELSE '' END || ' ' || printf('%.0f s', wall_s), ', ') FROM "
     "(SELECT stage, result, wall_s FROM run_stages ORDER BY finished_at, stage))"},
};
#define N_SETS (int)(sizeof sets / sizeof sets[0])

const char *const pz_rundb_report_sets[] = {"library_kl", "solutions", "evals", "architecture", "chosen_solution",
                                            "distill_runs", "distill_curve", "chat", "run_facts", NULL};

int pz_rundb_report_rows(pz_rundb *db, const char *set, long arg, pz_rundb_row_fn fn, void *user, char *err) {
    const report_set *s = NULL;
    for (int i = 0; i < N_SETS; i++)
        if (!strcmp(sets[i].name, set)) s = &sets[i];
    if (!s) return pz_err(err, "internal: no report data set '%s'", set);
    rundb_stmt q;
    int takes_arg = strchr(s->sql, '?') != NULL;
    if (takes_arg ? rundb_prepare(db, &q, err, s->sql, "l", arg) : rundb_prepare(db, &q, err, s->sql, ""))
        return -1;
    int n = sqlite3_column_count(q.st), rows = 0, rc = 0;
    const char **cols = calloc((size_t)n + 1, sizeof *cols);
    if (!cols) {
        rundb_done(&q);
        return pz_err(err, "out of memory");
    }
    for (int i = 0; i < n; i++) cols[i] = sqlite3_column_name(q.st, i);
    int stop = fn(user, -1, n, cols);
    while (!stop && (rc = rundb_step(&q)) == 1) {
        for (int i = 0; i < n; i++) cols[i] = rundb_is_null(&q, i) ? NULL : rundb_text(&q, i);
        stop = fn(user, rows++, n, cols);
    }
    free(cols);
    rundb_done(&q);
    return !stop && rc < 0 ? -1 : rows;
}
