// cmd_merge_db.c — `puzzle merge-db --db OUT.db IN1.db IN2.db ...`: combines
// the run databases of `build-library --shard I/N` workers (or of any runs
// of one parent and one search space) into one.
//
// Files are copied, not referenced: each block file goes to
// OUT.blocks/ID.safetensors (a hard link when on the same file system, else
// a copy; temporary name, then rename), so the merged run stands alone and
// the inputs can be deleted. Rows are copied block by block, each in one
// transaction after its file is in place, so a killed merge resumes.
// Only finished blocks whose file matches its sha256 are taken; a block
// already done in OUT with a valid file is kept (same sha256: nothing to
// do, which makes a repeated merge a no-op; another sha256: a conflict,
// reported, and OUT's is kept). Blocks still pending in an input are added
// as pending. Scores (`puzzle score`) come along for the blocks whose
// weights OUT now holds, and profiles (`puzzle profile`) with their
// hardware rows. Inputs of another parent or search space are
// refused before anything is written.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "rundb.h"
#include "weights.h"

#define CMD "merge-db"

void pz_usage_merge_db(FILE *out) {
    fprintf(out,
            "usage: puzzle merge-db --db OUT.db IN1.db [IN2.db ...]\n\n"
            "Merges run databases of the same parent and search space (e.g. the shards of\n"
            "`puzzle build-library --shard I/N`) into OUT.db, which is created when missing.\n"
            "Block files are linked or copied into OUT.blocks/; finished blocks already in OUT.db\n"
            "are kept, so merging again changes nothing.\n\n"
            "  --db OUT.db   the merged database (required)\n");
}

typedef struct {
    int copied, present, conflicts, bad, pending;
} merge_counts;

// dst = src's bytes, through a temporary name: a hard link when possible,
// else a copy (fsync'ed). dst never exists partially.
static int place_file(const char *src, const char *dst, char *err) {
    char tmp[2500];
    snprintf(tmp, sizeof tmp, "%s.tmp.merge%d", dst, (int)getpid());
    unlink(tmp);
    if (link(src, tmp) != 0) {
        int in = open(src, O_RDONLY), out = in >= 0 ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
        int ok = in >= 0 && out >= 0;
        char buf[1 << 16];
        ssize_t r;
        while (ok && (r = read(in, buf, sizeof buf)) != 0) ok = r > 0 && write(out, buf, (size_t)r) == r;
        ok = ok && fsync(out) == 0;
        int e = errno;
        if (in >= 0) close(in);
        if (out >= 0 && close(out) != 0) ok = 0;
        if (!ok) {
            unlink(tmp);
            return pz_err(err, "cannot copy %s to %s: %s", src, tmp, strerror(e));
        }
    }
    if (rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return pz_err(err, "cannot rename %s: %s", tmp, strerror(e));
    }
    return 0;
}

// 1 when the file of a row (rel to db) exists with that sha256.
static int file_matches(pz_rundb *db, const char *rel, const char *sha) {
    char path[2100], hex[65], e[PZ_ERRLEN];
    pz_rundb_resolve(db, rel, path, sizeof path);
    return pz_file_exists(path) && pz_sha256_file(path, hex, e) == 0 && strcmp(hex, sha) == 0;
}

// 0 when in has the parent and search space of ref (-1 with err when not).
static int same_identity(pz_rundb *ref, pz_rundb *in, const char *in_path, char *err) {
    pz_rundb_model pr, pi;
    char *sr = NULL, *si = NULL;
    int rc = -1, fr = pz_rundb_get_parent(ref, &pr, err), fi = fr < 0 ? -1 : pz_rundb_get_parent(in, &pi, err);
    int gr = fi < 0 ? -1 : pz_rundb_get_space(ref, &sr, err), gi = gr < 0 ? -1 : pz_rundb_get_space(in, &si, err);
    if (gi < 0) goto out;
    if (fi == 0 || gi == 0) pz_err(err, "%s has no parent model or search space: not a build-library database", in_path);
    else if (fr == 0 || gr == 0) rc = 0;  // an empty output: anything goes
    else if (strcmp(pr.identity, pi.identity) || strcmp(pr.config_hash, pi.config_hash))
        pz_err(err, "%s is for parent %s (%.19s...) but %s is for %s (%.19s...)", in_path, pi.path, pi.identity,
               pz_rundb_path(ref), pr.path, pr.identity);
    else if (strcmp(sr, si)) pz_err(err, "%s has another search space than %s", in_path, pz_rundb_path(ref));
    else rc = 0;
out:
    free(sr);
    free(si);
    return rc;
}

// Checks every input against the output (or, when the output is new,
// against the first input) before anything is written.
// out NULL: the output does not exist yet.
static int check_inputs(pz_rundb *out, const char **ins, int n_in, char *err) {
    pz_rundb_model pm;
    int has = out ? pz_rundb_get_parent(out, &pm, err) : 0, rc = 0;
    if (has < 0) return -1;
    pz_rundb *first = NULL;
    for (int i = 0; i < n_in && rc == 0; i++) {
        pz_rundb *in = pz_rundb_open(ins[i], 0, err);
        if (!in) return pz_rundb_close(first), -1;
        rc = same_identity(has ? out : first ? first : in, in, ins[i], err);
        if (!first) first = in;
        else pz_rundb_close(in);
    }
    pz_rundb_close(first);
    return rc;
}

