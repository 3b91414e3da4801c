// rundb_impl.h — private to the run database's files (puzzle/rundb*.c): the
// handle's layout, transactions, and the one way every statement is run
// (prepare, bind by a type string, step, read columns, finalize). Nothing
// outside puzzle/rundb*.c includes this header or <sqlite3.h>; the commands
// call the typed functions of rundb.h.
#ifndef PZ_RUNDB_IMPL_H
#define PZ_RUNDB_IMPL_H

#include <sqlite3.h>
#include <stdint.h>

#include "rundb.h"

struct pz_rundb {
    sqlite3 *db;
    int lock_fd;            // flock on blocks_dir (pz_rundb_lock), or -1
    char path[1024];
    char dir[1024];         // the database's directory ("." when none)
    char blocks_dir[1600];  // RUN.blocks (as usable from the current directory)
    char cache_dir[1600];   // RUN.cache
    char base_name[512];    // "RUN" (file name without ".db")
};

// ---- statements ------------------------------------------------------------------------
// Parameters are bound from a type string, one letter per '?' in order:
//   'i' int, 'p' const int * (NULL binds NULL), 'l' long, 'k' long key (0
//   or less binds NULL), 'L' int64_t, 'd' double (NAN binds NULL, as SQLite
//   stores it anyway), 't' const char * (NULL binds NULL; copied), '-' NULL
//   (takes no argument).
// The count must match the statement's. rundb_prepare with types "" binds
// nothing: a statement run once per row binds each row with rundb_rebind.
// Errors fill err (may be NULL) with SQLite's message and the caller's file
// and line, and return -1; the statement is finalized by rundb_done even
// after a failure.
typedef struct {
    pz_rundb *db;
    sqlite3_stmt *st;
    char *err;
    const char *file;  // the caller, for messages
    int line;
} rundb_stmt;

int rundb_prepare_at(pz_rundb *db, rundb_stmt *q, char *err, const char *file, int line, const char *sql,
                     const char *types, ...);
#define rundb_prepare(db, q, err, sql, ...) rundb_prepare_at((db), (q), (err), __FILE__, __LINE__, (sql), __VA_ARGS__)
// Resets q and binds a new set of parameters (for a statement run per row).
int rundb_rebind(rundb_stmt *q, const char *types, ...);
// 1: a row is ready; 0: done; -1: error.
int rundb_step(rundb_stmt *q);
// Finalizes (safe on a statement never prepared or already done).
void rundb_done(rundb_stmt *q);

// Columns of the current row (0-based). NULL reads as "" / 0 / NAN.
const char *rundb_text(rundb_stmt *q, int i);
void rundb_copy(rundb_stmt *q, int i, char *dst, size_t cap);  // truncating, always terminated
int rundb_int(rundb_stmt *q, int i);
int64_t rundb_int64(rundb_stmt *q, int i);
double rundb_double(rundb_stmt *q, int i);
int rundb_is_null(rundb_stmt *q, int i);

// One statement run to its end (prepare, bind, step until done, finalize):
// the number of rows it changed, or -1.
int rundb_exec_at(pz_rundb *db, char *err, const char *file, int line, const char *sql, const char *types, ...);
#define rundb_exec(db, err, sql, ...) rundb_exec_at((db), (err), __FILE__, __LINE__, (sql), __VA_ARGS__)
// A script of statements without parameters (schema, pragmas): 0 or -1.
int rundb_script(pz_rundb *db, const char *sql, char *err);
// The rowid of the last INSERT on this connection.
int64_t rundb_last_id(pz_rundb *db);

// ---- transactions ------------------------------------------------------------------------
int rundb_begin(pz_rundb *db, char *err);   // BEGIN IMMEDIATE
int rundb_commit(pz_rundb *db, char *err);
void rundb_rollback(pz_rundb *db);          // safe when no transaction is open
// Commits when rc == 0, else rolls back; returns 0 or -1 (for `return rundb_end(db, rc, err);`).
int rundb_end(pz_rundb *db, int rc, char *err);

// ---- shared by the stage files ----------------------------------------------------------------
void rundb_sha256_hex(const void *data, size_t n, char hex[65]);
const char *rundb_sub_name(pz_sub_kind s);   // "attn", "ffn", "pair"
int rundb_sub_parse(const char *s);          // the inverse (anything else: PZ_SUB_PAIR)
// A blocks row's half (kind name, size) as a variant: kind -1 when the row
// has no such half (name NULL/""), 0 and *v set, or -1 for an unknown name.
int rundb_variant(int attn_half, const char *kind, int size, pz_variant *v);
// A finished block from the RUNDB_DONE_COLS columns starting at first
// (blocks aliased b): 0, or -1 for an unknown variant kind.
#define RUNDB_DONE_COLS                                                                                \
    "b.block_id, b.layer, b.sub, b.attn_kind, b.attn_size, b.ffn_kind, b.ffn_size, b.is_parent, " \
    "b.needs_training, b.weight_file, b.sha256"
#define RUNDB_DONE_NCOLS 11
int rundb_read_done(rundb_stmt *q, int first, pz_rundb_done_block *b, char *err);
// Grows *arr (of elem bytes) to hold n + 1 elements: 0 or -1 (err filled).
int rundb_grow(void **arr, int n, int *cap, size_t elem, char *err);
// Finishes a statement whose rows filled the grown array *rows (*n of
// them): on failure (rc < 0) frees the array and empties it. 0 or -1.
int rundb_list_done(rundb_stmt *q, int rc, void **rows, int *n);

#endif
