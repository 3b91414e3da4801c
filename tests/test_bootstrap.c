// test_bootstrap.c — the id hand-over that starts multi-process NCCL jobs
// (kernels/bootstrap.h), with real processes on this machine: three ranks
// by a shared file and by TCP on loopback each receive rank 0's blob; a
// stale file, a malformed spec and an absent rank 0 fail with a message
// within their timeout.
#include "bootstrap.h"
#include "backend.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static char err[PZ_ERRLEN];

// A port the kernel says is free now (bound to port 0, then released).
static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0) close(s);
    return port;
}

// Runs `size` ranks as processes; each non-zero rank exits 0 iff it got
// rank 0's blob. Returns the number of ranks that failed.
static int run_ranks(const char *spec, int size) {
    unsigned char blob[128];
    for (int i = 0; i < 128; i++) blob[i] = (unsigned char)(i * 37 + 11);
    pid_t kids[8];
    for (int r = 1; r < size; r++) {
        kids[r] = fork();
        if (kids[r] == 0) {
            unsigned char got[128] = {0};
            char e[PZ_ERRLEN];
            int rc = pz_bootstrap_exchange(spec, r, size, got, sizeof got, 20, e);
            if (rc) fprintf(stderr, "rank %d: %s\n", r, e);
            _exit(rc == 0 && memcmp(got, blob, sizeof blob) == 0 ? 0 : 1);
        }
    }
    int bad = 0;
    if (pz_bootstrap_exchange(spec, 0, size, blob, sizeof blob, 20, err)) {
        fprintf(stderr, "rank 0: %s\n", err);
        bad++;
    }
    for (int r = 1; r < size; r++) {
        int st = 0;
        waitpid(kids[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
    }
    return bad;
}

int main(void) {
    char *dir = pz_test_tmpdir("bootstrap");
    char spec[1024];
    snprintf(spec, sizeof spec, "file:%s/nccl.id", dir);
    CHECK(run_ranks(spec, 3) == 0);
    // The same path again is stale: rank 0 refuses it.
    unsigned char blob[16] = {1};
    CHECK(pz_bootstrap_exchange(spec, 0, 2, blob, sizeof blob, 1, err) == -1 && strstr(err, "must not exist"));

    int port = free_port();
    CHECK(port > 0);
    snprintf(spec, sizeof spec, "tcp:127.0.0.1:%d", port);
    CHECK(run_ranks(spec, 4) == 0);

    CHECK(pz_bootstrap_exchange("ftp:x", 1, 2, blob, sizeof blob, 1, err) == -1 && strstr(err, "neither"));
    CHECK(pz_bootstrap_exchange("tcp:nohostport", 1, 2, blob, sizeof blob, 1, err) == -1);
    snprintf(spec, sizeof spec, "file:%s/never.id", dir);
    CHECK(pz_bootstrap_exchange(spec, 1, 2, blob, sizeof blob, 0.3, err) == -1 && strstr(err, "found no"));
    CHECK(pz_bootstrap_exchange(spec, 0, 1, blob, sizeof blob, 0.3, err) == 0);  // one rank: nothing to do

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(dir);
    return pz_test_finish("test_bootstrap");
}
