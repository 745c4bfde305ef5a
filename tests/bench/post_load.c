/*
 * post_load — a closed-loop HTTP/1.1 POST load generator that can chain
 * answers into the next request, for the OAuth token and login benchmarks.
 *
 *   post_load [options] HOST PORT PATH BODY
 *
 *   -c N         connections, each with one request in flight (default 16)
 *   -d SECONDS   measured duration (default 5)
 *   -w SECONDS   warm-up before it, same connections and chains (default 1)
 *   -H LINE      an extra request header line, e.g. "Authorization: Basic ..."
 *                (repeatable)
 *   -e CODES     comma-separated statuses that count as success (default 200)
 *   -k TEXT      a success must also contain TEXT, compared ignoring case, in
 *                its headers or body (repeatable: all of them)
 *   -T FILE      refresh-token chains: FILE holds one token per line, one per
 *                connection; `{rt}` in BODY is the connection's current
 *                token, and each answer's "refresh_token" becomes the next
 *                one (rotation: every token is used exactly once)
 *   -U FILE      user names, one per line; `{user}` in BODY takes the next
 *                one in turn (across all connections)
 *   -p NAME=PID  measure the CPU time (utime + stime, /proc/PID/stat) of PID
 *                during the measured part; -P NAME=PID does the same for PID
 *                and all its child processes (a PostgreSQL postmaster and
 *                its backends, plus the CPU of children that exited)
 *
 * Why not wrk: with rotating refresh tokens each request depends on the
 * previous answer, which wrk's Lua scripts cannot chain per connection. The
 * generator is one thread with epoll; it reports its own CPU time so a
 * reader can see whether it, rather than the server, was the limit.
 *
 * Prints one JSON object: requests, errors, rps, p50_ms, p99_ms, the
 * generator's CPU seconds and each measured process group's CPU seconds,
 * and the first error seen. Exit status 1 when any request failed.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_HEADERS 16
#define MAX_GROUPS 16
#define RESP_MAX (256 * 1024)
#define TOKEN_MAX 512

typedef struct {
    int fd;
    char *out;
    size_t out_len, out_off;
    char in[RESP_MAX];
    size_t in_len;
    double sent_at;
    char token[TOKEN_MAX];
    bool dead; /* a broken chain: no more requests on this connection */
} conn;

typedef struct {
    const char *name;
    int pid;
    bool children;
    double start;
} group;

static const char *host, *path, *body_tpl;
static int port;
static const char *headers[MAX_HEADERS];
static int nheaders;
static int ok_codes[16];
static int nok;
static const char *must_contain[MAX_HEADERS];
static int nmust;
static char **users;
static size_t nusers, next_user;
static group groups[MAX_GROUPS];
static int ngroups;
static long ticks;

static bool measuring;
static long requests, errors;
static double *lat;
static size_t nlat, cap_lat;
static char first_error[300];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "post_load: %s\n", what);
    exit(2);
}

/* A whole number or a decimal option value; anything else is a usage error. */
static double num_arg(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0')
        die("a number was expected");
    return v;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        die("out of memory");
    return p;
}

/* utime + stime (+ cutime + cstime with `with_dead`) of one process, in
 * seconds; 0 when it is gone. Fields 14-17 of /proc/PID/stat, counted after
 * the command name, which may hold spaces but ends at the last ')'. */
