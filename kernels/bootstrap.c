// bootstrap.c — see bootstrap.h.
#include "bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"  // PZ_ERRLEN

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void nap(void) {
    struct timespec t = {0, 50 * 1000 * 1000};  // 50 ms
    nanosleep(&t, NULL);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w, n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r, n -= (size_t)r;
    }
    return 0;
}

static int by_file(const char *path, int rank, void *blob, size_t len, double timeout_s, char *err) {
    if (rank == 0) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);  // claim the fresh path
        if (fd < 0) {
            if (err) snprintf(err, PZ_ERRLEN, "bootstrap: cannot create %s (%s; it must not exist yet)",
                              path, strerror(errno));
            return -1;
        }
        close(fd);
        unlink(path);  // readers wait for the renamed, complete file
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write_all(fd, blob, len) || fsync(fd) || close(fd) || rename(tmp, path)) {
            if (err) snprintf(err, PZ_ERRLEN, "bootstrap: writing %s: %s", path, strerror(errno));
            if (fd >= 0) unlink(tmp);
            return -1;
        }
        return 0;
    }
    double t0 = now_s();
    for (;;) {
        struct stat st;
        if (stat(path, &st) == 0 && (size_t)st.st_size == len) {
            int fd = open(path, O_RDONLY);
            int rc = fd >= 0 ? read_all(fd, blob, len) : -1;
            if (fd >= 0) close(fd);
            if (rc == 0) return 0;
        }
        if (now_s() - t0 > timeout_s) {
            if (err) snprintf(err, PZ_ERRLEN, "bootstrap: rank %d found no %zu-byte %s after %.0f s",
                              rank, len, path, timeout_s);
            return -1;
        }
        nap();
    }
}

static int by_tcp(const char *hostport, int rank, int size, void *blob, size_t len, double timeout_s,
                  char *err) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host || !colon[1]) {
        if (err) snprintf(err, PZ_ERRLEN, "bootstrap: \"tcp:%s\" is not tcp:HOST:PORT", hostport);
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    const char *port = colon + 1;
    double t0 = now_s();
    if (rank == 0) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
        int g = getaddrinfo(NULL, port, &hints, &ai);
        if (g) {
            if (err) snprintf(err, PZ_ERRLEN, "bootstrap: port %s: %s", port, gai_strerror(g));
            return -1;
        }
        int s = socket(ai->ai_family, ai->ai_socktype, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rc = s < 0 || bind(s, ai->ai_addr, ai->ai_addrlen) || listen(s, size);
        freeaddrinfo(ai);
        if (rc) {
            if (err) snprintf(err, PZ_ERRLEN, "bootstrap: listening on port %s: %s", port, strerror(errno));
            if (s >= 0) close(s);
            return -1;
        }
        for (int served = 1; served < size;) {
            struct pollfd pf = {.fd = s, .events = POLLIN};
            int left_ms = (int)((timeout_s - (now_s() - t0)) * 1000);
            if (left_ms <= 0 || poll(&pf, 1, left_ms) <= 0) {
                if (err) snprintf(err, PZ_ERRLEN, "bootstrap: %d of %d ranks connected to port %s in %.0f s",
                                  served - 1, size - 1, port, timeout_s);
                close(s);
                return -1;
            }
            int c = accept(s, NULL, NULL);
            if (c < 0) continue;
            if (write_all(c, blob, len) == 0) served++;
            close(c);
        }
        close(s);
        return 0;
    }
    for (;;) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (getaddrinfo(host, port, &hints, &ai) == 0) {
            int s = socket(ai->ai_family, ai->ai_socktype, 0);
            int ok = s >= 0 && connect(s, ai->ai_addr, ai->ai_addrlen) == 0 && read_all(s, blob, len) == 0;
            if (s >= 0) close(s);
            freeaddrinfo(ai);
            if (ok) return 0;
        }
        if (now_s() - t0 > timeout_s) {
            if (err) snprintf(err, PZ_ERRLEN, "bootstrap: rank %d could not fetch the id from %s:%s in %.0f s",
                              rank, host, port, timeout_s);
            return -1;
        }
        nap();
    }
}

int pz_bootstrap_exchange(const char *spec, int rank, int size, void *blob, size_t len,
                          double timeout_s, char *err) {
    if (!spec || rank < 0 || rank >= size || !blob || !len) {
        if (err) snprintf(err, PZ_ERRLEN, "bootstrap: bad arguments (rank %d of %d)", rank, size);
        return -1;
    }
    if (size == 1) return 0;
    if (strncmp(spec, "file:", 5) == 0 && spec[5]) return by_file(spec + 5, rank, blob, len, timeout_s, err);
    if (strncmp(spec, "tcp:", 4) == 0) return by_tcp(spec + 4, rank, size, blob, len, timeout_s, err);
    if (err) snprintf(err, PZ_ERRLEN, "bootstrap: \"%s\" is neither file:PATH nor tcp:HOST:PORT", spec);
    return -1;
}
