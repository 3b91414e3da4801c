// cmd_run.c — `puzzle run PARENT --db RUN.db`: the whole chain from a parent
// to a distilled, evaluated and reported child in one command. Each stage is
// the existing subcommand, run as a child process of this same binary
// (/proc/self/exe), so every stage keeps its own resumption (build-library
// and score skip finished blocks, distill resumes its checkpoint) and its
// own memory is returned when it ends. The run database records each
// finished stage in run_stages under a key naming what went in (options, data
// hashes, and the previous stage's key): a rerun skips a stage whose key is
// recorded, and reruns it, and everything after it, when an input changed.
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "rundb.h"

void pz_usage_run(FILE *out) {
    fprintf(out,
            "usage: puzzle run PARENT --db RUN.db [options]\n\n"
            "Runs every stage not yet done, in order, each resumable: library (BLD), scores, profiles,\n"
            "search, realize, distill, evaluate (parent, child, distilled child, baselines), report.\n"
            "A stage whose inputs (options, data hashes, the stage before) are recorded as finished in\n"
            "RUN.db (table run_stages) is skipped; an interrupted stage resumes its own work. The\n"
            "defaults fit a 2-core CPU (SmolLM2-135M-Instruct: results/pipeline_mix_run.md; the demo,\n"
            "scripts/demo.sh, runs smaller budgets). Each stage prints its wall and CPU seconds.\n\n"
            "Data (UTF-8 text; default ${PUZZLE_CACHE:-~/.cache/puzzle}/text/NAME.txt):\n"
            "  --calib FILE          block library (BLD) and replace-1-block scoring\n"
            "  --train FILE          distillation\n"
            "  --eval FILE           evaluation only (never read by another stage)\n"
            "  --eval-unseen FILE    a domain no other stage sees (default text/eval_unseen.txt when it\n"
            "                        exists; 'none' skips): every evaluated model also gets perplexity,\n"
            "                        KL and top-1 against the parent on it (no speed, no chat)\n"
            "  --chat FILE           chat prompts of the evaluation (default scripts/chat_prompts.txt\n"
            "                        when present; 'none' skips the chat evaluation)\n"
            "Search:\n"
            "  --budget B            cpu (default: this CPU, priced by the profiles) or N x GPU\n"
            "  --speedup X           decode speed-up to reach (default 1.5)\n"
            "  --scenario S          profiled scenario, and the search's on a cpu budget (default decode:1x512)\n"
            "  --search-scenario S   the search's scenario on a GPU budget (default: search's)\n"
            "  --space FILE          search space JSON (default: build-library's)\n"
            "  --in-context          search in context after the one-shot MIP (puzzle search --in-context:\n"
            "                        candidates rescored inside the chosen child, re-solved, measured, while\n"
            "                        the child's measured KL falls); off by default: each round rescores the\n"
            "                        candidates (dozens of scoring passes) for a small gain\n"
            "  --rounds N            at most N in-context rounds (default 3)\n"
            "  --context-margin X    rescore only candidates within X nats of the chosen variant's one-shot\n"
            "                        score (default: all; puzzle search --margin)\n"
            "  --baselines LIST      baseline methods also realized and evaluated, comma-separated, or none\n"
            "                        (default uniform-ffn,shortgpt; also greedy, drop-layers)\n"
            "Budgets of each stage:\n"
            "  --lib-tokens N        BLD calibration tokens (default 8192)\n"
            "  --lib-steps N         BLD steps per block (default 30)\n"
            "  --lib-seq N           BLD window (default 256)\n"
            "  --score-tokens N      scoring tokens (default 512)\n"
            "  --score-seq N         scoring window (default 256)\n"
            "  --profile-repeats N   timed runs per profile row (default 60)\n"
            "  --distill-tokens N    distillation tokens (default 16384; 0 skips distillation)\n"
            "  --distill-lr X        distillation peak learning rate (default 2e-4)\n"
            "  --distill-loss-cos W  weight of the hidden-state cosine term (default 1)\n"
            "  --distill-loss-kl W   weight of the KL term (default 1)\n"
            "  --distill-loss-lm W   weight of the next-token cross-entropy (default 0)\n"
            "  --distill-seq N       distillation window (default 256)\n"
            "  --distill-batch N     distillation windows per step (default 4)\n"
            "  --eval-tokens N       evaluation tokens (default 4096)\n"
            "  --eval-ctx N          evaluation window and the speed test's prefill (default 512)\n"
            "  --chat-tokens N       longest chat reply (default 64)\n"
            "  --speed-rounds R      speed rounds per model (default 3)\n"
            "Other:\n"
            "  --out DIR             where children and the report go (default: RUN.db's directory):\n"
            "                        DIR/child, DIR/child_distilled, DIR/baseline_METHOD, DIR/report\n"
            "  --threads T           CPU threads of every stage (default 2)\n"
            "  --stop-after STAGE    stop (exit 0) after this stage: library, scores, profiles, search,\n"
            "                        realize, distill, evaluate, report\n");
}