static double proc_cpu(int pid, bool with_dead, int *ppid)
{
    char fn[64], buf[1024];
    snprintf(fn, sizeof(fn), "/proc/%d/stat", pid);
    FILE *f = fopen(fn, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    /* After ") ": field 3 is the state; utime is field 14. */
    char *save = NULL, *tok = strtok_r(p + 1, " ", &save);
    unsigned long long v[18] = {0};
    for (int field = 3; tok != NULL && field <= 17; field++, tok = strtok_r(NULL, " ", &save))
        v[field] = strtoull(tok, NULL, 10);
    if (ppid != NULL)
        *ppid = (int)v[4];
    unsigned long long t = v[14] + v[15] + (with_dead ? v[16] + v[17] : 0);
    return (double)t / (double)ticks;
}

/* A group's CPU: the process itself (with its exited children's time when
 * `children`), plus every live child's own time. */
static double group_cpu(const group *g)
{
    double sum = proc_cpu(g->pid, g->children, NULL);
    if (!g->children)
        return sum;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return sum;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        int pid = (int)strtol(e->d_name, NULL, 10), parent = 0;
        double c = proc_cpu(pid, false, &parent);
        if (parent == g->pid)
            sum += c;
    }
    closedir(d);
    return sum;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void note_error(const char *fmt, const char *detail, size_t dlen)
{
    errors++;
    if (first_error[0] != '\0')
        return;
    char d[200];
    size_t n = dlen < sizeof(d) - 1 ? dlen : sizeof(d) - 1;
    for (size_t i = 0; i < n; i++)
        d[i] = (detail[i] >= 32 && detail[i] < 127 && detail[i] != '"' && detail[i] != '\\') ? detail[i] : ' ';
    d[n] = '\0';
    snprintf(first_error, sizeof(first_error), fmt, d);
}

static char **read_lines(const char *fn, size_t *count)
{
    FILE *f = fopen(fn, "r");
    if (f == NULL)
        die("cannot open a list file");
    size_t cap = 64, n = 0;
    char **v = xmalloc(cap * sizeof(char *));
    char line[TOKEN_MAX];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof(char *));
            if (v == NULL)
                die("out of memory");
        }
        v[n++] = strdup(line);
    }
    fclose(f);
    *count = n;
    return v;
}

static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

/* BODY with {rt} and {user} filled in, plus the request head, into c->out. */
static void build_request(conn *c)
{
    char body[4096];
    size_t bl = 0;
    for (const char *s = body_tpl; *s != '\0';) {
        const char *fill = NULL;
        if (strncmp(s, "{rt}", 4) == 0) {
            fill = c->token;
            s += 4;
        } else if (strncmp(s, "{user}", 6) == 0) {
            if (nusers == 0)
                die("{user} in BODY needs -U");
            fill = users[next_user++ % nusers];
            s += 6;
        }
        if (fill != NULL) {
            size_t fl = strlen(fill);
            if (bl + fl >= sizeof(body))
                die("BODY too long");
            memcpy(body + bl, fill, fl);
            bl += fl;
        } else {
            if (bl + 1 >= sizeof(body))
                die("BODY too long");
            body[bl++] = *s++;
        }
    }
    size_t cap = bl + 1024;
    for (int i = 0; i < nheaders; i++)
        cap += strlen(headers[i]) + 2;
    free(c->out);
    c->out = xmalloc(cap);
    int n = snprintf(c->out, cap,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n",
                     path, host, port, bl);
    for (int i = 0; i < nheaders; i++)
        n += snprintf(c->out + n, cap - (size_t)n, "%s\r\n", headers[i]);
    n += snprintf(c->out + n, cap - (size_t)n, "\r\n");
    memcpy(c->out + n, body, bl);
    c->out_len = (size_t)n + bl;
    c->out_off = 0;
}

static int connect_to(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("HOST must be an IPv4 address");
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS)
        die("connect");
    return fd;
}

/* Writes what the socket takes of the request; false on a broken
 * connection. */
static bool flush_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0)
            return errno == EAGAIN;
        c->out_off += (size_t)w;
    }
    return true;
}

