#include "kr_url.h"

int kr_url_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long kr_url_decode(const char *src, size_t len, char *dst, size_t cap, unsigned flags)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (len - i < 3)
                return -1;
            int hi = kr_url_hex_digit(src[i + 1]), lo = kr_url_hex_digit(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            if (c == '\0' || (c == '/' && (flags & KR_URL_NO_SLASH)))
                return -1;
            i += 2;
        } else if (c == '+' && (flags & KR_URL_FORM)) {
            c = ' ';
        }
        if (o + 1 >= cap)
            return -1;
        dst[o++] = c;
    }
    if (cap == 0)
        return -1;
    dst[o] = '\0';
    return (long)o;
}
