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
 */
#include <argon2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: argon2_cost MEMORY_KIB ITERATIONS LANES [RUNS]\n");
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
    const unsigned char salt[16] = "kreide-bench-slt";
    const char *pw = "ein langer satz als passwort";
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