static void start_request(int ep, conn *c)
{
    build_request(c);
    c->in_len = 0;
    c->sent_at = now_s();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* The end of a chunked body that starts at `pos` (RFC 9112 section 7.1;
 * no trailers), 0 when more is needed, -1 when malformed. With `decoded`,
 * the chunks' data is also joined in place right after the head and
 * *decoded is where it ends. */
static long chunked_end(conn *c, size_t pos, size_t *decoded)
{
    bool decode = decoded != NULL;
    size_t out = pos;
    for (;;) {
        char *eol = strstr(c->in + pos, "\r\n");
        if (eol == NULL)
            return 0;
        char *endp;
        unsigned long size = strtoul(c->in + pos, &endp, 16);
        if (endp == c->in + pos)
            return -1;
        pos = (size_t)(eol - c->in) + 2;
        if (size == 0) {
            if (decode)
                *decoded = out;
            return c->in_len >= pos + 2 ? (long)(pos + 2) : 0;
        }
        if (size > RESP_MAX)
            return -1;
        if (c->in_len < pos + size + 2)
            return 0;
        if (decode) {
            memmove(c->in + out, c->in + pos, size);
            out += size;
        }
        pos += size + 2;
    }
}

/* Length of a complete response in c->in (head + body), 0 when more is
 * needed, -1 when it cannot be parsed. A chunked body is decoded in place,
 * so that c->in then holds the head and the plain body. */
static long response_len(conn *c, int *status)
{
    c->in[c->in_len] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (end == NULL)
        return c->in_len >= RESP_MAX - 1 ? -1 : 0;
    size_t head = (size_t)(end - c->in) + 4;
    if (strncmp(c->in, "HTTP/1.", 7) != 0 || c->in[8] != ' ')
        return -1;
    *status = (int)strtol(c->in + 9, NULL, 10);
    long clen = -1;
    bool chunked = false;
    for (char *l = strstr(c->in, "\r\n"); l != NULL && l < end; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "content-length:", 15) == 0)
            clen = strtol(l + 17, NULL, 10);
        else if (strncasecmp(l + 2, "transfer-encoding:", 18) == 0)
            chunked = true;
    }
    if (chunked) {
        long n = chunked_end(c, head, NULL);
        if (n > 0) {
            size_t body_end = head;
            (void)chunked_end(c, head, &body_end);
            /* For the searches that follow; nothing else is in flight. */
            c->in[body_end] = '\0';
        }
        return n == 0 && c->in_len >= RESP_MAX - 1 ? -1 : n;
    }
    if (clen < 0)
        clen = 0;
    if (head + (size_t)clen >= RESP_MAX)
        return -1;
    return c->in_len >= head + (size_t)clen ? (long)(head + (size_t)clen) : 0;
}

/* Copies the JSON string member "refresh_token" into c->token. */
static bool take_refresh_token(conn *c, const char *resp)
{
    const char *p = strstr(resp, "\"refresh_token\"");
    if (p == NULL)
        return false;
    p += 15;
    while (*p == ' ' || *p == ':')
        p++;
    if (*p != '"')
        return false;
    p++;
    size_t n = strcspn(p, "\"");
    if (n == 0 || n >= TOKEN_MAX || p[n] != '"')
        return false;
    memcpy(c->token, p, n);
    c->token[n] = '\0';
    return true;
}

static void record(double ms)
{
    if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 4096;
        lat = realloc(lat, cap_lat * sizeof(double));
        if (lat == NULL)
            die("out of memory");
    }
    lat[nlat++] = ms;
}

/* One complete answer: judge it, chain its token, and send the next. */
static void on_response(int ep, conn *c, int status, size_t len, bool chain, bool go_on)
{
    bool ok = false;
    for (int i = 0; i < nok; i++)
        ok |= ok_codes[i] == status;
    for (int i = 0; ok && i < nmust; i++)
        ok = strcasestr(c->in, must_contain[i]) != NULL;
    if (ok && chain && !take_refresh_token(c, c->in)) {
        ok = false;
        c->dead = true;
    }
    if (!ok && chain)
        c->dead = true;
    if (measuring) {
        if (ok) {
            requests++;
            record((now_s() - c->sent_at) * 1e3);
        } else {
            note_error("%s", c->in, len);
        }
    } else if (!ok) {
        note_error("during warm-up: %s", c->in, len);
    }
    /* Keep what followed (nothing, with one request in flight). */
    memmove(c->in, c->in + len, c->in_len - len);
    c->in_len -= len;
    if (go_on && !c->dead)
        start_request(ep, c);
    else {
        struct epoll_event ev = {.events = 0, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: post_load [-c N] [-d S] [-w S] [-H LINE]... [-e CODES] [-k TEXT]... [-T FILE] [-U FILE]\n"
                    "                 [-p NAME=PID]... [-P NAME=PID]... HOST PORT PATH BODY\n");
    exit(2);
}

static void add_group(const char *arg, bool children)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || ngroups == MAX_GROUPS)
        usage();
    groups[ngroups].name = strndup(arg, (size_t)(eq - arg));
    groups[ngroups].pid = (int)num_arg(eq + 1);
    groups[ngroups].children = children;
    if (groups[ngroups].pid <= 0)
        usage();
    ngroups++;
}

