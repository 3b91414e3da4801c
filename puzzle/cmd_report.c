// cmd_report.c — `puzzle report --db RUN.db --out DIR`: a Markdown report of
// a run a person would rather read than SQL: the evaluation tables (parent,
// children, baselines; one per evaluation text), the library as a layer x
// variant heat map of KL, speed-up against KL with the MIP's solutions and
// the baselines, the chosen architecture layer by layer, the distillation
// loss curves and chat replies side by side. Pictures are drawn by gnuplot (an external program, PNG and
// SVG) from TSV files written beside them; without gnuplot the report has the
// tables and says how to get the pictures. The data comes from the named
// data sets of rundb_eval.c (all SQL stays there).
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "rundb.h"

void pz_usage_report(FILE *out) {
    fprintf(out,
            "usage: puzzle report --db RUN.db --out DIR [options]\n\n"
            "Writes DIR/report.md with pictures (gnuplot: DIR/NAME.png and DIR/NAME.svg, drawn from\n"
            "DIR/NAME.tsv by DIR/NAME.gp): evaluations of the parent, children and baselines (a table\n"
            "per evaluation text, and the texts side by side); the library's replace-1-block KL as a\n"
            "layer x variant heat map; speed-up against KL of the searches' solutions (predicted) and\n"
            "of the evaluated models (measured); the chosen child's architecture layer by layer;\n"
            "distillation loss curves; chat replies side by side.\n"
            "Without gnuplot the report has every table and no pictures (and says so).\n\n"
            "  --db RUN.db       the run database (required)\n"
            "  --out DIR         output directory (created; required)\n"
            "  --solution ID     the architecture to draw (default: the distilled child's, else the\n"
            "                    newest evaluated MIP child's, else the newest MIP solution)\n"
            "  --chat N          chat prompts shown side by side (default 4)\n"
            "  --gnuplot PATH    the gnuplot program (default: $GNUPLOT, else gnuplot on PATH)\n");
}

// ---- a data set in memory --------------------------------------------------------------
typedef struct {
    int ncol, nrow, cap;
    char **names;  // ncol
    char **cells;  // nrow * ncol (NULL: SQL NULL)
} table;

static int collect(void *user, int row, int n, const char *const *cols) {
    table *t = user;
    if (row < 0) {
        t->ncol = n;
        t->names = calloc((size_t)n, sizeof *t->names);
        if (!t->names) return 1;
        for (int i = 0; i < n; i++) t->names[i] = strdup(cols[i]);
        return 0;
    }
    if (t->nrow == t->cap) {
        int c = t->cap ? 2 * t->cap : 64;
        char **g = realloc(t->cells, sizeof *g * (size_t)c * (size_t)n);
        if (!g) return 1;
        t->cells = g, t->cap = c;
    }
    for (int i = 0; i < n; i++) t->cells[(size_t)t->nrow * n + i] = cols[i] ? strdup(cols[i]) : NULL;
    t->nrow++;
    return 0;
}

