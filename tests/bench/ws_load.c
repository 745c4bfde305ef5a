/*
 * ws_load — the load tool of the realtime benchmark: WebSockets (RFC 6455)
 * at the gateway's /api/v1/ws (docs/realtime.md) and messages sent over
 * plain HTTP, in one epoll loop.
 *
 *   ws_load room [options] HOST PORT ROOM_ID TOKENS_FILE
 *   ws_load idle [options] HOST PORT TOKENS_FILE
 *
 * room: one WebSocket per line of TOKENS_FILE (bearer tokens of the room's
 * members), each authenticated with its token. Once every socket got its
 * `ready` frame, the senders — keep-alive HTTP/1.1 connections, one request
 * in flight each, member i+1 of the file using token i mod the count —
 * POST /api/v1/rooms/ROOM_ID/messages as fast as they are answered, or at a
 * fixed total rate (-r). Each message's text carries its send time
 * (CLOCK_MONOTONIC nanoseconds), so a socket computes send→deliver latency
 * when the `event` frame arrives. At a fixed rate the send time is the
 * moment the message was due, not when a free sender took it, and a message
 * due within the seconds still goes when they are over (for at most -D
 * seconds more): a gateway that falls behind shows it in the latency
 * instead of in a lower rate.
 * After the last send the tool waits for every answer, then until every
 * socket has every message the API acknowledged (at most -D seconds), and
 * checks that each socket got each message exactly once, in position order.
 *
 *   -s N        sender connections (default 8)
 *   -r RATE     messages per second in total; 0 (default): as fast as the
 *               senders are answered
 *   -d SECONDS  measured duration (default 5)
 *   -w SECONDS  warm-up before it, the same load, not measured (default 1)
 *   -D SECONDS  the longest wait for deliveries after the last answer
 *               (default 10)
 *
 * Messages sent during the warm-up are checked like the others; latencies
 * and rates count the messages sent (or due, at a fixed rate) within the
 * measured seconds, and rates are over those seconds or, when messages due
 * in them went late, until the last of them went ("seconds"). Prints one
 * JSON object: sockets, senders, sent (acknowledged) and sent_per_s,
 * delivered and delivered_per_s (event frames of measured messages),
 * p50/p99/max send→deliver ms, the HTTP answer's p50/p99 ms, missing,
 * duplicate and out_of_order (summed over the sockets), gap frames, sockets
 * closed by the gateway, send errors, the tool's own CPU seconds and cores
 * in the measured seconds, and the first error. Exit status 1 when a send
 * failed or any of missing, duplicate, out_of_order or closed is not zero.
 *
 * idle: K WebSockets (-n, default 10000), the tokens of TOKENS_FILE taken in
 * turn, at most -c handshakes in flight (default 256). Once every socket got
 * `ready`, it waits -t seconds (default 2) for the gateway to settle and
 * prints one JSON object (connected, failed, seconds to connect them all);
 * then keeps the sockets open, answering pings, until SIGTERM or SIGINT (or
 * -H seconds, default 600) and prints a second object: how many were still
 * open and how many the gateway closed. Exit status 1 when a socket failed
 * to connect or was closed. `make bench` reads the gateway's memory between
 * the two.
 *
 * Loopback only: HOST must be an IPv4 address. The soft limit on open files
 * is raised to the hard one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SENDERS 256
#define TOKEN_MAX 8192
#define WS_IN_MAX (2 * 1024 * 1024) /* a frame larger than this is an error */
#define HTTP_IN_MAX (64 * 1024)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 section 1.3 */

enum kind { K_SOCKET, K_SENDER };

enum ws_state { WS_HANDSHAKE, WS_OPEN, WS_CLOSED };

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

/* One WebSocket. */
typedef struct {
    enum kind kind; /* first, so an epoll pointer tells what it is */
    int fd;
    enum ws_state state;
    const char *token;
    char accept[32];    /* the Sec-WebSocket-Accept the gateway must answer */
    buf in, out, msg;   /* bytes read, bytes to write, a fragmented message */
    size_t out_off;     /* written part of `out` */
    int msg_op;         /* opcode of the message being assembled */
    bool ready;         /* got its `ready` frame */
    long long last_pos; /* position of the newest event frame */
    uint8_t *seen;      /* per message: event frames received */
    size_t seen_cap;
    long out_of_order; /* event frames below a position already delivered */
} wsock;

/* One HTTP sender connection. */
typedef struct {
    enum kind kind;
    int fd;
    const char *token;
    char out[TOKEN_MAX + 1024];
    size_t out_len, out_off;
    char in[HTTP_IN_MAX];
    size_t in_len;
    bool busy, dead;
    int lost;          /* connections broken without an answer in a row */
    long seq;          /* the message in flight */
    double written_at; /* seconds, for the HTTP answer's latency */
} sender;

