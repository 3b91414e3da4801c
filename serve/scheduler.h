// scheduler.h — the one engine loop of the server: a bounded queue of
// completion jobs, admission by free slots and KV pages, continuous batching
// (every running sequence's next token in one batched decode per step),
// chunked prefill (fixed-size chunks of the waiting prompts, up to one
// chunk's worth of tokens per step, all in one engine call beside the step's
// decode call), prefix reuse, n > 1 choices sharing one prefill (slot fork),
// sampling, stop strings and the response bytes (SSE chunks, or the whole
// JSON body). Only the loop thread touches the engine; HTTP threads submit
// jobs and read their output through this interface.
//
// Memory: when the pool cannot hold the next token of every running
// sequence, the youngest request is preempted (its slots are reset, its
// full pages stay in the prefix cache) and goes back to the head of the
// queue; on readmission it recomputes its prompt and the tokens it had
// generated (mostly from the prefix cache) and continues where it was, with
// the same sampler state. A request that alone cannot grow finishes with
// finish_reason "length".
#ifndef PZ_SERVE_SCHEDULER_H
#define PZ_SERVE_SCHEDULER_H

#include <stdint.h>

#include "engine.h"
#include "metrics.h"
#include "openai.h"
#include "tokenizer.h"

typedef struct pz_sched pz_sched;
typedef struct pz_job pz_job;

typedef struct {
    int max_queue;      // jobs waiting for admission, beyond those free slots will take at
                        // once, before submit refuses (503)
    int prefill_chunk;  // tokens per prefill call; chunks end at multiples of it (default 256)
    int separate_steps; // 1: decode rows and prompt chunks in two engine calls even where
                        // pz_engine_mixed_steps allows one (the old way, for comparisons)
} pz_sched_params;

// e, tok and m are borrowed and must outlive the scheduler; model_name is
// copied. Starts the loop thread. NULL with err on failure.
pz_sched *pz_sched_create(pz_engine *e, const pz_tokenizer *tok, pz_metrics *m, const char *model_name,
                          pz_sched_params p, char *err);
// Stops the loop: jobs still queued or running end with a 503 error, then
// the thread is joined and everything freed. Call it only once every job
// was released (jobs use the scheduler's lock): stop the HTTP side first.
void pz_sched_free(pz_sched *s);

// Queues a job. Takes over r's contents (r is zeroed) and copies ids
// (n_ids prompt tokens, BOS included). Returns the job (the caller holds one
// reference: pz_job_release), or NULL with e filled: 503 when the queue is
// full or the scheduler is closed, 400 when the prompt cannot fit.
pz_job *pz_sched_submit(pz_sched *s, pz_oai_request *r, const int32_t *ids, int n_ids, pz_oai_error *e);
// No job queued or running.
int pz_sched_idle(pz_sched *s);
// Refuse new jobs from now on (draining); with cancel, also end every job
// queued or running (their readers see the end at once).
void pz_sched_close(pz_sched *s, int cancel);

// Waits up to timeout_ms for output. Copies up to cap bytes of what the loop
// produced since the last read into buf and returns the count; *done is set
// once the job is finished and everything was read. *status is the HTTP
// status of a finished non-streaming job (200, or 500 on an engine error).
size_t pz_job_read(pz_job *j, char *buf, size_t cap, int timeout_ms, int *done, int *status);
// Bytes of output waiting (for sizing a non-streaming body).
size_t pz_job_pending(pz_job *j);
// The client went away: the loop frees the job's slots at its next step.
void pz_job_cancel(pz_job *j);
void pz_job_release(pz_job *j);
int pz_job_stream(const pz_job *j);

#endif