int main(int argc, char **argv)
{
    int nconns = 16;
    double secs = 5, warm = 1;
    const char *tokens_file = NULL, *users_file = NULL;
    int opt;
    ticks = sysconf(_SC_CLK_TCK);
    while ((opt = getopt(argc, argv, "c:d:w:H:e:k:T:U:p:P:")) != -1) {
        switch (opt) {
        case 'c':
            nconns = (int)num_arg(optarg);
            break;
        case 'd':
            secs = num_arg(optarg);
            break;
        case 'w':
            warm = num_arg(optarg);
            break;
        case 'H':
            if (nheaders == MAX_HEADERS)
                usage();
            headers[nheaders++] = optarg;
            break;
        case 'e':
            for (char *s = strtok(optarg, ","); s != NULL && nok < 16; s = strtok(NULL, ","))
                ok_codes[nok++] = (int)num_arg(s);
            break;
        case 'k':
            if (nmust == MAX_HEADERS)
                usage();
            must_contain[nmust++] = optarg;
            break;
        case 'T':
            tokens_file = optarg;
            break;
        case 'U':
            users_file = optarg;
            break;
        case 'p':
        case 'P':
            add_group(optarg, opt == 'P');
            break;
        default:
            usage();
        }
    }
    if (argc - optind != 4 || nconns < 1 || nconns > MAX_CONNS || secs <= 0 || warm < 0)
        usage();
    host = argv[optind];
    port = (int)num_arg(argv[optind + 1]);
    path = argv[optind + 2];
    body_tpl = argv[optind + 3];
    if (nok == 0)
        ok_codes[nok++] = 200;
    if (users_file != NULL)
        users = read_lines(users_file, &nusers);
    char **tokens = NULL;
    size_t ntokens = 0;
    if (tokens_file != NULL) {
        tokens = read_lines(tokens_file, &ntokens);
        if (ntokens < (size_t)nconns)
            die("-T needs one token per connection");
    }

    int ep = epoll_create1(0);
    conn *conns = calloc((size_t)nconns, sizeof(conn));
    if (ep < 0 || conns == NULL)
        die("setup");
    for (int i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        c->fd = connect_to();
        if (tokens != NULL)
            snprintf(c->token, sizeof(c->token), "%s", tokens[i]);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        start_request(ep, c);
    }

    double t0 = now_s(), t_measure = t0 + warm, t_end = t_measure + secs, cpu0 = 0, cpu_self0 = 0;
    struct epoll_event evs[64];
    bool draining = false;
    for (;;) {
        double t = now_s();
        if (!measuring && !draining && t >= t_measure) {
            measuring = true;
            for (int g = 0; g < ngroups; g++)
                groups[g].start = group_cpu(&groups[g]);
            cpu_self0 = self_cpu();
            cpu0 = t;
        }
        if (measuring && t >= t_end)
            break;
        int n = epoll_wait(ep, evs, 64, 50);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                if (!flush_out(c)) {
                    note_error("write failed%s", "", 0);
                    c->dead = true;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    continue;
                }
                if (c->out_off == c->out_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(c->fd, c->in + c->in_len, RESP_MAX - 1 - c->in_len);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN)
                        continue;
                    note_error("connection closed by the server%s", "", 0);
                    c->dead = true;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    continue;
                }
                c->in_len += (size_t)r;
                int status = 0;
                long len = response_len(c, &status);
                if (len < 0) {
                    note_error("unparsable response: %s", c->in, c->in_len);
                    c->dead = true;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                } else if (len > 0) {
                    on_response(ep, c, status, (size_t)len, tokens != NULL, true);
                }
            }
        }
    }
    double wall = now_s() - cpu0, gen_cpu = self_cpu() - cpu_self0;
    double gcpu[MAX_GROUPS] = {0}, total_cpu = 0;
    for (int g = 0; g < ngroups; g++) {
        gcpu[g] = group_cpu(&groups[g]) - groups[g].start;
        total_cpu += gcpu[g];
    }
    /* Answers still in flight are neither counted nor waited for. */
    for (int i = 0; i < nconns; i++) {
        close(conns[i].fd);
        free(conns[i].out);
    }
    if (nlat > 0)
        qsort(lat, nlat, sizeof(double), by_value);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    printf("{\"requests\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rps\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
           "\"generator_cpu_s\":%.3f,\"server_cpu_s\":%.3f,\"cpu\":{",
           requests, errors, wall, (double)requests / wall, p50, p99, gen_cpu, total_cpu);
    for (int g = 0; g < ngroups; g++)
        printf("%s\"%s\":%.3f", g ? "," : "", groups[g].name, gcpu[g]);
    printf("},\"first_error\":\"%s\"}\n", first_error);
    free(conns);
    free_lines(tokens, ntokens);
    free_lines(users, nusers);
    close(ep);
    return errors > 0 ? 1 : 0;
}