/* What is known of one message, by its sequence number. */
typedef struct {
    int64_t sent_ns; /* the time its text carries */
    uint8_t state;   /* 0 in flight, 1 acknowledged (201), 2 failed */
    bool measured;   /* sent within the measured seconds */
} message;

static const char *host, *room_id;
static int port;
static char **tokens;
static size_t ntokens;
static int ep;
static char run_id[16];

static wsock *socks;
static size_t nsocks;
static sender senders[MAX_SENDERS];
static int nsenders;

static message *msgs;
static size_t nmsgs, cap_msgs;

static double *lat, *http_lat;
static size_t nlat, cap_lat, nhttp, cap_http;
static long send_errors, delivered, gaps, closed, ready_count, connect_failed, unknown_frames;
static char first_error[300];
static volatile sig_atomic_t stop_signal;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "ws_load: %s\n", what);
    exit(2);
}

static double num_arg(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0')
        die("a number was expected");
    return v;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        die("out of memory");
    return p;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* Remembers the first error, made printable for the JSON report. */
static void note_error(const char *what, const char *detail, size_t dlen)
{
    if (first_error[0] != '\0')
        return;
    char d[200];
    size_t n = dlen < sizeof(d) - 1 ? dlen : sizeof(d) - 1;
    for (size_t i = 0; i < n; i++)
        d[i] = (detail[i] >= 32 && detail[i] < 127 && detail[i] != '"' && detail[i] != '\\') ? detail[i] : ' ';
    d[n] = '\0';
    snprintf(first_error, sizeof(first_error), "%s%s%s", what, n ? ": " : "", d);
}

static void buf_reserve(buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_add(buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* Drops the first n bytes; an emptied buffer gives its memory back, so ten
 * thousand idle sockets hold none. */
static void buf_consume(buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    if (b->len == 0) {
        free(b->p);
        *b = (buf){0};
    }
}

static void record(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        *v = xrealloc(*v, *cap * sizeof(double));
    }
    (*v)[(*n)++] = x;
}

static char **read_lines(const char *fn, size_t *count)
{
    FILE *f = fopen(fn, "r");
    if (f == NULL)
        die("cannot open the tokens file");
    size_t cap = 64, n = 0;
    char **v = xrealloc(NULL, cap * sizeof(char *));
    char line[TOKEN_MAX];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (n == cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof(char *));
        }
        v[n++] = strdup(line);
    }
    fclose(f);
    *count = n;
    return v;
}

static int connect_to(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            die("out of file descriptors (raise the hard limit: ulimit -Hn)");
        die("socket");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("HOST must be an IPv4 address");
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void watch(int fd, void *p, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = p};
    if (epoll_ctl(ep, op, fd, &ev) != 0)
        die("epoll_ctl");
}

/* ------------------------------------------------------------ WebSockets */

/* The handshake of RFC 6455 section 4.1: a random 16-byte key, and the
 * answer the server must give for it (base64 of SHA-1 of key + GUID). */