static const char *const stages[] = {"library", "scores", "profiles", "search", "realize", "distill", "evaluate",
                                     "report"};
#define N_STAGES 8

typedef struct {
    char *v[96];
    int n;
    char buf[16384];
    size_t used;
} args_t;

static void arg(args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(args_t *a, const char *fmt, ...) {
    if (a->n + 2 >= (int)(sizeof a->v / sizeof a->v[0])) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(a->buf + a->used, sizeof a->buf - a->used, fmt, ap);
    va_end(ap);
    if (k < 0 || a->used + (size_t)k + 1 > sizeof a->buf) return;
    a->v[a->n++] = a->buf + a->used;
    a->v[a->n] = NULL;
    a->used += (size_t)k + 1;
}

// Runs this binary with a's arguments and waits: 0 when it exited 0.
static int run_self(args_t *a, char *err) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return pz_err(err, "fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv("/proc/self/exe", a->v);
        fprintf(stderr, "puzzle run: cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return pz_err(err, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    if (WIFSIGNALED(st)) return pz_err(err, "puzzle %s was killed by signal %d", a->v[1], WTERMSIG(st));
    return pz_err(err, "puzzle %s failed (exit %d)", a->v[1], WEXITSTATUS(st));
}

// sha256 of a file's bytes (hex); 0 or -1 with err.
static int file_sha(const char *path, char hex[65], char *err) {
    size_t n;
    char *b = pz_read_file(path, (size_t)1 << 34, &n, err);
    if (!b) return -1;
    pz_rundb_sha256_hex(b, n, hex);
    free(b);
    return 0;
}

// key <- "after=<16 hex of sha256(key)> " + the formatted inputs of the next stage.
static void chain(char *key, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void chain(char *key, size_t cap, const char *fmt, ...) {
    char hex[65], rest[4096];
    pz_rundb_sha256_hex(key, strlen(key), hex);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rest, sizeof rest, fmt, ap);
    va_end(ap);
    snprintf(key, cap, "after=%.16s %s", hex, rest);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_tree(const char *path) {
    if (pz_is_dir(path)) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct {
    pz_rundb *db;
    double t0;
    int stop_after;  // stage index, or -1
    int index;       // the current stage's index
} run_state;

static void say(run_state *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_state *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("\n== [%.0f s] %d/%d ", pz_now() - r->t0, r->index + 1, N_STAGES);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

// 1 when (stage, key) is recorded (result copied), 0 when it must run, -1 on error.
static int done_before(run_state *r, const char *stage, const char *key, char *result, size_t cap, char *err) {
    int d = pz_rundb_stage_done(r->db, stage, key, result, cap, err);
    if (d == 1) {
        printf("   done before with the same inputs: skipped%s%s\n", result && *result ? "; result " : "",
               result && *result ? result : "");
        fflush(stdout);
    }
    return d;
}

// CPU seconds (user + system) of the finished stage processes so far: on a shared machine the
// wall time of a stage says little, its CPU time says what it costs (printed per stage).
static double children_cpu(void) {
    struct rusage u;
    if (getrusage(RUSAGE_CHILDREN, &u)) return 0;
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec * 1e-6;
}

static double stage_start, stage_cpu;
static void print_cost(const char *stage, double wall, double cpu) {
    printf("   %s: %.1f s wall, %.1f s CPU (user+sys)\n", stage, wall, cpu);
    fflush(stdout);
}
// Records (stage, key) as finished, with its wall time since t0 (and prints its CPU since c0).
static int finish_since(run_state *r, const char *stage, const char *key, const char *result, double t0, double c0,
                        char *err) {
    double wall = pz_now() - t0;
    print_cost(stage, wall, children_cpu() - c0);
    return pz_rundb_stage_finish(r->db, stage, key, result, wall, err);
}
static int finish(run_state *r, const char *stage, const char *key, const char *result, char *err) {
    return finish_since(r, stage, key, result, stage_start, stage_cpu, err);
}

// Prints the evaluation tables from eval_summary, one per text ("-" where not measured).
static void cellf(int width, const char *fmt, const char *v) {
    if (!v) printf(" %*s", width, "-");
    else printf(fmt, width, atof(v));
}
static int print_eval_row(void *user, int row, int n, const char *const *c) {
    char *group = user;  // the text (sha256) of the table being printed
    if (row < 0) return 0;
    const char *sha = n > 21 && c[21] ? c[21] : "";
    if (row == 0 || strcmp(group, sha)) {
        snprintf(group, 65, "%s", sha);
        const char *name = c[8] ? strrchr(c[8], '/') : NULL;
        name = name ? name + 1 : c[8] ? c[8] : "(no text: speed or chat only)";
        printf("  text: %s", name);
        if (*sha) printf(" (sha256 %.12s, %s tokens)", sha, c[9] ? c[9] : "?");
        printf("\n  %-22s %9s %10s %8s %7s %7s %12s %9s %8s %8s\n", "model", "predicted", "perplexity", "vs par.",
               "KL", "top-1", "decode tok/s", "measured", "chat ll", "chat t1");
    }
    printf("  %-22.22s", c[2] ? c[2] : "?");
    cellf(8, " %*.3fx", c[6]);
    cellf(10, " %*.3f", c[10]);
    cellf(7, " %*.3fx", c[11]);
    cellf(7, " %*.4f", c[12]);
    cellf(7, " %*.4f", c[13]);
    cellf(12, " %*.1f", c[14]);
    cellf(8, " %*.3fx", c[16]);
    cellf(8, " %*.3f", c[19]);
    cellf(8, " %*.3f", c[20]);
    printf("\n");
    return 0;
}

// A model the evaluate stage evaluates.
typedef struct {
    char role[16], label[48], path[2400];
    long sol;
} target;

// Runs `puzzle eval` of t on text (stored in the run database under t's role and label; KL and
// top-1 against the parent unless t is the parent; decode speed when speed_rounds > 0, chat when
// chat) and records the step (stage, key) as finished. 0, or -1 with err.
static int eval_model(run_state *r, args_t *a, const char *text, const target *t, const char *key,
                      const char *stage, const char *parent, const char *db_path, long tokens, long ctx,
                      long threads, long speed_rounds, const char *chat, long chat_tokens, char *err) {
    double t1 = pz_now(), c1 = children_cpu();
    memset(a, 0, sizeof *a), arg(a, "puzzle");
    arg(a, "eval"), arg(a, "%s", t->path), arg(a, "--text"), arg(a, "%s", text);
    arg(a, "--max-tokens"), arg(a, "%ld", tokens), arg(a, "--ctx"), arg(a, "%ld", ctx);
    arg(a, "--threads"), arg(a, "%ld", threads);
    if (speed_rounds > 0)
        arg(a, "--speed"), arg(a, "--speed-ctx"), arg(a, "%ld", ctx), arg(a, "--speed-rounds"),
            arg(a, "%ld", speed_rounds);
    arg(a, "--db"), arg(a, "%s", db_path), arg(a, "--role");
    arg(a, "%s", t->role), arg(a, "--label"), arg(a, "%s", t->label);
    if (strcmp(t->role, "parent")) arg(a, "--ref"), arg(a, "%s", parent);
    if (t->sol) arg(a, "--solution"), arg(a, "%ld", t->sol);
    if (chat) arg(a, "--chat"), arg(a, "%s", chat), arg(a, "--chat-tokens"), arg(a, "%ld", chat_tokens);
    if (run_self(a, err)) return -1;
    print_cost(stage, pz_now() - t1, children_cpu() - c1);
    return pz_rundb_stage_finish(r->db, stage, key, NULL, pz_now() - t1, err);
}

int pz_cmd_run(int argc, char **argv) {
    const char *cmd = "run", *parent = NULL, *db_path = NULL, *space = NULL, *budget = "cpu";
    const char *scenario = "decode:1x512", *search_scenario = NULL, *baselines = "uniform-ffn,shortgpt";
    const char *calib = NULL, *train = NULL, *eval = NULL, *unseen = NULL, *chat = NULL, *out = NULL;
    double speedup = 1.5, distill_lr = 2e-4, ctx_margin = INFINITY;
    double dw_cos = 1, dw_kl = 1, dw_lm = 0;  // distillation loss weights (puzzle distill --loss-*)
    int in_context = 0;
    long ctx_rounds = 3;
    long lib_tokens = 8192, lib_steps = 30, lib_seq = 256, score_tokens = 512, score_seq = 256, repeats = 60;
    long distill_tokens = 16384, distill_seq = 256, distill_batch = 4, eval_tokens = 4096, eval_ctx = 512;
    long chat_tokens = 64, speed_rounds = 3, threads = 2;
    int stop_after = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE
#define INT(var, lo, hi) VAL(); if (pz_arg_int(cmd, a, v, lo, hi, &var)) return PZ_EXIT_USAGE
        if (!strcmp(a, "--db")) { VAL(); db_path = v; }
        else if (!strcmp(a, "--space")) { VAL(); space = v; }
        else if (!strcmp(a, "--budget")) { VAL(); budget = v; }
        else if (!strcmp(a, "--scenario")) { VAL(); scenario = v; }
        else if (!strcmp(a, "--search-scenario")) { VAL(); search_scenario = v; }
        else if (!strcmp(a, "--baselines")) { VAL(); baselines = v; }
        else if (!strcmp(a, "--calib")) { VAL(); calib = v; }
        else if (!strcmp(a, "--train")) { VAL(); train = v; }
        else if (!strcmp(a, "--eval")) { VAL(); eval = v; }
        else if (!strcmp(a, "--eval-unseen")) { VAL(); unseen = v; }
        else if (!strcmp(a, "--chat")) { VAL(); chat = v; }
        else if (!strcmp(a, "--out")) { VAL(); out = v; }
        else if (!strcmp(a, "--in-context")) in_context = 1;
        else if (!strcmp(a, "--distill-loss-cos") || !strcmp(a, "--distill-loss-kl") ||
                 !strcmp(a, "--distill-loss-lm")) {
            VAL();
            double *w = !strcmp(a, "--distill-loss-cos") ? &dw_cos : !strcmp(a, "--distill-loss-kl") ? &dw_kl : &dw_lm;
            if (pz_arg_float(cmd, a, v, 0, 1000, w)) return PZ_EXIT_USAGE;
        }
        else if (!strcmp(a, "--rounds")) { INT(ctx_rounds, 1, 1000); }
        else if (!strcmp(a, "--context-margin")) {
            VAL();
            if (pz_arg_float(cmd, a, v, 0, 1e30, &ctx_margin)) return PZ_EXIT_USAGE;
        }
        else if (!strcmp(a, "--speedup")) {
            VAL();
            if (pz_arg_float(cmd, a, v, 1, 1000, &speedup)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--distill-lr")) {
            VAL();
            if (pz_arg_float(cmd, a, v, 0, 1, &distill_lr)) return PZ_EXIT_USAGE;
        }
        else if (!strcmp(a, "--lib-tokens")) { INT(lib_tokens, 2, 1L << 40); }
        else if (!strcmp(a, "--lib-steps")) { INT(lib_steps, 0, 1L << 30); }
        else if (!strcmp(a, "--lib-seq")) { INT(lib_seq, 2, 1 << 16); }
        else if (!strcmp(a, "--score-tokens")) { INT(score_tokens, 2, 1L << 40); }
        else if (!strcmp(a, "--score-seq")) { INT(score_seq, 2, 1 << 16); }
        else if (!strcmp(a, "--profile-repeats")) { INT(repeats, 1, 100000); }
        else if (!strcmp(a, "--distill-tokens")) { INT(distill_tokens, 0, 1L << 40); }
        else if (!strcmp(a, "--distill-seq")) { INT(distill_seq, 2, 1 << 16); }
        else if (!strcmp(a, "--distill-batch")) { INT(distill_batch, 1, 1 << 16); }
        else if (!strcmp(a, "--eval-tokens")) { INT(eval_tokens, 2, 1L << 40); }
        else if (!strcmp(a, "--eval-ctx")) { INT(eval_ctx, 2, 1 << 20); }
        else if (!strcmp(a, "--chat-tokens")) { INT(chat_tokens, 1, 4096); }
        else if (!strcmp(a, "--speed-rounds")) { INT(speed_rounds, 1, 1000); }
        else if (!strcmp(a, "--threads")) { INT(threads, 0, 1024); }
        else if (!strcmp(a, "--stop-after")) {
            VAL();
            for (int s = 0; s < N_STAGES; s++)
                if (!strcmp(v, stages[s])) stop_after = s;
            if (stop_after < 0) {
                fprintf(stderr, "puzzle run: --stop-after wants a stage (library ... report), not '%s'\n", v);
                return PZ_EXIT_USAGE;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "puzzle run: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!parent) parent = a;
        else {
            fprintf(stderr, "puzzle run: one PARENT only ('%s' is extra)\n", a);
            return PZ_EXIT_USAGE;
        }
#undef VAL
#undef INT
    }
    if (!parent || !db_path) {
        fprintf(stderr, "puzzle run: %s (see puzzle run --help)\n", !parent ? "PARENT is missing" : "--db RUN.db is missing");
        return PZ_EXIT_USAGE;
    }

    // Defaults of the data files, and the output folder.
    char cache[2048], d_calib[2100], d_train[2100], d_eval[2100], d_unseen[2100], dir[2048];
    const char *env = getenv("PUZZLE_CACHE"), *home = getenv("HOME");
    if (env && *env) snprintf(cache, sizeof cache, "%s", env);
    else snprintf(cache, sizeof cache, "%s/.cache/puzzle", home ? home : ".");
    snprintf(d_calib, sizeof d_calib, "%s/text/calib.txt", cache);
    snprintf(d_train, sizeof d_train, "%s/text/train.txt", cache);
    snprintf(d_eval, sizeof d_eval, "%s/text/eval.txt", cache);
    snprintf(d_unseen, sizeof d_unseen, "%s/text/eval_unseen.txt", cache);
    if (!calib) calib = d_calib;
    if (!train) train = d_train;
    if (!eval) eval = d_eval;
    if (!unseen) unseen = pz_file_exists(d_unseen) ? d_unseen : "none";
    int use_unseen = strcmp(unseen, "none") != 0;
    if (!chat) chat = pz_file_exists("scripts/chat_prompts.txt") ? "scripts/chat_prompts.txt" : "none";
    int use_chat = strcmp(chat, "none") != 0;

    char err[PZ_ERRLEN] = "";
    int rc = PZ_EXIT_FAIL;
    run_state r = {.t0 = pz_now(), .stop_after = stop_after};
    char sha_calib[65], sha_train[65] = "", sha_eval[65], sha_unseen[65] = "", sha_chat[65] = "", sha_space[65] = "";
    if (file_sha(calib, sha_calib, err) || file_sha(eval, sha_eval, err)) goto fail;
    if (distill_tokens > 0 && file_sha(train, sha_train, err)) goto fail;
    if (use_chat && file_sha(chat, sha_chat, err)) goto fail;
    if (use_unseen && file_sha(unseen, sha_unseen, err)) goto fail;
    if (space && file_sha(space, sha_space, err)) goto fail;
    if (!(r.db = pz_rundb_open(db_path, 1, err))) goto fail;
    if (out) snprintf(dir, sizeof dir, "%s", out);
    else snprintf(dir, sizeof dir, "%s", pz_rundb_dir(r.db));
    if (mkdir(dir, 0755) != 0 && !pz_is_dir(dir)) {
        pz_err(err, "cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    char child[2300], dchild[2300], report[2300];
    snprintf(child, sizeof child, "%s/child", dir);
    snprintf(dchild, sizeof dchild, "%s/child_distilled", dir);
    snprintf(report, sizeof report, "%s/report", dir);
    printf("puzzle run: %s -> %s (budget %s, %.3gx, threads %ld); data: calib %s, train %s, eval %s, "
           "unseen-domain eval %s, chat %s\n",
           parent, db_path, budget, speedup, threads, calib, distill_tokens > 0 ? train : "(no distillation)", eval,
           unseen, chat);
    // Ctrl-C goes to the stage in flight (same process group), which stops cleanly; this
    // process then reports the failed stage instead of dying first.
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);

    char key[8192], result[256];
    args_t a;
#define STAGE_BEGIN(idx) \
    (r.index = (idx), stage_start = pz_now(), stage_cpu = children_cpu(), memset(&a, 0, sizeof a), arg(&a, "puzzle"))
#define STOP_CHECK()                                                                                  \
    if (r.stop_after == r.index) {                                                                    \
        printf("\npuzzle run: stopped after %s (--stop-after); rerun to continue\n", stages[r.index]); \
        rc = PZ_EXIT_OK;                                                                              \
        goto done;                                                                                    \
    }

    // ---- 1 library ----
    STAGE_BEGIN(0);
    snprintf(key, sizeof key, "parent=%s calib=%s space=%s tokens=%ld steps=%ld seq=%ld threads=%ld", parent,
             sha_calib, sha_space, lib_tokens, lib_steps, lib_seq, threads);
    say(&r, "library: BLD of every variant (%ld calibration tokens of %s, %ld steps per block)", lib_tokens, calib,
        lib_steps);
    int d = done_before(&r, "library", key, NULL, 0, err);
    if (d < 0) goto fail;
    if (!d) {
        arg(&a, "build-library"), arg(&a, "%s", parent), arg(&a, "--db"), arg(&a, "%s", db_path);
        arg(&a, "--data"), arg(&a, "%s", calib), arg(&a, "--tokens"), arg(&a, "%ld", lib_tokens);
        arg(&a, "--steps"), arg(&a, "%ld", lib_steps), arg(&a, "--seq-len"), arg(&a, "%ld", lib_seq);
        arg(&a, "--threads"), arg(&a, "%ld", threads);
        if (space) arg(&a, "--space"), arg(&a, "%s", space);
        if (run_self(&a, err)) goto fail;
        rm_tree(pz_rundb_cache_dir(r.db));  // the activation captures (GBs); a rerun with more blocks recaptures
        if (finish(&r, "library", key, NULL, err)) goto fail;
    }
    STOP_CHECK();

    // ---- 2 scores ----
    STAGE_BEGIN(1);
    chain(key, sizeof key, "data=%s tokens=%ld seq=%ld", sha_calib, score_tokens, score_seq);
    say(&r, "scores: replace-1-block KL to the parent on the first %ld tokens of %s", score_tokens, calib);
    if ((d = done_before(&r, "scores", key, NULL, 0, err)) < 0) goto fail;
    if (!d) {
        arg(&a, "score"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--data"), arg(&a, "%s", calib);
        arg(&a, "--tokens"), arg(&a, "%ld", score_tokens), arg(&a, "--seq-len"), arg(&a, "%ld", score_seq);
        arg(&a, "--threads"), arg(&a, "%ld", threads);
        if (run_self(&a, err) || finish(&r, "scores", key, NULL, err)) goto fail;
    }
    STOP_CHECK();

    // ---- 3 profiles ----
    STAGE_BEGIN(2);
    chain(key, sizeof key, "scenario=%s repeats=%ld", scenario, repeats);
    say(&r, "profiles: every variant timed on this CPU (%s, %ld repeats)", scenario, repeats);
    if ((d = done_before(&r, "profiles", key, NULL, 0, err)) < 0) goto fail;
    if (!d) {
        arg(&a, "profile"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--scenario"), arg(&a, "%s", scenario);
        arg(&a, "--threads"), arg(&a, "%ld", threads), arg(&a, "--repeats"), arg(&a, "%ld", repeats);
        if (run_self(&a, err) || finish(&r, "profiles", key, NULL, err)) goto fail;
    }
    STOP_CHECK();

    // ---- 4 search ----
    STAGE_BEGIN(3);
    int cpu_budget = !strcmp(budget, "cpu");
    const char *sscen = cpu_budget ? scenario : search_scenario;
    chain(key, sizeof key, "budget=%s scenario=%s speedup=%.6g", budget, sscen ? sscen : "", speedup);
    // In context adds its options to the key (a one-shot key stays what it was before the option
    // existed, so older run databases keep their search).
    if (in_context) {
        size_t kl = strlen(key);
        snprintf(key + kl, sizeof key - kl, " in-context rounds=%ld margin=%.6g threads=%ld", ctx_rounds, ctx_margin,
                 threads);
    }
    if (in_context)
        say(&r, "search: budget %s, %.3gx %s speed-up, minimal KL (MIP), then in context (at most %ld round%s%s)",
            budget, speedup, sscen ? sscen : "serving", ctx_rounds, ctx_rounds == 1 ? "" : "s",
            isinf(ctx_margin) ? ", every candidate rescored" : "");
    else
        say(&r, "search: budget %s, %.3gx %s speed-up, minimal KL (MIP, one shot)", budget, speedup,
            sscen ? sscen : "serving");
    long sol = 0;
    if ((d = done_before(&r, "search", key, result, sizeof result, err)) < 0) goto fail;
    if (d) sol = atol(result);
    else {
        char rfile[2400];
        snprintf(rfile, sizeof rfile, "%s/search_result.txt", dir);
        remove(rfile);
        arg(&a, "search"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--budget"), arg(&a, "%s", budget);
        if (sscen) arg(&a, "--scenario"), arg(&a, "%s", sscen);
        arg(&a, "--speedup"), arg(&a, "%.6g", speedup), arg(&a, "--method"), arg(&a, "mip");
        if (in_context) {
            // The rounds are stored as they finish: a killed stage reruns this command, which goes on
            // from the last stored round; the file names the best child measured.
            arg(&a, "--in-context"), arg(&a, "--rounds"), arg(&a, "%ld", ctx_rounds);
            if (threads > 0) arg(&a, "--threads"), arg(&a, "%ld", threads);
            if (!isinf(ctx_margin)) arg(&a, "--margin"), arg(&a, "%.6g", ctx_margin);
            arg(&a, "--result-file"), arg(&a, "%s", rfile);
        }
        if (run_self(&a, err)) goto fail;
        int got;
        if (in_context) {
            size_t n;
            char *txt = pz_read_file(rfile, 64, &n, err);
            if (!txt) goto fail;
            sol = atol(txt);
            free(txt);
            remove(rfile);
            got = sol > 0;
        } else if ((got = pz_rundb_newest_solution(r.db, "mip", &sol, err)) < 0)
            goto fail;
        if (!got) {
            pz_err(err, "no child meets the budget (see the search's explanation above)");
            goto fail;
        }
        // The number first (what a rerun reads back), then which search chose it (the report's stage list).
        snprintf(result, sizeof result, "%ld%s", sol, in_context ? " in-context" : " one-shot");
        if (finish(&r, "search", key, result, err)) goto fail;
    }
    printf("   child: solution %ld%s\n", sol, in_context ? " (the best child the in-context rounds measured)" : "");
    STOP_CHECK();

    // ---- 5 realize ----
    STAGE_BEGIN(4);
    chain(key, sizeof key, "solution=%ld out=%s", sol, child);
    say(&r, "realize: solution %ld as a DeciLM directory %s", sol, child);
    if ((d = done_before(&r, "realize", key, NULL, 0, err)) < 0) goto fail;
    if (!d) {
        arg(&a, "realize"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--solution"), arg(&a, "%ld", sol);
        arg(&a, "--out"), arg(&a, "%s", child), arg(&a, "--dtype"), arg(&a, "f32");
        if (run_self(&a, err) || finish(&r, "realize", key, NULL, err)) goto fail;
    }
    STOP_CHECK();

    // ---- 6 distill ----
    STAGE_BEGIN(5);
    chain(key, sizeof key, "train=%s tokens=%ld lr=%.6g seq=%ld batch=%ld", sha_train, distill_tokens,
             distill_lr, distill_seq, distill_batch);
    // The loss weights join the key when they are not the paper's (older keys stay valid).
    const int paper_loss = dw_cos == 1 && dw_kl == 1 && dw_lm == 0;
    if (!paper_loss) {
        size_t kl = strlen(key);
        snprintf(key + kl, sizeof key - kl, " loss=%.6g,%.6g,%.6g", dw_cos, dw_kl, dw_lm);
    }
    if (distill_tokens > 0) {
        say(&r, "distill: the child against the parent on %ld tokens of %s (resumes its checkpoint)", distill_tokens,
            train);
        if ((d = done_before(&r, "distill", key, NULL, 0, err)) < 0) goto fail;
        if (!d) {
            // A checkpoint of another child or other options is refused by distill: start over then.
            char marker[2400];
            snprintf(marker, sizeof marker, "%s/run_key.txt", dchild);
            size_t ml;
            char *old = pz_file_exists(marker) ? pz_read_file(marker, 1 << 20, &ml, NULL) : NULL;
            if (old && strcmp(old, key)) {
                printf("   the distilled child's folder holds another run: starting over\n");
                rm_tree(dchild);
            }
            free(old);
            if (mkdir(dchild, 0755) != 0 && !pz_is_dir(dchild)) {
                pz_err(err, "cannot create %s: %s", dchild, strerror(errno));
                goto fail;
            }
            FILE *f = fopen(marker, "w");
            if (!f || fputs(key, f) < 0 || fclose(f)) {
                pz_err(err, "cannot write %s", marker);
                goto fail;
            }
            arg(&a, "distill"), arg(&a, "%s", child), arg(&a, "--teacher"), arg(&a, "%s", parent);
            arg(&a, "--data"), arg(&a, "%s", train), arg(&a, "--out"), arg(&a, "%s", dchild);
            arg(&a, "--tokens"), arg(&a, "%ld", distill_tokens), arg(&a, "--lr"), arg(&a, "%.6g", distill_lr);
            arg(&a, "--seq"), arg(&a, "%ld", distill_seq), arg(&a, "--batch"), arg(&a, "%ld", distill_batch);
            if (!paper_loss)
                arg(&a, "--loss-cos"), arg(&a, "%.6g", dw_cos), arg(&a, "--loss-kl"), arg(&a, "%.6g", dw_kl),
                    arg(&a, "--loss-lm"), arg(&a, "%.6g", dw_lm);
            arg(&a, "--threads"), arg(&a, "%ld", threads), arg(&a, "--checkpoint-every"), arg(&a, "4");
            arg(&a, "--resume"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--solution"), arg(&a, "%ld", sol);
            if (run_self(&a, err) || finish(&r, "distill", key, NULL, err)) goto fail;
        }
    } else {
        say(&r, "distill: skipped (--distill-tokens 0)");
    }
    STOP_CHECK();

    // ---- 7 evaluate: each model is its own step, recorded as "evaluate MODEL", and its
    // unseen-domain perplexity / KL another, "evaluate-unseen MODEL" ----
    STAGE_BEGIN(6);
    char pkey[8192];  // the stages before: what the unseen-domain steps depend on, beside their own inputs
    snprintf(pkey, sizeof pkey, "%s", key);
    chain(key, sizeof key, "eval=%s tokens=%ld ctx=%ld chat=%s chat_tokens=%ld rounds=%ld", sha_eval,
             eval_tokens, eval_ctx, sha_chat, chat_tokens, speed_rounds);
    // The in-domain inputs key the baselines and each model's evaluation; the stage's own key
    // adds the unseen-domain text, so a changed (or added) unseen file reruns only its steps.
    char ikey[8192];
    snprintf(ikey, sizeof ikey, "%s", key);
    if (use_unseen) {
        size_t kl = strlen(key);
        snprintf(key + kl, sizeof key - kl, " unseen=%s", sha_unseen);
    }
    say(&r, "evaluate: parent, child%s and baselines (%s) on %ld tokens of %s%s%s%s; decode speed on this CPU",
        distill_tokens > 0 ? ", distilled child" : "", baselines, eval_tokens, eval, use_unseen ? " and of " : "",
        use_unseen ? unseen : "", use_chat ? ", chat prompts" : "");
    {
        // Baselines first get their own search and realization.
        target t[16];
        int nt = 0;
        t[nt++] = (target){"parent", "parent", "", 0};
        snprintf(t[0].path, sizeof t[0].path, "%s", parent);
        t[nt] = (target){"child", "child", "", sol};
        snprintf(t[nt++].path, sizeof t[0].path, "%s", child);
        if (distill_tokens > 0) {
            t[nt] = (target){"distilled", "distilled", "", sol};
            snprintf(t[nt++].path, sizeof t[0].path, "%s", dchild);
        }
        char list[512];
        snprintf(list, sizeof list, "%s", strcmp(baselines, "none") ? baselines : "");
        for (char *save = NULL, *m = strtok_r(list, ",", &save); m && nt < 16; m = strtok_r(NULL, ",", &save)) {
            char bkey[8192], bstage[64];
            snprintf(bstage, sizeof bstage, "baseline %s", m);
            snprintf(bkey, sizeof bkey, "%s", ikey);
            chain(bkey, sizeof bkey, "method=%s", m);
            printf("-- baseline %s: search and realize\n", m);
            long bsol = 0;
            if ((d = done_before(&r, bstage, bkey, result, sizeof result, err)) < 0) goto fail;
            if (d) bsol = atol(result);
            else {
                double bt = pz_now(), bc = children_cpu();
                memset(&a, 0, sizeof a), arg(&a, "puzzle");
                arg(&a, "search"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--budget"), arg(&a, "%s", budget);
                if (sscen) arg(&a, "--scenario"), arg(&a, "%s", sscen);
                arg(&a, "--speedup"), arg(&a, "%.6g", speedup), arg(&a, "--method"), arg(&a, "%s", m);
                if (run_self(&a, err)) goto fail;
                int got = pz_rundb_newest_solution(r.db, m, &bsol, err);
                if (got < 0) goto fail;
                if (got) {
                    memset(&a, 0, sizeof a), arg(&a, "puzzle");
                    arg(&a, "realize"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--solution");
                    arg(&a, "%ld", bsol), arg(&a, "--out"), arg(&a, "%s/baseline_%s", dir, m);
                    arg(&a, "--dtype"), arg(&a, "f32");
                    if (run_self(&a, err)) goto fail;
                }
                snprintf(result, sizeof result, "%ld", got ? bsol : 0);
                if (finish_since(&r, bstage, bkey, result, bt, bc, err)) goto fail;
            }
            if (!bsol) {
                printf("   %s found no child within the budget: not evaluated\n", m);
                continue;
            }
            t[nt] = (target){"baseline", "", "", bsol};
            snprintf(t[nt].label, sizeof t[nt].label, "%s", m);
            snprintf(t[nt++].path, sizeof t[0].path, "%s/baseline_%s", dir, m);
        }
        for (int i = 0; i < nt; i++) {
            char ekey[8192], estage[80];
            snprintf(estage, sizeof estage, "evaluate %s", t[i].label);
            snprintf(ekey, sizeof ekey, "%s", ikey);
            chain(ekey, sizeof ekey, "model=%s solution=%ld", t[i].path, t[i].sol);
            printf("-- evaluate %s (%s)\n", t[i].label, t[i].path);
            if ((d = done_before(&r, estage, ekey, NULL, 0, err)) < 0) goto fail;
            if (!d && eval_model(&r, &a, eval, &t[i], ekey, estage, parent, db_path, eval_tokens, eval_ctx, threads,
                                 speed_rounds, use_chat ? chat : NULL, chat_tokens, err))
                goto fail;
            if (!use_unseen) continue;
            // The unseen domain: perplexity, KL and top-1 only (speed and chat are per model, not per text).
            snprintf(estage, sizeof estage, "evaluate-unseen %s", t[i].label);
            snprintf(ekey, sizeof ekey, "%s", pkey);
            chain(ekey, sizeof ekey, "unseen=%s tokens=%ld ctx=%ld model=%s solution=%ld", sha_unseen, eval_tokens,
                  eval_ctx, t[i].path, t[i].sol);
            printf("-- evaluate %s on the unseen domain (%s)\n", t[i].label, unseen);
            if ((d = done_before(&r, estage, ekey, NULL, 0, err)) < 0) goto fail;
            if (!d && eval_model(&r, &a, unseen, &t[i], ekey, estage, parent, db_path, eval_tokens, eval_ctx, threads,
                                 0, NULL, 0, err))
                goto fail;
        }
        if (finish(&r, "evaluate", key, NULL, err)) goto fail;
    }
    STOP_CHECK();

    // ---- 8 report (always: it is quick and reads everything) ----
    STAGE_BEGIN(7);
    say(&r, "report: %s/report.md", report);
    arg(&a, "report"), arg(&a, "--db"), arg(&a, "%s", db_path), arg(&a, "--out"), arg(&a, "%s", report);
    if (run_self(&a, err) || finish(&r, "report", key, NULL, err)) goto fail;

    printf("\nResult (%.0f s; run database %s, child %s%s%s):\n", pz_now() - r.t0, db_path, child,
           distill_tokens > 0 ? ", distilled " : "", distill_tokens > 0 ? dchild : "");
    char group[65] = "";
    if (pz_rundb_report_rows(r.db, "evals", 0, print_eval_row, group, err) < 0) goto fail;
    printf("  (perplexity on at most %ld tokens of each text: %s%s%s; KL and top-1 against the parent;\n"
           "   decode speed-up measured on this CPU, %ld threads, median of %ld rounds; chat: mean parent\n"
           "   log-likelihood of the replies, nats/token)\nReport: %s/report.md\n",
           eval_tokens, eval, use_unseen ? ", unseen domain " : "", use_unseen ? unseen : "", threads, speed_rounds,
           report);
    rc = PZ_EXIT_OK;
    goto done;
fail:
    if (r.db) fprintf(stderr, "puzzle run: stage %s: %s (a rerun resumes)\n", stages[r.index], err);
    else fprintf(stderr, "puzzle run: %s\n", err);
done:
    pz_rundb_close(r.db);
    return rc;
}