static void table_free(table *t) {
    for (int i = 0; i < t->ncol; i++) free(t->names[i]);
    for (long i = 0; i < (long)t->nrow * t->ncol; i++) free(t->cells[i]);
    free(t->names);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

static int load_set(pz_rundb *db, const char *set, long arg, table *t, char *err) {
    memset(t, 0, sizeof *t);
    if (pz_rundb_report_rows(db, set, arg, collect, t, err) < 0) {
        table_free(t);
        return -1;
    }
    return 0;
}

static const char *cell(const table *t, int r, int c) { return t->cells[(size_t)r * t->ncol + c]; }
static double num(const table *t, int r, int c) {
    const char *s = cell(t, r, c);
    return s ? atof(s) : NAN;
}
static const char *str(const table *t, int r, int c) {
    const char *s = cell(t, r, c);
    return s ? s : "";
}

// A value for Markdown: "—" for a missing number.
static void md_num(FILE *f, double v, const char *fmt) {
    if (isnan(v)) fputs(" — |", f);
    else {
        fputc(' ', f);
        fprintf(f, fmt, v);
        fputs(" |", f);
    }
}
// Text in one Markdown table cell: line breaks as spaces, '|' escaped, at most max bytes.
static void md_text(FILE *f, const char *s, size_t max) {
    fputc(' ', f);
    size_t n = 0;
    for (; *s && n < max; s++, n++) {
        if (*s == '\n' || *s == '\r') fputc(' ', f);
        else if (*s == '|') fputs("\\|", f);
        else if (*s == '<') fputs("&lt;", f);
        else fputc(*s, f);
    }
    if (*s) fputs("…", f);
    fputs(" |", f);
}

// ---- gnuplot ---------------------------------------------------------------------------
typedef struct {
    const char *dir;
    const char *gnuplot;  // NULL: none available
    int drawn, failed;
} plots;

// Runs gnuplot on DIR/name.gp (which draws both terminals): 1 when both pictures exist.
static int draw(plots *p, const char *name) {
    if (!p->gnuplot) return 0;
    char gp[4096];
    snprintf(gp, sizeof gp, "%s/%s.gp", p->dir, name);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        if (chdir(p->dir) != 0) _exit(126);
        char base[300];
        snprintf(base, sizeof base, "%s.gp", name);
        execlp(p->gnuplot, p->gnuplot, base, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 0;
    char png[4096], svg[4096];
    snprintf(png, sizeof png, "%s/%s.png", p->dir, name);
    snprintf(svg, sizeof svg, "%s/%s.svg", p->dir, name);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && pz_file_exists(png) && pz_file_exists(svg);
    if (ok) p->drawn++;
    else {
        p->failed++;
        fprintf(stderr, "puzzle report: gnuplot could not draw %s (see %s)\n", name, gp);
    }
    return ok;
}

static int gnuplot_works(const char *prog) {
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        FILE *nul = freopen("/dev/null", "w", stdout);
        (void)nul;
        execlp(prog, prog, "--version", (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// Opens DIR/name.EXT for writing.
static FILE *open_in(const char *dir, const char *name, const char *ext, char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "w");
    if (!f) pz_err(err, "cannot write %s: %s", path, strerror(errno));
    return f;
}

// The head of every script: both terminals from one plot command list (replot).
static void gp_head(FILE *f, const char *name, int w, int h) {
    fprintf(f, "# gnuplot %s.gp (in this folder): written by puzzle report\n", name);
    fprintf(f, "set terminal pngcairo size %d,%d font \",11\" noenhanced\nset output \"%s.png\"\n", w, h, name);
    fprintf(f, "set datafile separator \"\\t\"\nset datafile missing \"NaN\"\n");
}
static void gp_tail(FILE *f, const char *name, int w, int h) {
    fprintf(f, "set terminal svg size %d,%d font \"Sans,11\" noenhanced background \"white\"\n", w, h);
    fprintf(f, "set output \"%s.svg\"\nreplot\n", name);
}

static void picture(FILE *md, plots *p, const char *name, const char *alt) {
    if (draw(p, name))
        fprintf(md, "![%s](%s.png)\n\n(also [%s.svg](%s.svg); data %s.tsv, script %s.gp)\n\n", alt, name, name, name,
                name, name);
    else if (!p->gnuplot)
        fprintf(md, "*(picture \"%s\" not drawn: gnuplot not found; data in %s.tsv, script %s.gp)*\n\n", alt, name,
                name);
    else
        fprintf(md, "*(picture \"%s\" failed: see %s.gp)*\n\n", alt, name);
}

// ---- sections ----------------------------------------------------------------------------
// The file name of an eval row's text (column 8), or a stand-in for rows without one.
static const char *text_of(const table *e, int r) {
    const char *t = cell(e, r, 8), *b = t ? strrchr(t, '/') : NULL;
    return b ? b + 1 : t ? t : "(no text: speed or chat only)";
}

// A model's name in the side-by-side table: its label, and its predicted speed-up when another
// evaluated model has the same label (one run database, several speed-ups).
static void side_label(FILE *md, const table *e, int r) {
    int twin = 0;
    for (int q = 0; q < e->nrow && !twin; q++)
        twin = strcmp(str(e, q, 3), str(e, r, 3)) && !strcmp(str(e, q, 2), str(e, r, 2));
    if (!twin || !cell(e, r, 6)) {
        md_text(md, str(e, r, 2), 40);
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "%.60s %.3fx", str(e, r, 2), num(e, r, 6));
    md_text(md, name, 80);
}

// One table per eval text (the data set groups the rows by the text's sha256, column 21): each
// model's perplexity beside the parent's on the same text, KL and top-1; speed and chat columns
// only where that text's rows have them (they are per model: `puzzle run` measures them with the
// in-domain text). With several texts, a last table puts each model's texts side by side.
static int section_evals(FILE *md, const table *e) {
    fprintf(md, "## Evaluation: parent, children and baselines\n\n");
    if (!e->nrow) {
        fprintf(md, "No evaluations yet (`puzzle eval MODEL --ref PARENT --db RUN.db ...` or `puzzle run`).\n\n");
        return 0;
    }
    fprintf(md, "One table per evaluation text (`puzzle run`: the in-domain held-out text and the unseen "
                "domain). KL and top-1 agreement are against the parent on the same text; \"vs parent\" is "
                "the model's perplexity / the parent's on it. Speed is measured on this CPU (decode: single "
                "sequence after a prefill; speed-up = median over rounds of the model's rate / the parent's). "
                "Chat: mean log-likelihood of the model's greedy replies under the parent (nats/token; higher "
                "is better) and top-1 agreement along the parent's own replies.\n\n");
    int start[256], ngroup = 0;
    for (int r = 0; r < e->nrow && ngroup < 256; r++)
        if (!r || strcmp(str(e, r, 21), str(e, r - 1, 21))) start[ngroup++] = r;
    for (int g = 0; g < ngroup; g++) {
        int r0 = start[g], r1 = g + 1 < ngroup ? start[g + 1] : e->nrow, speed = 0, chat = 0;
        for (int r = r0; r < r1; r++) {
            speed |= cell(e, r, 14) != NULL || cell(e, r, 16) != NULL;
            chat |= cell(e, r, 19) != NULL;
        }
        fprintf(md, "### Text: %s\n\n", text_of(e, r0));
        if (cell(e, r0, 21))
            fprintf(md, "`%s`, sha256 %.16s…, %s tokens scored.\n\n", str(e, r0, 8), str(e, r0, 21),
                    str(e, r0, 9));
        fprintf(md, "| model | method | params (M) | predicted speed-up | perplexity | vs parent | KL | top-1 |%s%s\n",
                speed ? " decode tok/s | decode speed-up | prefill speed-up |" : "",
                chat ? " chat log-lik | chat top-1 |" : "");
        fprintf(md, "|---|---|--:|--:|--:|--:|--:|--:|%s%s\n", speed ? "--:|--:|--:|" : "", chat ? "--:|--:|" : "");
        for (int r = r0; r < r1; r++) {
            fprintf(md, "|");
            md_text(md, str(e, r, 2), 40);
            md_text(md, cell(e, r, 5) ? str(e, r, 5) : str(e, r, 1), 20);
            md_num(md, num(e, r, 7), "%.1f");
            md_num(md, num(e, r, 6), "%.3fx");
            md_num(md, num(e, r, 10), "%.3f");
            md_num(md, num(e, r, 11), "%.3fx");
            md_num(md, num(e, r, 12), "%.4f");
            md_num(md, num(e, r, 13), "%.4f");
            if (speed) {
                md_num(md, num(e, r, 14), "%.1f");
                md_num(md, num(e, r, 16), "%.3fx");
                md_num(md, num(e, r, 17), "%.3fx");
            }
            if (chat) {
                md_num(md, num(e, r, 19), "%.3f");
                md_num(md, num(e, r, 20), "%.3f");
            }
            fprintf(md, "\n");
        }
        fprintf(md, "\n");
    }
    if (ngroup < 2) return 0;
    // Side by side: each model (path and role, first-seen order) against every text.
    fprintf(md, "### The texts side by side\n\nPerplexity / the parent's, and KL to the parent, of each model "
                "on each text.\n\n| model |");
    for (int g = 0; g < ngroup; g++) fprintf(md, " %s: vs parent | %s: KL |", text_of(e, start[g]),
                                             text_of(e, start[g]));
    fprintf(md, "\n|---|");
    for (int g = 0; g < ngroup; g++) fprintf(md, "--:|--:|");
    fprintf(md, "\n");
    for (int r = 0; r < e->nrow; r++) {
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(str(e, q, 3), str(e, r, 3)) && !strcmp(str(e, q, 1), str(e, r, 1));
        if (seen) continue;
        fprintf(md, "|");
        side_label(md, e, r);
        for (int g = 0; g < ngroup; g++) {
            int r1 = g + 1 < ngroup ? start[g + 1] : e->nrow, hit = -1;
            for (int q = start[g]; q < r1 && hit < 0; q++)
                if (!strcmp(str(e, q, 3), str(e, r, 3)) && !strcmp(str(e, q, 1), str(e, r, 1))) hit = q;
            md_num(md, hit < 0 ? NAN : num(e, hit, 11), "%.3fx");
            md_num(md, hit < 0 ? NAN : num(e, hit, 12), "%.4f");
        }
        fprintf(md, "\n");
    }
    fprintf(md, "\n");
    return 0;
}

static int section_library(FILE *md, plots *p, const table *lib, char *err) {
    fprintf(md, "## The block library: replace-1-block KL\n\n");
    if (!lib->nrow) {
        fprintf(md, "No scored blocks yet (`puzzle score`).\n\n");
        return 0;
    }
    // Variants in first-seen order (the data set orders them attn before ffn, largest first).
    const char *var[256];
    int nv = 0, max_layer = 0;
    for (int r = 0; r < lib->nrow; r++) {
        int k = 0;
        while (k < nv && strcmp(var[k], str(lib, r, 1))) k++;
        if (k == nv && nv < 256) var[nv++] = str(lib, r, 1);
        if (atoi(str(lib, r, 0)) > max_layer) max_layer = atoi(str(lib, r, 0));
    }
    FILE *f = open_in(p->dir, "library_kl", "tsv", err);
    if (!f) return -1;
    fprintf(f, "layer\tvariant_index\tvariant\tkl\n");
    for (int r = 0; r < lib->nrow; r++) {
        int k = 0;
        while (k < nv && strcmp(var[k], str(lib, r, 1))) k++;
        double kl = num(lib, r, 3);
        fprintf(f, "%s\t%d\t%s\t%.6g\n", str(lib, r, 0), k, str(lib, r, 1), kl > 1e-4 ? kl : 1e-4);
    }
    fclose(f);
    if (!(f = open_in(p->dir, "library_kl", "gp", err))) return -1;
    int h = 200 + 26 * nv;
    gp_head(f, "library_kl", 1100, h);
    fprintf(f, "set title \"Replace-1-block KL(parent || child) of every library block\\n(nats/token, log colour "
               "scale; the parent's own variants drawn at 1e-4; blank: not in the library)\"\n");
    fprintf(f, "set xlabel \"layer\"\nset xrange [-0.5:%d.5]\nset yrange [-0.5:%d.5] reverse\nset xtics 1 out\n",
            max_layer, nv - 1);
    fprintf(f, "set ytics (");
    for (int k = 0; k < nv; k++) fprintf(f, "%s\"%s\" %d", k ? ", " : "", var[k], k);
    fprintf(f, ") out\nset logscale cb\nset cblabel \"KL (nats/token)\"\nset format cb \"%%.0e\"\n");
    fprintf(f, "set palette defined (0 \"#f7fbff\", 1 \"#6baed6\", 2 \"#fd8d3c\", 3 \"#7f0000\")\n");
    fprintf(f, "set key off\nset lmargin 22\n");
    fprintf(f, "plot \"library_kl.tsv\" skip 1 using 1:2:(0.5):(0.5):4 with boxxyerror fill solid 1.0 noborder "
               "lc palette notitle\n");
    gp_tail(f, "library_kl", 1100, h);
    fclose(f);
    fprintf(md, "Each cell: the KL divergence of the parent's next-token distribution from that of the parent "
                "with only this block replaced, on the scoring windows (`puzzle score`). Darker is worse.\n\n");
    picture(md, p, "library_kl", "library heat map");
    return 0;
}

static int section_tradeoff(FILE *md, plots *p, const table *sols, const table *ev, char *err) {
    fprintf(md, "## Speed-up against KL\n\n");
    if (!sols->nrow && !ev->nrow) {
        fprintf(md, "No searches yet (`puzzle search`).\n\n");
        return 0;
    }
    FILE *f = open_in(p->dir, "tradeoff", "tsv", err);
    if (!f) return -1;
    // Block 0..m-1: each method's predicted points; the last block: measured models.
    // one series per method and budget (predicted speed-ups of different budgets do not compare)
    char meth[32][160];
    int nm = 0;
    for (int r = 0; r < sols->nrow; r++) {
        char g[160];
        snprintf(g, sizeof g, "%s, %s", str(sols, r, 1), str(sols, r, 2));
        int k = 0;
        while (k < nm && strcmp(meth[k], g)) k++;
        if (k == nm && nm < 32) snprintf(meth[nm++], sizeof meth[0], "%s", g);
    }
    for (int k = 0; k < nm; k++) {
        fprintf(f, "speedup\tkl\tsolution\n");
        for (int r = 0; r < sols->nrow; r++) {
            char g[160];
            snprintf(g, sizeof g, "%s, %s", str(sols, r, 1), str(sols, r, 2));
            if (!strcmp(g, meth[k]) && !isnan(num(sols, r, 5)))
                fprintf(f, "%.6g\t%.6g\t%s\n", num(sols, r, 5), num(sols, r, 6), str(sols, r, 0));
        }
        fprintf(f, "\n\n");
    }
    fprintf(f, "speedup\tkl\tlabel\n");
    int nmeas = 0;
    for (int r = 0; r < ev->nrow; r++)
        if (!isnan(num(ev, r, 16)) && !isnan(num(ev, r, 12))) {
            fprintf(f, "%.6g\t%.6g\t%s\n", num(ev, r, 16), num(ev, r, 12), str(ev, r, 2));
            nmeas++;
        }
    fclose(f);
    if (!(f = open_in(p->dir, "tradeoff", "gp", err))) return -1;
    gp_head(f, "tradeoff", 1000, 600);
    fprintf(f, "set title \"Decode speed-up against KL to the parent\\n(circles and squares: searches, predicted; "
               "triangles: evaluated models, measured)\"\n");
    fprintf(f, "set xlabel \"decode speed-up over the parent (x)\"\nset ylabel \"KL(parent || model) (nats/token)\"\n");
    fprintf(f, "set grid\nset key below\nset offsets 0.05, 0.05, 0.05, 0.05\n");
    fprintf(f, "plot ");
    int first = 1;
    for (int k = 0; k < nm; k++) {
        fprintf(f, "%s\"tradeoff.tsv\" index %d skip 1 using 1:2 with points pt %d ps 1.6 lw 2 title \"%s (predicted: "
                   "summed block KL)\"",
                first ? "" : ", \\\n     ", k, !strncmp(meth[k], "mip,", 4) ? 7 : 4 + 2 * (k % 4), meth[k]);
        first = 0;
    }
    if (nmeas) {
        fprintf(f, "%s\"tradeoff.tsv\" index %d skip 1 using 1:2 with points pt 9 ps 2 lc rgb \"black\" "
                   "title \"evaluated (measured speed-up and KL)\", \\\n     "
                   "\"\" index %d skip 1 using 1:2:3 with labels offset 1,0.8 left notitle",
                first ? "" : ", \\\n     ", nm, nm);
        first = 0;
    }
    fprintf(f, "\n");
    gp_tail(f, "tradeoff", 1000, 600);
    fclose(f);
    fprintf(md, "Predicted points: each search's best solution, at its predicted speed-up and the sum of its "
                "blocks' replace-1-block KL (what the MIP minimizes). Measured points: the evaluated models "
                "at their measured decode speed-up and their KL on the held-out text.\n\n");
    picture(md, p, "tradeoff", "speed-up against KL");
    fprintf(md, "| solution | method | budget | scenario | target | predicted speed-up | summed block KL | params (M) "
                "| sub-blocks changed |\n|--:|---|---|---|--:|--:|--:|--:|--:|\n");
    for (int r = 0; r < sols->nrow; r++) {
        fprintf(md, "| %s | %s | %s | %s |", str(sols, r, 0), str(sols, r, 1), str(sols, r, 2), str(sols, r, 3));
        md_num(md, num(sols, r, 4), "%.3gx");
        md_num(md, num(sols, r, 5), "%.3fx");
        md_num(md, num(sols, r, 6), "%.4f");
        md_num(md, num(sols, r, 7), "%.1f");
        fprintf(md, " %s |\n", str(sols, r, 8));
    }
    fprintf(md, "\n");
    return 0;
}

// A half's label and its size relative to the parent's (colour): noop 0, linear 0.1.
static void half(const char *kind, double size, double parent, char *label, size_t cap, double *rel, int attn) {
    if (!strcmp(kind, "noop")) snprintf(label, cap, "-"), *rel = 0;
    else if (!strcmp(kind, "linear")) snprintf(label, cap, "lin"), *rel = 0.1;
    else {
        snprintf(label, cap, attn ? "kv%.0f" : "%.0f", size);
        *rel = parent > 0 ? size / parent : 1;
    }
}

static int section_arch(FILE *md, plots *p, pz_rundb *db, long sol, char *err) {
    fprintf(md, "## The chosen architecture, layer by layer\n\n");
    if (sol <= 0) {
        fprintf(md, "No solution yet (`puzzle search`).\n\n");
        return 0;
    }
    table t;
    if (load_set(db, "architecture", sol, &t, err)) return -1;
    FILE *f = open_in(p->dir, "architecture", "tsv", err);
    if (!f) {
        table_free(&t);
        return -1;
    }
    fprintf(f, "layer\trow\trelative\tlabel\n");
    for (int r = 0; r < t.nrow; r++) {
        char la[32], lf[32];
        double ra, rf;
        half(str(&t, r, 1), num(&t, r, 2), num(&t, r, 7), la, sizeof la, &ra, 1);
        half(str(&t, r, 3), num(&t, r, 4), num(&t, r, 8), lf, sizeof lf, &rf, 0);
        fprintf(f, "%s\t1\t%.4f\t%s\n%s\t0\t%.4f\t%s\n", str(&t, r, 0), ra, la, str(&t, r, 0), rf, lf);
    }
    fclose(f);
    if (!(f = open_in(p->dir, "architecture", "gp", err))) {
        table_free(&t);
        return -1;
    }
    int w = 260 + 34 * (t.nrow > 0 ? t.nrow : 1);
    gp_head(f, "architecture", w < 900 ? 900 : w, 340);
    fprintf(f, "set title \"Solution %ld, layer by layer\\n(attention: kvN = N KV heads, lin = linear, - = removed; "
               "FFN: width; colour: size / the parent's)\"\n", sol);
    fprintf(f, "set xlabel \"layer\"\nset xrange [-0.5:%d.5]\nset yrange [-0.5:1.5]\n", t.nrow - 1);
    fprintf(f, "set ytics (\"FFN\" 0, \"attention\" 1)\nset xtics 1 out\nset cbrange [0:1]\n");
    fprintf(f, "set cblabel \"size / parent's\"\nset palette defined (0 \"#d9d9d9\", 0.1 \"#fdd0a2\", 0.5 \"#fd8d3c\", "
               "1 \"#2171b5\")\nset key off\n");
    fprintf(f, "plot \"architecture.tsv\" skip 1 using 1:2:(0.46):(0.42):3 with boxxyerror fill solid 1.0 lc palette "
               "notitle, \\\n     \"\" skip 1 using 1:2:4 with labels font \",8\" notitle\n");
    gp_tail(f, "architecture", w < 900 ? 900 : w, 340);
    fclose(f);
    picture(md, p, "architecture", "architecture");
    fprintf(md, "| layer | attention | FFN |\n|--:|---|---|\n");
    for (int r = 0; r < t.nrow; r++) fprintf(md, "| %s | %s | %s |\n", str(&t, r, 0), str(&t, r, 5), str(&t, r, 6));
    fprintf(md, "\n");
    table_free(&t);
    return 0;
}

static int section_distill(FILE *md, plots *p, pz_rundb *db, char *err) {
    fprintf(md, "## Distillation\n\n");
    table runs;
    if (load_set(db, "distill_runs", 0, &runs, err)) return -1;
    if (!runs.nrow) {
        fprintf(md, "No distillation runs recorded (`puzzle distill ... --db RUN.db`).\n\n");
        table_free(&runs);
        return 0;
    }
    FILE *f = open_in(p->dir, "distill_loss", "tsv", err);
    if (!f) {
        table_free(&runs);
        return -1;
    }
    for (int r = 0; r < runs.nrow; r++) {
        table c;
        if (load_set(db, "distill_curve", atol(str(&runs, r, 0)), &c, err)) {
            fclose(f);
            table_free(&runs);
            return -1;
        }
        fprintf(f, "step\ttokens\tloss\tcos_loss\tkl\tlr\n");
        for (int i = 0; i < c.nrow; i++)
            fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", str(&c, i, 0), str(&c, i, 1), str(&c, i, 2), str(&c, i, 3),
                    str(&c, i, 4), str(&c, i, 5));
        fprintf(f, "\n\n");
        table_free(&c);
    }
    fclose(f);
    if (!(f = open_in(p->dir, "distill_loss", "gp", err))) {
        table_free(&runs);
        return -1;
    }
    gp_head(f, "distill_loss", 1000, 560);
    fprintf(f, "set title \"Global distillation: loss per training token seen\"\n");
    fprintf(f, "set xlabel \"training tokens\"\nset ylabel \"loss per token (nats for KL; sum over layers of 1 - cos)\"\n");
    fprintf(f, "set grid\nset key below\nplot ");
    for (int r = 0; r < runs.nrow; r++) {
        const char *name = strrchr(str(&runs, r, 1), '/');
        name = name ? name + 1 : str(&runs, r, 1);
        fprintf(f, "%s\"distill_loss.tsv\" index %d skip 1 using 2:3 with lines lw 2 title \"%s: total\", \\\n"
                   "     \"\" index %d skip 1 using 2:4 with lines dt 2 title \"%s: sum over layers (1 - cos)\", \\\n"
                   "     \"\" index %d skip 1 using 2:5 with lines dt 3 title \"%s: KL(parent || child)\"",
                r ? ", \\\n     " : "", r, name, r, name, r, name);
    }
    fprintf(f, "\n");
    gp_tail(f, "distill_loss", 1000, 560);
    fclose(f);
    picture(md, p, "distill_loss", "distillation loss");
    fprintf(md, "| run | output | status | steps | tokens | peak lr | loss: cos, KL, LM weights; KL temperature "
                "| window x windows/step | first loss | last loss | wall s | tokens/s |\n"
                "|--:|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|\n");
    for (int r = 0; r < runs.nrow; r++) {
        fprintf(md, "| %s |", str(&runs, r, 0));
        md_text(md, str(&runs, r, 1), 80);
        fprintf(md, " %s | %s/%s | %s |", str(&runs, r, 3), str(&runs, r, 4), str(&runs, r, 5), str(&runs, r, 6));
        md_num(md, num(&runs, r, 7), "%.3g");
        if (isnan(num(&runs, r, 14)))  // recorded before schema 10
            fprintf(md, " not recorded |");
        else
            fprintf(md, " %.3g, %.3g, %.3g; τ %.3g |", num(&runs, r, 14), num(&runs, r, 15), num(&runs, r, 16),
                    num(&runs, r, 17));
        fprintf(md, " %s x %s |", str(&runs, r, 8), str(&runs, r, 9));
        md_num(md, num(&runs, r, 10), "%.4f");
        md_num(md, num(&runs, r, 11), "%.4f");
        md_num(md, num(&runs, r, 12), "%.0f");
        md_num(md, num(&runs, r, 13), "%.0f");
        fprintf(md, "\n");
    }
    fprintf(md, "\n");
    table_free(&runs);
    return 0;
}

static int section_chat(FILE *md, const table *c, int show) {
    fprintf(md, "## Chat replies side by side\n\n");
    if (!c->nrow) {
        fprintf(md, "No chat evaluations yet (`puzzle eval ... --chat FILE --db RUN.db`).\n\n");
        return 0;
    }
    fprintf(md, "Greedy replies (at most the evaluation's --chat-tokens tokens) to the first %d prompts; "
                "log-lik = the parent's mean log-likelihood of the reply (nats/token).\n\n", show);
    int shown = 0;
    for (int r = 0; r < c->nrow;) {
        const char *idx = str(c, r, 0);
        if (shown++ < show) {
            fprintf(md, "**Prompt %d:** ", atoi(idx) + 1);
            for (const char *s = str(c, r, 1); *s; s++) fputc(*s == '\n' ? ' ' : *s, md);
            fprintf(md, "\n\n| model | reply | log-lik | top-1 along the parent's reply |\n|---|---|--:|--:|\n");
        }
        for (; r < c->nrow && !strcmp(str(c, r, 0), idx); r++) {
            if (shown > show) continue;
            fprintf(md, "|");
            md_text(md, str(c, r, 2), 40);
            md_text(md, str(c, r, 3), 400);
            md_num(md, num(c, r, 4), "%.3f");
            md_num(md, num(c, r, 5), "%.3f");
            fprintf(md, "\n");
        }
        if (shown <= show) fprintf(md, "\n");
    }
    return 0;
}

int pz_cmd_report(int argc, char **argv) {
    const char *cmd = "report", *db_path = NULL, *out = NULL, *gp = NULL;
    long sol = 0, show = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--db")) {
            if (!(db_path = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--out")) {
            if (!(out = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--gnuplot")) {
            if (!(gp = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--solution")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1L << 40, &sol))
                return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--chat")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1000, &show)) return PZ_EXIT_USAGE;
        } else {
            fprintf(stderr, "puzzle report: unknown %s '%s'\n", a[0] == '-' ? "option" : "argument", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!db_path || !out) {
        fprintf(stderr, "puzzle report: %s is missing (see puzzle report --help)\n", !db_path ? "--db RUN.db" : "--out DIR");
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN] = "";
    int rc = PZ_EXIT_FAIL;
    FILE *md = NULL;
    table facts = {0}, ev = {0}, lib = {0}, sols = {0}, chat = {0}, chosen = {0};
    pz_rundb *db = pz_rundb_open(db_path, 0, err);
    if (!db) goto fail;
    if (mkdir(out, 0755) != 0 && !pz_is_dir(out)) {
        pz_err(err, "cannot create %s: %s", out, strerror(errno));
        goto fail;
    }
    if (!gp) gp = getenv("GNUPLOT");
    if (!gp || !*gp) gp = "gnuplot";
    plots p = {out, gnuplot_works(gp) ? gp : NULL, 0, 0};
    if (!p.gnuplot)
        fprintf(stderr, "puzzle report: gnuplot (%s) not found: writing the report without pictures (install it: "
                        "apt-get install gnuplot-nox)\n", gp);
    if (load_set(db, "run_facts", 0, &facts, err) || load_set(db, "evals", 0, &ev, err) ||
        load_set(db, "library_kl", 0, &lib, err) || load_set(db, "solutions", 0, &sols, err) ||
        load_set(db, "chat", 0, &chat, err) || load_set(db, "chosen_solution", 0, &chosen, err))
        goto fail;
    if (!sol && chosen.nrow) sol = atol(str(&chosen, 0, 0));
    if (!(md = open_in(out, "report", "md", err))) goto fail;
    fprintf(md, "# Puzzle run report\n\n");
    if (facts.nrow)
        fprintf(md, "Run database `%s`; parent `%s`; %s library blocks (%s trained or evaluated), %s scores, %s "
                    "searches, %s evaluations.%s%s\n\n",
                db_path, str(&facts, 0, 0), str(&facts, 0, 1), str(&facts, 0, 2), str(&facts, 0, 3),
                str(&facts, 0, 4), str(&facts, 0, 5), cell(&facts, 0, 6) ? " Stages of `puzzle run` (wall time): " : "",
                str(&facts, 0, 6));
    if (!p.gnuplot) fprintf(md, "*gnuplot was not found when this report was written: no pictures.*\n\n");
    if (section_evals(md, &ev) || section_library(md, &p, &lib, err) || section_tradeoff(md, &p, &sols, &ev, err) ||
        section_arch(md, &p, db, sol, err) || section_distill(md, &p, db, err) || section_chat(md, &chat, (int)show))
        goto fail;
    if (fclose(md)) {
        md = NULL;
        pz_err(err, "writing %s/report.md failed", out);
        goto fail;
    }
    md = NULL;
    printf("report: %s/report.md (%d pictures%s)\n", out, p.drawn,
           p.gnuplot ? (p.failed ? ", some failed" : "") : "; gnuplot not found");
    rc = p.failed ? PZ_EXIT_FAIL : PZ_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "puzzle report: %s\n", err);
done:
    if (md) fclose(md);
    table_free(&facts);
    table_free(&ev);
    table_free(&lib);
    table_free(&sols);
    table_free(&chat);
    table_free(&chosen);
    pz_rundb_close(db);
    return rc;
}