static void ws_start(wsock *w)
{
    uint8_t raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        die("getrandom");
    char key[32];
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    char cat[96];
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned int shalen = 0;
    if (!EVP_Digest(cat, (size_t)n, sha, &shalen, EVP_sha1(), NULL))
        die("SHA-1");
    EVP_EncodeBlock((unsigned char *)w->accept, sha, (int)shalen);

    char head[TOKEN_MAX + 512];
    n = snprintf(head, sizeof(head),
                 "GET /api/v1/ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                 host, port, key, w->token);
    if (n < 0 || (size_t)n >= sizeof(head))
        die("a token is too long");
    w->fd = connect_to();
    if (w->fd < 0) {
        connect_failed++;
        note_error("connect failed", strerror(errno), strlen(strerror(errno)));
        w->state = WS_CLOSED;
        return;
    }
    buf_add(&w->out, head, (size_t)n);
    w->out_off = 0;
    w->state = WS_HANDSHAKE;
    watch(w->fd, w, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
}

static void ws_close(wsock *w, bool by_server, const char *why)
{
    if (w->state == WS_CLOSED)
        return;
    if (w->state != WS_OPEN) {
        connect_failed++;
        note_error("a WebSocket handshake failed", why, strlen(why));
    } else if (by_server) {
        closed++;
        note_error("the gateway closed a WebSocket", why, strlen(why));
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->state = WS_CLOSED;
    free(w->in.p);
    free(w->out.p);
    free(w->msg.p);
    w->in = w->out = w->msg = (buf){0};
}

/* Writes what the socket takes; false when the connection broke. */
static bool ws_flush(wsock *w)
{
    while (w->out_off < w->out.len) {
        ssize_t n = write(w->fd, w->out.p + w->out_off, w->out.len - w->out_off);
        if (n < 0)
            return errno == EAGAIN;
        w->out_off += (size_t)n;
    }
    free(w->out.p);
    w->out = (buf){0};
    w->out_off = 0;
    watch(w->fd, w, EPOLLIN, EPOLL_CTL_MOD);
    return true;
}

/* A client frame: always masked with a fresh key (RFC 6455 section 5.3). */
static void ws_send(wsock *w, int op, const uint8_t *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t mask[4];
    if (getrandom(mask, sizeof(mask), 0) != (ssize_t)sizeof(mask))
        die("getrandom");
    memcpy(h + hl, mask, 4);
    hl += 4;
    bool idle = w->out.len == 0;
    buf_add(&w->out, h, hl);
    buf_reserve(&w->out, n);
    for (size_t i = 0; i < n; i++)
        w->out.p[w->out.len + i] = p[i] ^ mask[i & 3];
    w->out.len += n;
    if (idle)
        watch(w->fd, w, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

/* The value of a JSON member "name" in s[0..n): where it starts (after the
 * colon and blanks), or NULL. The frames are flat enough for this: the first
 * member of that name is the one wanted. */
static const char *json_member(const char *s, size_t n, const char *name)
{
    size_t nl = strlen(name);
    const char *end = s + n;
    for (const char *p = s; p + nl + 2 < end; p++) {
        p = memchr(p, '"', (size_t)(end - p));
        if (p == NULL || p + nl + 2 >= end)
            return NULL;
        if (memcmp(p + 1, name, nl) != 0 || p[nl + 1] != '"')
            continue;
        const char *v = p + nl + 2;
        while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
            v++;
        if (v >= end || *v != ':')
            continue;
        v++;
        while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
            v++;
        return v < end ? v : NULL;
    }
    return NULL;
}

static bool json_string_is(const char *v, const char *end, const char *want)
{
    size_t wl = strlen(want);
    return v != NULL && v + wl + 2 <= end && v[0] == '"' && memcmp(v + 1, want, wl) == 0 && v[wl + 1] == '"';
}

/* One text message from the gateway. */
static void ws_text(wsock *w, const char *s, size_t n)
{
    const char *end = s + n;
    const char *type = json_member(s, n, "type");
    if (json_string_is(type, end, "ready")) {
        if (!w->ready)
            ready_count++;
        w->ready = true;
        return;
    }
    if (json_string_is(type, end, "gap")) {
        gaps++;
        return;
    }
    if (!json_string_is(type, end, "event"))
        return; /* typing, report, pong: not this bench's business */

    int64_t t = now_ns();
    /* Positions are int64 written as JSON strings (proto3 mapping). */
    const char *pv = json_member(s, n, "position");
    long long pos = pv != NULL ? strtoll(pv + (*pv == '"'), NULL, 10) : 0;

    /* Ours: "ws_load RUN SEQ NS", copied out so that parsing stops at the
     * frame's end. */
    const char *mark = memmem(s, n, "ws_load ", 8);
    char text[80] = "";
    if (mark != NULL) {
        size_t tl = (size_t)(end - mark) < sizeof(text) - 1 ? (size_t)(end - mark) : sizeof(text) - 1;
        memcpy(text, mark, tl);
        text[tl] = '\0';
    }
    long long seq = -1, sent = 0;
    size_t rl = strlen(run_id);
    if (strncmp(text + 8, run_id, rl) == 0 && text[8 + rl] == ' ') {
        char *e1, *e2;
        errno = 0;
        seq = strtoll(text + 9 + rl, &e1, 10);
        sent = strtoll(e1, &e2, 10);
        if (errno != 0 || e1 == text + 9 + rl || *e1 != ' ' || e2 == e1)
            seq = -1;
    }
    if (seq < 0 || (size_t)seq >= nmsgs) {
        unknown_frames++;
        if (pos <= w->last_pos)
            w->out_of_order++;
        else
            w->last_pos = pos;
        return;
    }
    if ((size_t)seq >= w->seen_cap) {
        size_t cap = w->seen_cap ? w->seen_cap : 4096;
        while (cap <= (size_t)seq)
            cap *= 2;
        w->seen = xrealloc(w->seen, cap);
        memset(w->seen + w->seen_cap, 0, cap - w->seen_cap);
        w->seen_cap = cap;
    }
    if (w->seen[seq] < 255)
        w->seen[seq]++;
    if (w->seen[seq] > 1)
        return; /* a duplicate, counted at the end */
    if (pos <= w->last_pos)
        w->out_of_order++;
    else
        w->last_pos = pos;
    if (msgs[seq].measured) {
        delivered++;
        record(&lat, &nlat, &cap_lat, (double)(t - sent) / 1e6);
    }
}

/* The gateway's answer to the handshake: 101 with the right
 * Sec-WebSocket-Accept. Returns the length of the head, 0 when more is
 * needed, -1 after closing the socket. */
static long ws_handshake_reply(wsock *w)
{
    uint8_t *end = memmem(w->in.p, w->in.len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (w->in.len > 16384) {
            ws_close(w, true, "an endless handshake answer");
            return -1;
        }
        return 0;
    }
    size_t hl = (size_t)(end - w->in.p) + 4;
    char head[16384 + 1];
    size_t n = w->in.len < sizeof(head) - 1 ? w->in.len : sizeof(head) - 1;
    memcpy(head, w->in.p, n);
    head[n] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        /* The refusal and the start of its JSON error. */
        char why[200];
        snprintf(why, sizeof(why), "%.*s %s", (int)strcspn(head, "\r\n"), head, hl < n ? head + hl : "");
        ws_close(w, true, why);
        return -1;
    }
    head[hl] = '\0';
    const char *acc = strcasestr(head, "\r\nsec-websocket-accept:");
    if (acc != NULL) {
        acc += 23;
        while (*acc == ' ')
            acc++;
    }
    if (acc == NULL || strncmp(acc, w->accept, strlen(w->accept)) != 0) {
        ws_close(w, true, "a wrong Sec-WebSocket-Accept");
        return -1;
    }
    w->state = WS_OPEN;
    return (long)hl;
}

/* Handles one complete frame; false when it closed the socket. */
static bool ws_frame(wsock *w, bool fin, int op, const uint8_t *data, size_t len)
{
    char why[160];
    switch (op) {
    case 0x8: { /* close: answer it with the same code, then hang up */
        int code = len >= 2 ? (data[0] << 8) | data[1] : 1005;
        if (len >= 2)
            ws_send(w, 0x8, data, 2);
        else
            ws_send(w, 0x8, NULL, 0);
        (void)ws_flush(w);
        snprintf(why, sizeof(why), "close code %d %.*s", code, len > 2 ? (int)(len - 2 < 100 ? len - 2 : 100) : 0,
                 len > 2 ? (const char *)data + 2 : "");
        ws_close(w, true, why);
        return false;
    }
    case 0x9: /* ping: pong with its payload */
        if (!fin || len > 125) {
            ws_close(w, true, "a malformed ping");
            return false;
        }
        ws_send(w, 0xA, data, len);
        return true;
    case 0xA:
        return true;
    case 0x1:
    case 0x2:
        if (w->msg_op != 0) {
            ws_close(w, true, "a new message inside a fragmented one");
            return false;
        }
        if (fin) {
            if (op == 0x1)
                ws_text(w, (const char *)data, len);
            return true;
        }
        w->msg_op = op;
        buf_add(&w->msg, data, len);
        return true;
    case 0x0:
        if (w->msg_op == 0) {
            ws_close(w, true, "a continuation without a message");
            return false;
        }
        if (w->msg.len + len > WS_IN_MAX) {
            ws_close(w, true, "a message larger than the tool takes");
            return false;
        }
        buf_add(&w->msg, data, len);
        if (fin) {
            if (w->msg_op == 0x1)
                ws_text(w, (const char *)w->msg.p, w->msg.len);
            free(w->msg.p);
            w->msg = (buf){0};
            w->msg_op = 0;
        }
        return true;
    default:
        snprintf(why, sizeof(why), "an unknown opcode %d", op);
        ws_close(w, true, why);
        return false;
    }
}

/* Reads what arrived and handles every complete frame in it (RFC 6455
 * section 5.2). Server frames are never masked and no extension was
 * negotiated, so the RSV bits are zero. */
static void ws_readable(wsock *w)
{
    /* One read per wake-up: epoll is level-triggered, so the rest comes
     * next round, and the buffer stays bounded by the largest frame. */
    buf_reserve(&w->in, 65536);
    ssize_t r = read(w->fd, w->in.p + w->in.len, w->in.cap - w->in.len);
    if (r < 0 && errno == EAGAIN)
        return;
    if (r <= 0) {
        ws_close(w, true, r == 0 ? "the connection was closed" : strerror(errno));
        return;
    }
    w->in.len += (size_t)r;
    size_t off = 0;
    if (w->state == WS_HANDSHAKE) {
        long hl = ws_handshake_reply(w);
        if (hl <= 0)
            return;
        off = (size_t)hl;
    }
    while (w->state == WS_OPEN) {
        const uint8_t *p = w->in.p + off;
        size_t avail = w->in.len - off;
        if (avail < 2)
            break;
        bool fin = p[0] & 0x80;
        int op = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if ((p[0] & 0x70) != 0 || (p[1] & 0x80) != 0) {
            ws_close(w, true, "a masked frame or RSV bits from the server");
            return;
        }
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hl = 10;
        }
        if (len > WS_IN_MAX) {
            ws_close(w, true, "a frame larger than the tool takes");
            return;
        }
        if (avail < hl + len)
            break;
        if (!ws_frame(w, fin, op, p + hl, (size_t)len))
            return;
        off += hl + (size_t)len;
    }
    if (w->state != WS_CLOSED)
        buf_consume(&w->in, off);
}

/* --------------------------------------------------------------- senders */

static int64_t t0_ns, t_measure_ns, t_end_ns;
static int64_t last_write_ns; /* when the last measured message was written */
static double rate;

static void sender_connect(sender *s)
{
    s->fd = connect_to();
    s->in_len = 0;
    s->busy = false;
    if (s->fd < 0) {
        s->dead = true;
        note_error("a sender could not connect", strerror(errno), strlen(strerror(errno)));
        return;
    }
    watch(s->fd, s, EPOLLIN, EPOLL_CTL_ADD);
}

static void sender_flush(sender *s)
{
    while (s->out_off < s->out_len) {
        ssize_t n = write(s->fd, s->out + s->out_off, s->out_len - s->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                watch(s->fd, s, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return;
            }
            /* Broken: the answer will never come; the read side says so. */
            return;
        }
        s->out_off += (size_t)n;
    }
    watch(s->fd, s, EPOLLIN, EPOLL_CTL_MOD);
}

/* Sends message number nmsgs, whose text carries `sent_ns`. */
static void sender_send(sender *s, int64_t sent_ns)
{
    if (nmsgs == cap_msgs) {
        cap_msgs = cap_msgs ? cap_msgs * 2 : 65536;
        msgs = xrealloc(msgs, cap_msgs * sizeof(message));
    }
    long seq = (long)nmsgs++;
    msgs[seq] = (message){.sent_ns = sent_ns, .state = 0, .measured = sent_ns >= t_measure_ns && sent_ns < t_end_ns};
    char body[256];
    int bl = snprintf(body, sizeof(body), "{\"txn_id\":\"wl-%s-%ld\",\"text\":\"ws_load %s %ld %lld\"}", run_id, seq, run_id, seq,
                      (long long)sent_ns);
    int n = snprintf(s->out, sizeof(s->out),
                     "POST /api/v1/rooms/%s/messages HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     room_id, host, port, s->token, bl, body);
    if (n < 0 || (size_t)n >= sizeof(s->out))
        die("a request does not fit");
    s->out_len = (size_t)n;
    s->out_off = 0;
    s->seq = seq;
    s->busy = true;
    s->written_at = now_s();
    if (msgs[seq].measured)
        last_write_ns = now_ns();
    sender_flush(s);
}

/* Length of a complete answer in s->in (head + body), 0 when more is
 * needed, -1 when it cannot be parsed. A chunked body (RFC 9112 section
 * 7.1) is joined in place; *body and *blen say where the body is. */
static long http_answer(sender *s, int *status, const char **body, size_t *blen)
{
    s->in[s->in_len] = '\0';
    char *end = strstr(s->in, "\r\n\r\n");
    if (end == NULL)
        return s->in_len >= HTTP_IN_MAX - 1 ? -1 : 0;
    size_t head = (size_t)(end - s->in) + 4;
    if (strncmp(s->in, "HTTP/1.1 ", 9) != 0)
        return -1;
    *status = (int)strtol(s->in + 9, NULL, 10);
    long clen = -1;
    bool chunked = false;
    for (char *l = strstr(s->in, "\r\n"); l != NULL && l < end; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "content-length:", 15) == 0)
            clen = strtol(l + 17, NULL, 10);
        else if (strncasecmp(l + 2, "transfer-encoding:", 18) == 0)
            chunked = true;
    }
    *body = s->in + head;
    if (!chunked) {
        if (clen < 0)
            clen = 0;
        if (head + (size_t)clen >= HTTP_IN_MAX)
            return -1;
        *blen = (size_t)clen;
        return s->in_len >= head + (size_t)clen ? (long)(head + (size_t)clen) : 0;
    }
    /* First find the end without touching anything, then join. */
    size_t pos = head, data = 0;
    for (;;) {
        char *eol = strstr(s->in + pos, "\r\n");
        if (eol == NULL)
            return s->in_len >= HTTP_IN_MAX - 1 ? -1 : 0;
        char *endp;
        unsigned long size = strtoul(s->in + pos, &endp, 16);
        if (endp == s->in + pos || size > HTTP_IN_MAX)
            return -1;
        pos = (size_t)(eol - s->in) + 2;
        if (size == 0) {
            if (s->in_len < pos + 2)
                return s->in_len >= HTTP_IN_MAX - 1 ? -1 : 0;
            break;
        }
        if (s->in_len < pos + size + 2)
            return s->in_len >= HTTP_IN_MAX - 1 ? -1 : 0;
        data += size;
        pos += size + 2;
    }
    size_t total = pos + 2, in = head, out = head;
    for (;;) {
        char *eol = strstr(s->in + in, "\r\n");
        unsigned long size = strtoul(s->in + in, NULL, 16);
        in = (size_t)(eol - s->in) + 2;
        if (size == 0)
            break;
        memmove(s->in + out, s->in + in, size);
        out += size;
        in += size + 2;
    }
    *blen = data;
    /* What followed the answer (nothing: one request in flight) moves up. */
    memmove(s->in + out, s->in + total, s->in_len - total);
    s->in_len -= total - out;
    return (long)out;
}

/* The message in flight failed without an answer. */
static void sender_lost(sender *s, const char *why)
{
    if (s->busy) {
        msgs[s->seq].state = 2;
        send_errors++;
        note_error(why, "", 0);
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    /* A gateway may close a keep-alive connection; one that keeps doing so
     * without answering is gone. */
    if (++s->lost > 100) {
        s->dead = true;
        note_error("a sender's connections kept breaking", why, strlen(why));
        return;
    }
    sender_connect(s);
}

static void sender_readable(sender *s)
{
    ssize_t r = read(s->fd, s->in + s->in_len, HTTP_IN_MAX - 1 - s->in_len);
    if (r < 0 && errno == EAGAIN)
        return;
    if (r <= 0) {
        sender_lost(s, "the gateway closed a sender connection");
        return;
    }
    s->in_len += (size_t)r;
    int status = 0;
    const char *body = NULL;
    size_t blen = 0;
    long len = http_answer(s, &status, &body, &blen);
    if (len == 0)
        return;
    if (len < 0 || !s->busy) {
        sender_lost(s, "an unparsable or unasked-for answer");
        return;
    }
    char want[64];
    int wl = snprintf(want, sizeof(want), "ws_load %s %ld ", run_id, s->seq);
    bool ok = status == 201 && memmem(body, blen, want, (size_t)wl) != NULL;
    message *m = &msgs[s->seq];
    m->state = ok ? 1 : 2;
    if (!ok) {
        send_errors++;
        note_error("a send was refused", s->in, (size_t)len);
    } else if (m->measured) {
        record(&http_lat, &nhttp, &cap_http, (now_s() - s->written_at) * 1e3);
    }
    s->busy = false;
    s->lost = 0;
    memmove(s->in, s->in + len, s->in_len - (size_t)len);
    s->in_len -= (size_t)len;
}

/* ------------------------------------------------------------ the loop */

/* One round of epoll: every ready socket and sender handled. `timeout_ns`
 * bounds the wait. */
static void poll_once(int64_t timeout_ns)
{
    struct epoll_event evs[256];
    if (timeout_ns < 0)
        timeout_ns = 0;
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
    for (int i = 0; i < n; i++) {
        enum kind *k = evs[i].data.ptr;
        if (*k == K_SENDER) {
            sender *s = (sender *)k;
            if (evs[i].events & EPOLLOUT)
                sender_flush(s);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                sender_readable(s);
            continue;
        }
        wsock *w = (wsock *)k;
        if (w->state == WS_CLOSED)
            continue;
        if ((evs[i].events & EPOLLOUT) && !ws_flush(w)) {
            ws_close(w, true, strerror(errno));
            continue;
        }
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            ws_readable(w);
    }
}

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)((double)n * q);
    return v[i < n ? i : n - 1];
}

static void raise_nofile(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("setrlimit");
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr, "ws_load: %zu sockets need more open files than the hard limit %llu (ulimit -Hn)\n", need,
                (unsigned long long)rl.rlim_cur);
        exit(2);
    }
}

