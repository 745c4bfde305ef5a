/*
 * rpc_floor — the floor under Kreide's RPC: bare nng REQ/REP round trips.
 *
 *   rpc_floor URL SECONDS IN_FLIGHT WORKERS [BYTES]
 *
 * One process, two sockets: a REP socket served by WORKERS threads (each an
 * nng context echoing what it receives, as Kreide's RPC server does without
 * decoding anything) and a REQ socket with IN_FLIGHT contexts that resend as
 * soon as their reply arrives (as the gateway does under load). Prints the
 * round trips per second. `make bench` runs it beside the gateway so the RPC
 * route's cost can be read against what nng itself allows on the machine.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static nng_socket rep, req;
static atomic_long done;
static atomic_int stop;
static size_t bytes = 200;

typedef struct {
    nng_ctx ctx;
    nng_aio *aio;
    int sending;
} client;

static void client_cb(void *arg)
{
    client *c = arg;
    if (nng_aio_result(c->aio) != 0 || atomic_load(&stop))
        return;
    if (c->sending) {
        c->sending = 0;
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    nng_msg_free(nng_aio_get_msg(c->aio));
    atomic_fetch_add(&done, 1);
    nng_msg *m;
    if (nng_msg_alloc(&m, bytes) != 0)
        return;
    c->sending = 1;
    nng_aio_set_msg(c->aio, m);
    nng_ctx_send(c->ctx, c->aio);
}

static void *server(void *arg)
{
    (void)arg;
    nng_ctx ctx;
    nng_aio *aio;
    if (nng_ctx_open(&ctx, rep) != 0 || nng_aio_alloc(&aio, NULL, NULL) != 0)
        return NULL;
    for (;;) {
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0)
            break;
        nng_ctx_send(ctx, aio); /* echo the same message */
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0) {
            nng_msg_free(nng_aio_get_msg(aio));
            break;
        }
    }
    nng_aio_free(aio);
    return NULL;
}

/* A decimal argument in [min, max]; exits with usage on anything else. */
static int number(const char *s, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "rpc_floor: '%s' is not a number from %ld to %ld\n", s, min, max);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: rpc_floor URL SECONDS IN_FLIGHT WORKERS [BYTES]\n");
        return 2;
    }
    const char *url = argv[1];
    int secs = number(argv[2], 1, 3600), inflight = number(argv[3], 1, 4096), workers = number(argv[4], 1, 256);
    if (argc > 5)
        bytes = (size_t)number(argv[5], 0, 1 << 20);
    int rv;
    if ((rv = nng_rep0_open(&rep)) != 0 || (rv = nng_listen(rep, url, NULL, 0)) != 0 || (rv = nng_req0_open(&req)) != 0 ||
        (rv = nng_dial(req, url, NULL, 0)) != 0) {
        fprintf(stderr, "rpc_floor: %s\n", nng_strerror(rv));
        return 1;
    }
    pthread_t *th = calloc((size_t)workers, sizeof(*th));
    for (int i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, server, NULL);
    client *cl = calloc((size_t)inflight, sizeof(*cl));
    for (int i = 0; i < inflight; i++) {
        nng_ctx_open(&cl[i].ctx, req);
        nng_aio_alloc(&cl[i].aio, client_cb, &cl[i]);
        nng_msg *m;
        nng_msg_alloc(&m, bytes);
        cl[i].sending = 1;
        nng_aio_set_msg(cl[i].aio, m);
        nng_ctx_send(cl[i].ctx, cl[i].aio);
    }
    struct timespec half = {.tv_sec = 0, .tv_nsec = 500000000};
    nanosleep(&half, NULL); /* warm-up */
    long start = atomic_load(&done);
    struct timespec t = {.tv_sec = secs, .tv_nsec = 0};
    nanosleep(&t, NULL);
    long n = atomic_load(&done) - start;
    atomic_store(&stop, 1);
    printf("%.1f\n", (double)n / secs);
    fflush(stdout);
    /* Sockets and threads end with the process. */
    _exit(0);
}