static int merge_block(pz_rundb *out, pz_rundb *in, const char *in_path, const pz_rundb_done_block *b,
                       merge_counts *k, char *err) {
    if (b->needs_training && (!b->weight_file[0] || !file_matches(in, b->weight_file, b->sha256))) {
        fprintf(stderr, "puzzle " CMD ": %s: %s's file is missing or does not match its sha256; skipped\n", in_path,
                b->block_id);
        k->bad++;
        return 0;
    }
    pz_rundb_block_state st;
    if (pz_rundb_get_block_state(out, b->block_id, &st, err)) return -1;
    int have = st.done && (!b->needs_training || (st.weight_file[0] && file_matches(out, st.weight_file, st.sha256)));
    if (have) {
        if (!b->needs_training || !strcmp(st.sha256, b->sha256)) k->present++;
        else {
            fprintf(stderr, "puzzle " CMD ": %s: %s differs from the one in %s (another training run); kept %s's\n",
                    in_path, b->block_id, pz_rundb_path(out), pz_rundb_path(out));
            k->conflicts++;
        }
        return 0;
    }
    char rel[1200], dst[2400];
    const char *row_file = NULL;
    if (b->needs_training) {
        char src[2100];
        pz_rundb_resolve(in, b->weight_file, src, sizeof src);
        pz_rundb_block_file(out, b->block_id, rel, sizeof rel, dst, sizeof dst);
        if (place_file(src, dst, err)) return -1;
        row_file = rel;
    }
    if (pz_rundb_copy_block(out, b->block_id, row_file, err)) return -1;
    k->copied++;
    return 0;
}

static int merge_one(pz_rundb *out, const char *in_path, char *err) {
    pz_rundb *in = pz_rundb_open(in_path, 0, err);
    pz_rundb_done_block *rows = NULL;
    int n = 0, rc = -1, attached = 0;
    merge_counts k = {0};
    pz_rundb_model pm;
    int has_parent = in ? pz_rundb_get_parent(out, &pm, err) : -1;
    if (has_parent < 0 || pz_rundb_list_done(in, &rows, &n, err) || pz_rundb_attach(out, in_path, err)) goto out;
    attached = 1;
    if (!has_parent && pz_rundb_copy_parent_space(out, err)) goto out;
    for (int i = 0; i < n; i++)
        if (merge_block(out, in, in_path, &rows[i], &k, err)) goto out;
    if ((k.pending = pz_rundb_copy_pending(out, err)) < 0) goto out;
    int n_scores = pz_rundb_copy_scores(out, err);
    if (n_scores < 0) goto out;
    int n_prof = pz_rundb_copy_profiles(out, err);
    if (n_prof < 0) goto out;
    fprintf(stderr, "%s: %d blocks copied, %d already present, %d conflicts, %d unusable, %d pending added, "
            "%d scores added, %d profiles added\n", in_path, k.copied, k.present, k.conflicts, k.bad, k.pending,
            n_scores, n_prof);
    pz_rundb_event(out, "merge-db", "merge", "%s: %d copied, %d present, %d conflicts, %d unusable, %d pending",
                   in_path, k.copied, k.present, k.conflicts, k.bad, k.pending);
    rc = 0;
out:
    if (attached) pz_rundb_detach(out);
    free(rows);
    pz_rundb_close(in);
    return rc;
}

int pz_cmd_merge_db(int argc, char **argv) {
    const char *out_path = NULL;
    const char **ins = calloc((size_t)argc, sizeof(char *));
    int n_in = 0;
    if (!ins) return PZ_EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db")) {
            if (!(out_path = pz_arg_value(CMD, argc, argv, &i))) goto usage;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "puzzle " CMD ": unknown option '%s'\n", argv[i]);
            goto usage;
        } else ins[n_in++] = argv[i];
    }
    if (!out_path || n_in == 0) {
        fprintf(stderr, "puzzle " CMD ": %s (see puzzle " CMD " --help)\n",
                !out_path ? "--db OUT.db is missing" : "no input database given");
        goto usage;
    }
    char err[PZ_ERRLEN] = "";
    int rc = PZ_EXIT_FAIL;
    pz_rundb *out = NULL;
    // Inputs must exist and differ from the output.
    char ro[PATH_MAX] = "", ri[PATH_MAX];
    for (int i = 0; i < n_in; i++) {
        if (!pz_file_exists(ins[i])) {
            pz_err(err, "%s: no such database", ins[i]);
            goto fail;
        }
    }
    if (realpath(out_path, ro))
        for (int i = 0; i < n_in; i++)
            if (realpath(ins[i], ri) && !strcmp(ri, ro)) {
                pz_err(err, "%s is the output database; it cannot also be an input", ins[i]);
                goto fail;
            }
    // A new output is created only once the inputs agree with each other.
    if (!pz_file_exists(out_path) && check_inputs(NULL, ins, n_in, err)) goto fail;
    if (!(out = pz_rundb_open(out_path, 1, err)) || pz_rundb_lock(out, err)) goto fail;
    if (check_inputs(out, ins, n_in, err)) goto fail;
    for (int i = 0; i < n_in; i++)
        if (merge_one(out, ins[i], err)) goto fail;
    rc = PZ_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "puzzle " CMD ": %s\n", err);
done:
    pz_rundb_close(out);
    free(ins);
    return rc;
usage:
    free(ins);
    return PZ_EXIT_USAGE;
}