/* Waits until every socket is ready or closed, at most `limit_s` seconds,
 * keeping at most `window` handshakes in flight. */
static bool open_all(size_t window, double limit_s)
{
    size_t started = 0;
    double deadline = now_s() + limit_s;
    while ((size_t)(ready_count + connect_failed + closed) < nsocks && now_s() < deadline && !stop_signal) {
        while (started < nsocks && started - (size_t)(ready_count + connect_failed + closed) < window)
            ws_start(&socks[started++]);
        poll_once(50000000);
    }
    return (size_t)ready_count == nsocks;
}

static void usage(void)
{
    fprintf(stderr, "usage: ws_load room [-s N] [-r RATE] [-d S] [-w S] [-D S] HOST PORT ROOM_ID TOKENS_FILE\n"
                    "       ws_load idle [-n K] [-c N] [-t S] [-H S] HOST PORT TOKENS_FILE\n");
    exit(2);
}

static int run_room(double secs, double warm, double drain_s)
{
    nsocks = ntokens;
    socks = calloc(nsocks, sizeof(wsock));
    if (socks == NULL)
        die("out of memory");
    for (size_t i = 0; i < nsocks; i++)
        socks[i] = (wsock){.kind = K_SOCKET, .token = tokens[i]};
    for (int i = 0; i < nsenders; i++) {
        senders[i] = (sender){.kind = K_SENDER, .token = tokens[((size_t)i + 1) % ntokens]};
        sender_connect(&senders[i]);
    }
    bool all = open_all(nsocks, 30);

    t0_ns = now_ns();
    t_measure_ns = t0_ns + (int64_t)(warm * 1e9);
    t_end_ns = t_measure_ns + (int64_t)(secs * 1e9);
    /* At a fixed rate, messages due within the seconds but not yet sent
     * when they end (every sender was busy) still go, late, for at most
     * the drain time: their latency is what shows a gateway behind. */
    int64_t stop_ns = t_end_ns + (int64_t)(drain_s * 1e9);
    double cpu0 = 0, cpu1 = 0;
    bool measuring = false, measured = false;
    while (all) {
        int64_t t = now_ns();
        if (!measuring && t >= t_measure_ns) {
            measuring = true;
            cpu0 = self_cpu();
        }
        if (!measured && t >= t_end_ns) {
            measured = true;
            cpu1 = self_cpu();
        }
        int64_t due = rate > 0 ? t0_ns + (int64_t)((double)nmsgs * 1e9 / rate) : t;
        if (rate <= 0 ? t >= t_end_ns : due >= t_end_ns || t >= stop_ns)
            break;
        /* Answers wake the loop; so must the next message due. */
        int64_t wait = 50000000;
        for (int i = 0; i < nsenders; i++) {
            sender *s = &senders[i];
            if (s->busy || s->dead)
                continue;
            if (rate <= 0) {
                sender_send(s, now_ns());
                continue;
            }
            due = t0_ns + (int64_t)((double)nmsgs * 1e9 / rate);
            if (due >= t_end_ns)
                break;
            if (due > t) {
                wait = due - t;
                break;
            }
            sender_send(s, due);
        }
        if (rate <= 0 && t_end_ns - t < wait)
            wait = t_end_ns - t;
        poll_once(wait);
    }
    if (!measured)
        cpu1 = self_cpu();

    /* Every answer, then every delivery of what was acknowledged. */
    double deadline = now_s() + drain_s;
    for (;;) {
        bool busy = false;
        for (int i = 0; i < nsenders; i++)
            busy |= senders[i].busy && !senders[i].dead;
        bool complete = !busy;
        for (size_t i = 0; complete && i < nsocks; i++) {
            wsock *w = &socks[i];
            if (w->state != WS_OPEN)
                continue;
            for (size_t k = 0; complete && k < nmsgs; k++)
                complete = msgs[k].state != 1 || (k < w->seen_cap && w->seen[k] > 0);
        }
        if (complete || now_s() >= deadline)
            break;
        poll_once(50000000);
    }
    for (int i = 0; i < nsenders; i++) {
        if (senders[i].busy) {
            msgs[senders[i].seq].state = 2;
            send_errors++;
            note_error("a send got no answer in time", "", 0);
        }
    }

    long sent = 0, missing = 0, duplicate = 0, out_of_order = 0;
    for (size_t k = 0; k < nmsgs; k++)
        sent += msgs[k].state == 1 && msgs[k].measured;
    for (size_t i = 0; i < nsocks; i++) {
        wsock *w = &socks[i];
        out_of_order += w->out_of_order;
        for (size_t k = 0; k < nmsgs; k++) {
            uint8_t c = k < w->seen_cap ? w->seen[k] : 0;
            if (msgs[k].state == 1 && c == 0)
                missing++;
            if (c > 1)
                duplicate += c - 1;
        }
    }
    if (!all)
        missing = -1; /* not every socket got ready: nothing was sent */
    /* Rates over the measured seconds, or longer when messages due in them
     * went late. */
    double span = secs;
    if ((double)(last_write_ns - t_measure_ns) / 1e9 > span)
        span = (double)(last_write_ns - t_measure_ns) / 1e9;
    qsort(lat, nlat, sizeof(double), by_value);
    qsort(http_lat, nhttp, sizeof(double), by_value);
    printf("{\"mode\":\"room\",\"sockets\":%zu,\"ready\":%ld,\"senders\":%d,\"rate\":%.1f,\"seconds\":%.3f,\"sent\":%ld,"
           "\"sent_per_s\":%.1f,\"send_errors\":%ld,\"delivered\":%ld,\"delivered_per_s\":%.1f,\"p50_ms\":%.2f,"
           "\"p99_ms\":%.2f,\"max_ms\":%.2f,\"http_p50_ms\":%.2f,\"http_p99_ms\":%.2f,\"missing\":%ld,\"duplicate\":%ld,"
           "\"out_of_order\":%ld,\"gaps\":%ld,\"closed\":%ld,\"messages_total\":%zu,\"other_frames\":%ld,"
           "\"generator_cpu_s\":%.3f,\"generator_cores\":%.3f,\"first_error\":\"%s\"}\n",
           nsocks, ready_count, nsenders, rate, span, sent, (double)sent / span, send_errors, delivered, (double)delivered / span,
           pct(lat, nlat, 0.5), pct(lat, nlat, 0.99), nlat ? lat[nlat - 1] : 0, pct(http_lat, nhttp, 0.5),
           pct(http_lat, nhttp, 0.99), missing, duplicate, out_of_order, gaps, closed + connect_failed, nmsgs, unknown_frames,
           cpu1 - cpu0, (cpu1 - cpu0) / secs, first_error);
    return all && send_errors == 0 && missing == 0 && duplicate == 0 && out_of_order == 0 && closed == 0 && connect_failed == 0 ? 0
                                                                                                                                : 1;
}

