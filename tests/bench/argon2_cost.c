/*
 * argon2_cost — what one argon2id hash costs on this machine.
 *
 *   argon2_cost MEMORY_KIB ITERATIONS LANES [RUNS]
 *
 * Hashes a fixed password RUNS times (default 31) with a 16-byte salt and a
 * 32-byte output, as the identity service does, and prints the minimum,
 * median and maximum CPU time of one hash. CPU time of the process (not wall
 * time) is measured, so a busy neighbour on a shared machine slows it less;
 * pin it to one core (`taskset -c 1`) to read "cost on one core". This is how
 * the defaults in services/identity/password.h were chosen, and the floor a
 * login benchmark compares against.
 *
 *   argon2_cost -j THREADS -d SECONDS [-w WARMUP] MEMORY_KIB ITERATIONS LANES
 *
 * Throughput instead: THREADS threads hash without pause; after WARMUP
 * seconds (default 0) it counts the hashes finished within SECONDS and
 * prints how many per second they made together (and the CPU time the
 * process used in that window). With THREADS = the identity service's worker
 * count this is the floor of password sign-ins: no server can check
 * passwords faster than the machine hashes them with those threads. `make
 * bench` runs it beside the login benchmark.
 */
#include <argon2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const unsigned char salt[16] = "kreide-bench-slt";
static const char *pw = "ein langer satz als passwort";

typedef struct {
    unsigned m, t, p;
    atomic_int stop;
    atomic_long hashes;
    atomic_int failed;
} loop_args;

static void *hash_loop(void *arg)
{
    loop_args *a = arg;
    char enc[256];
    while (!atomic_load(&a->stop)) {
        int rc = argon2id_hash_encoded(a->t, a->m, a->p, pw, strlen(pw), salt, sizeof(salt), 32, enc, sizeof(enc));
        if (rc != ARGON2_OK) {
            atomic_store(&a->failed, rc);
            break;
        }
        atomic_fetch_add(&a->hashes, 1);
    }
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* -j THREADS -d SECONDS [-w WARMUP]: hashes per second with THREADS threads.
 * The threads hash without pause from the start; the hashes finished within
 * the SECONDS after the warm-up are counted, and the process's CPU time over
 * that window, the way the sign-in benchmark counts sign-ins. */
static int throughput(int threads, double seconds, double warm, unsigned m, unsigned t, unsigned p)
{
    if (threads < 1 || threads > 256 || seconds <= 0 || seconds > 3600 || warm < 0 || warm > 60) {
        fprintf(stderr, "argon2_cost: THREADS must be 1..256, SECONDS 0..3600, WARMUP 0..60\n");
        return 2;
    }
    pthread_t tid[256];
    loop_args a = {.m = m, .t = t, .p = p};
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, hash_loop, &a) != 0) {
            fprintf(stderr, "argon2_cost: cannot start a thread\n");
            atomic_store(&a.stop, 1);
            for (int j = 0; j < i; j++)
                pthread_join(tid[j], NULL);
            return 1;
        }
    sleep_s(warm);
    long n0 = atomic_load(&a.hashes);
    double start = wall_now(), cpu0 = cpu_now();
    sleep_s(seconds);
    long n = atomic_load(&a.hashes) - n0;
    double wall = wall_now() - start, cpu = cpu_now() - cpu0;
    atomic_store(&a.stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    if (atomic_load(&a.failed) != 0) {
        fprintf(stderr, "argon2_cost: %s\n", argon2_error_message(atomic_load(&a.failed)));
        return 1;
    }
    printf("argon2id m=%u t=%u p=%u threads=%d: %ld hashes in %.2f s, CPU %.2f s, hashes/s %.2f\n", m, t, p, threads, n, wall, cpu,
           (double)n / wall);
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int threads = 0, opt;
    double seconds = 0, warm = 0;
    while ((opt = getopt(argc, argv, "j:d:w:")) != -1) {
        if (opt == 'j')
            threads = (int)strtol(optarg, NULL, 10);
        else if (opt == 'd')
            seconds = strtod(optarg, NULL);
        else if (opt == 'w')
            warm = strtod(optarg, NULL);
        else
            return 2;
    }
    if (threads > 0 || seconds > 0) {
        if (argc - optind != 3) {
            fprintf(stderr, "usage: argon2_cost -j THREADS -d SECONDS [-w WARMUP] MEMORY_KIB ITERATIONS LANES\n");
            return 2;
        }
        return throughput(threads, seconds, warm, (unsigned)strtoul(argv[optind], NULL, 10),
                          (unsigned)strtoul(argv[optind + 1], NULL, 10), (unsigned)strtoul(argv[optind + 2], NULL, 10));
    }
    argc -= optind - 1;
    argv += optind - 1;
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: argon2_cost MEMORY_KIB ITERATIONS LANES [RUNS]\n"
                        "       argon2_cost -j THREADS -d SECONDS [-w WARMUP] MEMORY_KIB ITERATIONS LANES\n");
        return 2;
    }
    unsigned m = (unsigned)strtoul(argv[1], NULL, 10), t = (unsigned)strtoul(argv[2], NULL, 10),
             p = (unsigned)strtoul(argv[3], NULL, 10);
    int runs = argc == 5 ? (int)strtol(argv[4], NULL, 10) : 31;
    if (runs < 1 || runs > 1000) {
        fprintf(stderr, "argon2_cost: RUNS must be 1..1000\n");
        return 2;
    }
    double *ms = calloc((size_t)runs, sizeof(double));
    if (ms == NULL)
        return 1;
    char enc[256];
    for (int i = 0; i < runs; i++) {
        double start = cpu_now();
        int rc = argon2id_hash_encoded(t, m, p, pw, strlen(pw), salt, sizeof(salt), 32, enc, sizeof(enc));
        if (rc != ARGON2_OK) {
            fprintf(stderr, "argon2_cost: %s\n", argon2_error_message(rc));
            free(ms);
            return 1;
        }
        ms[i] = (cpu_now() - start) * 1e3;
    }
    qsort(ms, (size_t)runs, sizeof(double), by_value);
    printf("argon2id m=%u t=%u p=%u: min %.1f ms, median %.1f ms, max %.1f ms (CPU time, %d runs)\n", m, t, p, ms[0], ms[runs / 2],
           ms[runs - 1], runs);
    free(ms);
    return 0;
}
