/*
 * session_load — password sign-ins straight at identity's StartSession, as
 * the gateway sends them: a sealed envelope (KREIDE_INTERNAL_KEYS from the
 * environment) whose caller is the SERVICE "gateway", through libcommon's
 * RPC client.
 *
 *   session_load [-c N] [-d SECONDS] [-w SECONDS] URL USERS_FILE PASSWORD
 *
 * N threads (default 8) each keep one StartSession in flight, taking the
 * user names of USERS_FILE in turn, all with PASSWORD. After a warm-up of -w
 * seconds (default 1) the sign-ins that finish within -d seconds (default 5)
 * are counted. Prints one JSON object in the shape of post_load's (requests,
 * errors, rps, p50_ms, p99_ms, the generator's CPU, the first error); exit
 * status 1 when any sign-in failed.
 *
 * `make bench` runs it beside POST /oidc/login: the difference between the
 * two is what the gateway adds to a sign-in (the form, CSRF, cookies, the
 * sealed pending request).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "identity.pb-c.h"
#include "kr_id.h"
#include "kr_rpc.h"
#include "kr_seal.h"

#define MAX_THREADS 256
#define MAX_USERS 100000

static kr_rpc_client *client;
static char *users[MAX_USERS];
static size_t nusers;
static atomic_size_t next_user;
static const char *password;
static double t_start, t_end;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
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

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* Counts one finished sign-in that started at `t0` (seconds). */
static void record(double t0, bool ok, const char *why)
{
    double t = now_s();
    pthread_mutex_lock(&lock);
    if (!ok) {
        /* Failures count wherever they happen, warm-up included. */
        errors++;
        if (first_error[0] == '\0')
            snprintf(first_error, sizeof(first_error), "%s", why);
    } else if (t >= t_start && t < t_end) {
        if (nlat == cap_lat) {
            cap_lat = cap_lat ? cap_lat * 2 : 1024;
            double *grown = realloc(lat, cap_lat * sizeof(double));
            if (grown == NULL)
                abort();
            lat = grown;
        }
        lat[nlat++] = (t - t0) * 1e3;
        requests++;
    }
    pthread_mutex_unlock(&lock);
}

static void *sign_in_loop(void *arg)
{
    (void)arg;
    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__SERVICE;
    caller.client_id = "gateway";
    while (now_s() < t_end) {
        Kreide__Identity__StartSessionRequest in = KREIDE__IDENTITY__START_SESSION_REQUEST__INIT;
        in.username = users[atomic_fetch_add(&next_user, 1) % nusers];
        in.password = (char *)password;
        in.client_address = "127.0.0.1";
        uint8_t body[1024];
        size_t len = kreide__identity__start_session_request__get_packed_size(&in);
        if (len > sizeof(body))
            abort();
        kreide__identity__start_session_request__pack(&in, body);
        kr_uuid_str rid;
        kr_uuid7_new(&rid);
        kr_rpc_request rq = {
            .method = "kreide.identity.Identity/StartSession",
            .request_id = rid.s,
            .deadline_ms = kr_now_ms() + 10000,
            .caller = &caller,
            .body = body,
            .body_len = len,
        };
        double t0 = now_s();
        kr_rpc_result *res = kr_rpc_call_sync(client, &rq);
        char why[300] = "";
        bool ok = res->status == KREIDE__STATUS__OK;
        if (ok) {
            Kreide__Identity__SessionInfo *s = kreide__identity__session_info__unpack(NULL, res->body_len, res->body);
            ok = s != NULL && s->session_token[0] != '\0';
            if (!ok)
                snprintf(why, sizeof(why), "a reply without a session");
            if (s != NULL)
                kreide__identity__session_info__free_unpacked(s, NULL);
        } else {
            snprintf(why, sizeof(why), "%s: %s", res->error_code, res->message);
        }
        kr_rpc_result_free(res);
        record(t0, ok, why);
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(void)
{
    fprintf(stderr, "usage: session_load [-c N] [-d SECONDS] [-w SECONDS] URL USERS_FILE PASSWORD\n");
    return 2;
}

int main(int argc, char **argv)
{
    int threads = 8, opt;
    double secs = 5, warm = 1;
    while ((opt = getopt(argc, argv, "c:d:w:")) != -1) {
        if (opt == 'c')
            threads = (int)strtol(optarg, NULL, 10);
        else if (opt == 'd')
            secs = strtod(optarg, NULL);
        else if (opt == 'w')
            warm = strtod(optarg, NULL);
        else
            return usage();
    }
    if (argc - optind != 3 || threads < 1 || threads > MAX_THREADS || secs <= 0 || warm < 0)
        return usage();
    const char *url = argv[optind], *users_file = argv[optind + 1];
    password = argv[optind + 2];

    FILE *f = fopen(users_file, "r");
    if (f == NULL) {
        perror(users_file);
        return 2;
    }
    char line[256];
    while (nusers < MAX_USERS && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0')
            users[nusers++] = strdup(line);
    }
    fclose(f);
    if (nusers == 0) {
        fprintf(stderr, "session_load: no user names in %s\n", users_file);
        return 2;
    }

    char err[256];
    kr_keyring *keys = NULL;
    if (kr_keyring_parse(getenv("KREIDE_INTERNAL_KEYS"), &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "session_load: KREIDE_INTERNAL_KEYS: %s\n", err);
        return 2;
    }
    if (kr_rpc_client_new("identity", url, keys, &client, err, sizeof(err)) != 0) {
        fprintf(stderr, "session_load: %s\n", err);
        return 2;
    }
    /* Dialling is asynchronous: wait for the connections before the clock starts. */
    for (int i = 0; i < 100 && kr_rpc_client_peers(client) == 0; i++)
        usleep(20000);

    double t0 = now_s();
    t_start = t0 + warm;
    t_end = t_start + secs;
    pthread_t tid[MAX_THREADS];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, sign_in_loop, NULL) != 0) {
            fprintf(stderr, "session_load: cannot start a thread\n");
            return 1;
        }
    /* The generator's own CPU over the measured part only. */
    double until = t_start - now_s();
    if (until > 0)
        usleep((useconds_t)(until * 1e6));
    double cpu0 = self_cpu();
    until = t_end - now_s();
    if (until > 0)
        usleep((useconds_t)(until * 1e6));
    double gen_cpu = self_cpu() - cpu0;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    kr_rpc_client_free(client);
    kr_keyring_free(keys);

    qsort(lat, nlat, sizeof(double), by_value);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    for (char *p = first_error; *p != '\0'; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 32)
            *p = ' ';
    printf("{\"requests\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rps\":%.2f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
           "\"generator_cpu_s\":%.3f,\"server_cpu_s\":0,\"cpu\":{},\"first_error\":\"%s\"}\n",
           requests, errors, secs, (double)requests / secs, p50, p99, gen_cpu, first_error);
    for (size_t i = 0; i < nusers; i++)
        free(users[i]);
    free(lat);
    return errors > 0 ? 1 : 0;
}