static int run_idle(size_t count, size_t window, double settle_s, double hold_s)
{
    nsocks = count;
    socks = calloc(nsocks, sizeof(wsock));
    if (socks == NULL)
        die("out of memory");
    for (size_t i = 0; i < nsocks; i++)
        socks[i] = (wsock){.kind = K_SOCKET, .token = tokens[i % ntokens]};
    double t0 = now_s();
    bool all = open_all(window, 300);
    double took = now_s() - t0;
    if (all) {
        double until = now_s() + settle_s;
        while (now_s() < until && !stop_signal)
            poll_once(50000000);
    }
    printf("{\"mode\":\"idle\",\"sockets\":%zu,\"connected\":%ld,\"failed\":%ld,\"closed\":%ld,\"connect_seconds\":%.3f,"
           "\"first_error\":\"%s\"}\n",
           nsocks, ready_count, connect_failed, closed, took, first_error);
    fflush(stdout);
    if (!all)
        return 1;
    double until = now_s() + hold_s;
    while (!stop_signal && now_s() < until)
        poll_once(100000000);
    long open = 0;
    for (size_t i = 0; i < nsocks; i++)
        open += socks[i].state == WS_OPEN;
    printf("{\"mode\":\"idle\",\"open_at_end\":%ld,\"closed\":%ld,\"first_error\":\"%s\"}\n", open, closed, first_error);
    return closed == 0 && connect_failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    bool room = strcmp(argv[1], "room") == 0;
    if (!room && strcmp(argv[1], "idle") != 0)
        usage();
    argc--;
    argv++;
    double secs = 5, warm = 1, drain = 10, settle = 2, hold = 600;
    size_t count = 10000, window = 256;
    nsenders = 8;
    int opt;
    while ((opt = getopt(argc, argv, room ? "s:r:d:w:D:" : "n:c:t:H:")) != -1) {
        switch (opt) {
        case 's':
            nsenders = (int)num_arg(optarg);
            break;
        case 'r':
            rate = num_arg(optarg);
            break;
        case 'd':
            secs = num_arg(optarg);
            break;
        case 'w':
            warm = num_arg(optarg);
            break;
        case 'D':
            drain = num_arg(optarg);
            break;
        case 'n':
            count = (size_t)num_arg(optarg);
            break;
        case 'c':
            window = (size_t)num_arg(optarg);
            break;
        case 't':
            settle = num_arg(optarg);
            break;
        case 'H':
            hold = num_arg(optarg);
            break;
        default:
            usage();
        }
    }
    if (argc - optind != (room ? 4 : 3) || nsenders < 1 || nsenders > MAX_SENDERS || secs <= 0 || warm < 0 || drain < 0 ||
        rate < 0 || count < 1 || window < 1 || settle < 0 || hold < 0)
        usage();
    host = argv[optind];
    port = (int)num_arg(argv[optind + 1]);
    if (room)
        room_id = argv[optind + 2];
    tokens = read_lines(argv[argc - 1], &ntokens);
    if (ntokens == 0)
        die("the tokens file is empty");
    if (room && strlen(room_id) > 64)
        die("ROOM_ID is too long");

    uint8_t r[3];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        die("getrandom");
    snprintf(run_id, sizeof(run_id), "%02x%02x%02x", r[0], r[1], r[2]);
    raise_nofile((room ? ntokens + (size_t)nsenders : count) + 16);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    return room ? run_room(secs, warm, drain) : run_idle(count, window, settle, hold);
}
