#include "kr_id.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

void kr_random_bytes(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            /* Without randomness no id or key is safe: stop rather than guess. */
            perror("getrandom");
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

void kr_uuid7_at(kr_uuid_str *out, uint64_t unix_ms)
{
    unsigned char b[16];
    kr_random_bytes(b + 6, sizeof(b) - 6);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(unix_ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f)); /* version 7 */
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f)); /* variant 10 */

    static const char hex[] = "0123456789abcdef";
    char *o = out->s; /* cppcheck-suppress ctuuninitvar ; written, never read */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

void kr_uuid7_new(kr_uuid_str *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    kr_uuid7_at(out, (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

bool kr_uuid_valid(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < KR_UUID_STRLEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return s[KR_UUID_STRLEN] == '\0';
}
