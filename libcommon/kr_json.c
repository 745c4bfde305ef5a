#include "kr_json.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ allocation */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrndup(const char *s, size_t len)
{
    char *p = xcalloc(1, len + 1);
    memcpy(p, s, len);
    return p;
}

static json_t *must(json_t *v)
{
    if (v == NULL)
        abort();
    return v;
}

#define MEMBER(type, msg, offset) (*(type *)((char *)(msg) + (offset)))
#define CMEMBER(type, msg, offset) (*(const type *)((const char *)(msg) + (offset)))

/* strtod and printf follow LC_NUMERIC, JSON numbers always use '.': every
 * entry point switches its thread to the C locale for the duration. */
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c_locale == (locale_t)0)
        abort();
}

static locale_t enter_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return uselocale(c_locale);
}

/* ---------------------------------------------------------------- base64 */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const uint8_t *data, size_t len)
{
    char *out = xcalloc(1, (len + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = b64_std[v >> 18];
        out[o++] = b64_std[(v >> 12) & 63];
        out[o++] = b64_std[(v >> 6) & 63];
        out[o++] = b64_std[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
        out[o++] = b64_std[v >> 18];
        out[o++] = b64_std[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64_std[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* Value of one base64 digit in either alphabet; `*alphabet` records which
 * alphabet the digit belongs to (0 = both, 1 = standard, 2 = URL-safe). */
static int b64_digit(unsigned char c, int *alphabet)
{
    *alphabet = 0;
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '/') {
        *alphabet = 1;
        return c == '+' ? 62 : 63;
    }
    if (c == '-' || c == '_') {
        *alphabet = 2;
        return c == '-' ? 62 : 63;
    }
    return -1;
}

/* Strict decoder: one alphabet per string, padding either absent or
 * complete, unused trailing bits zero, no whitespace. Strictness makes every
 * accepted string map to exactly one byte sequence. Returns false on any
 * deviation. `*out` is NULL for empty input. */
static bool base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len % 4 == 0 && len >= 4 && s[len - 1] == '=')
        len -= s[len - 2] == '=' ? 2 : 1;
    if (len % 4 == 1)
        return false;
    size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (n == 0)
        return true;
    uint8_t *buf = xcalloc(1, n);
    int alphabet_seen = 0;
    uint32_t acc = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int alphabet;
        int d = b64_digit((unsigned char)s[i], &alphabet);
        if (d < 0 || (alphabet && alphabet_seen && alphabet != alphabet_seen))
            goto fail;
        if (alphabet)
            alphabet_seen = alphabet;
        acc = acc << 6 | (uint32_t)d;
        if (i % 4 == 3) {
            buf[o++] = (uint8_t)(acc >> 16);
            buf[o++] = (uint8_t)(acc >> 8);
            buf[o++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (len % 4 == 2) {
        if (acc & 0xf)
            goto fail;
        buf[o++] = (uint8_t)(acc >> 4);
    } else if (len % 4 == 3) {
        if (acc & 0x3)
            goto fail;
        buf[o++] = (uint8_t)(acc >> 10);
        buf[o++] = (uint8_t)(acc >> 2);
    }
    *out = buf;
    *out_len = o;
    return true;
fail:
    free(buf);
    return false;
}

/* ---------------------------------------------------------------- numbers */

/* Shortest "%.*g" form of `x` that reads back as exactly `x`, written
 * without exponent while the integer part has at most 17 digits (100, not
 * 1e+02) and with the exponent trimmed as JSON allows (1e300, not 1e+300). */
static void format_double(char *buf, size_t size, double x)
{
    int p = 1;
    for (; p < 17; p++) {
        snprintf(buf, size, "%.*g", p, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    if (x != 0 && fabs(x) >= 1 && fabs(x) < 1e17) {
        int digits = (int)floor(log10(fabs(x))) + 1;
        if (digits > p)
            p = digits;
    }
    snprintf(buf, size, "%.*g", p, x);
    char *e = strchr(buf, 'e');
    if (e != NULL) {
        char *d = e + 1;
        if (*d == '+')
            memmove(d, d + 1, strlen(d));
        else if (*d == '-')
            d++;
        size_t zeros = strspn(d, "0");
        if (zeros > 0 && d[zeros] != '\0')
            memmove(d, d + zeros, strlen(d + zeros) + 1);
    }
}

/* The double nearest to the shortest decimal form of `f`: that is what a
 * reader of the JSON sees, and it converts back to exactly `f`. */
static double float_as_short_double(float f)
{
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f)
            return d;
    }
    return (double)f;
}

/* Length of the JSON number at the start of `s` (RFC 8259 grammar), or 0. */
static size_t json_number_len(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0')
        i++;
    else if (i < len && s[i] >= '1' && s[i] <= '9')
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    return i;
}

typedef enum { NUM_OK, NUM_BAD, NUM_FRACTION, NUM_RANGE } num_status;

/* An integer as sign and magnitude, so every int64 and uint64 fits. */
typedef struct {
    bool neg;
    uint64_t mag;
} wide_int;

/* Exact conversion of a JSON number text to an integer: "1e3", "1.0" and
 * "-0" are integers, "1.5" is not. Works on the digits, not via double, so
 * 64-bit values keep every bit. */
static num_status text_to_int(const char *s, size_t len, wide_int *out)
{
    if (len == 0 || json_number_len(s, len) != len)
        return NUM_BAD;
    size_t i = 0;
    bool neg = s[0] == '-';
    if (neg)
        i++;
    size_t int_start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t int_end = i, frac_start = i, frac_end = i;
    if (i < len && s[i] == '.') {
        frac_start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        frac_end = i;
    }
    int64_t exp = 0;
    if (i < len) {
        bool eneg = false;
        i++;
        if (s[i] == '+' || s[i] == '-')
            eneg = s[i++] == '-';
        for (; i < len; i++)
            if (exp < INT64_C(1000000000000))
                exp = exp * 10 + (s[i] - '0');
        if (eneg)
            exp = -exp;
    }
    /* The significant digits are the integer digits followed by the fraction
     * digits; the value is digits * 10^(exp - fraction length). */
    size_t n_int = int_end - int_start, n = n_int + (frac_end - frac_start);
#define DIGIT_AT(k) (s[(k) < n_int ? int_start + (k) : frac_start + (k)-n_int])
    size_t first = 0, last = n;
    while (first < n && DIGIT_AT(first) == '0')
        first++;
    out->neg = false;
    out->mag = 0;
    if (first == n)
        return NUM_OK;
    while (DIGIT_AT(last - 1) == '0')
        last--;
    int64_t zeros = exp - (int64_t)(frac_end - frac_start) + (int64_t)(n - last);
    if (zeros < 0)
        return NUM_FRACTION;
    if ((int64_t)(last - first) + zeros > 20)
        return NUM_RANGE;
    uint64_t v = 0;
    for (size_t k = first; k < last; k++) {
        unsigned d = (unsigned)(DIGIT_AT(k) - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NUM_RANGE;
        v = v * 10 + d;
    }
#undef DIGIT_AT
    for (int64_t k = 0; k < zeros; k++) {
        if (v > UINT64_MAX / 10)
            return NUM_RANGE;
        v *= 10;
    }
    out->neg = neg;
    out->mag = v;
    return NUM_OK;
}

static num_status json_to_int(const json_t *v, wide_int *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        out->neg = x < 0;
        out->mag = x < 0 ? (uint64_t)(-(x + 1)) + 1 : (uint64_t)x;
        return NUM_OK;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (!isfinite(x))
            return NUM_RANGE;
        if (x != trunc(x))
            return NUM_FRACTION;
        if (fabs(x) >= 18446744073709551616.0)
            return NUM_RANGE;
        out->neg = x < 0;
        out->mag = (uint64_t)fabs(x);
        return NUM_OK;
    }
    if (json_is_string(v))
        return text_to_int(json_string_value(v), json_string_length(v), out);
    return NUM_BAD;
}

/* Range check for a field of `bits` width; fills the matching output. */
static bool wide_fits(wide_int w, bool is_signed, int bits, int64_t *s, uint64_t *u)
{
    uint64_t umax = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
    uint64_t smax = umax >> 1;
    if (!is_signed) {
        if (w.neg && w.mag != 0)
            return false;
        if (w.mag > umax)
            return false;
        *u = w.mag;
        return true;
    }
    if (w.neg) {
        if (w.mag > smax + 1)
            return false;
        *s = w.mag == 0 ? 0 : -(int64_t)(w.mag - 1) - 1;
    } else {
        if (w.mag > smax)
            return false;
        *s = (int64_t)w.mag;
    }
    return true;
}

/* ------------------------------------------------------------ errors */

typedef struct {
    kr_json_error *err;
    char path[256];
    char tail[sizeof(((kr_json_error *)0)->field)];
    size_t path_len;
    bool failed;
} decode_ctx;

static size_t path_push(decode_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends to the dotted path; returns the length to restore with path_pop.
 * An overlong path is truncated, which only shortens error messages. */
static size_t path_push(decode_ctx *c, const char *fmt, ...)
{
    size_t mark = c->path_len;
    if (c->path_len < sizeof c->path - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->path + c->path_len, sizeof c->path - c->path_len, fmt, ap);
        va_end(ap);
        if (n > 0)
            c->path_len += (size_t)n < sizeof c->path - c->path_len ? (size_t)n : sizeof c->path - 1 - c->path_len;
    }
    return mark;
}

static size_t path_push_name(decode_ctx *c, const char *name)
{
    return path_push(c, c->path_len ? ".%s" : "%s", name);
}

static void path_pop(decode_ctx *c, size_t mark)
{
    c->path_len = mark;
    c->path[mark] = '\0';
}

/* Copies at most `max` bytes of `s` for quoting in a message: stops at a
 * character boundary and replaces quotes, backslashes and control bytes so
 * the message stays one readable line. */
static void quote_excerpt(char *buf, size_t size, const char *s, size_t len, size_t max)
{
    size_t n = len;
    if (n > max)
        n = max;
    if (n + 4 > size)
        n = size - 4;
    while (n > 0 && n < len && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[o++] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' || ch == '\'' ? '?' : (char)ch;
    }
    if (n < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
}

static void describe_value(char *buf, size_t size, const json_t *v)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        snprintf(buf, size, "an object");
        break;
    case JSON_ARRAY:
        snprintf(buf, size, "an array");
        break;
    case JSON_STRING:
        quote_excerpt(tmp, sizeof tmp, json_string_value(v), json_string_length(v), 40);
        snprintf(buf, size, "string \"%s\"", tmp);
        break;
    case JSON_INTEGER:
        snprintf(buf, size, "number %" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        format_double(tmp, sizeof tmp, json_real_value(v));
        snprintf(buf, size, "number %s", tmp);
        break;
    case JSON_TRUE:
        snprintf(buf, size, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, size, "false");
        break;
    case JSON_NULL:
        snprintf(buf, size, "null");
        break;
    }
}

static void set_text(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* snprintf that truncates quietly: error texts are cut rather than lost. */
static void set_text(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

/* The path if it has at most `max` bytes, else "..." and its last bytes:
 * the end of a path names the field, so that is the part to keep. */
static const char *path_tail(decode_ctx *c, size_t max)
{
    if (c->path_len <= max)
        return c->path;
    const char *t = c->path + c->path_len - (max - 3);
    while (((unsigned char)*t & 0xc0) == 0x80)
        t++;
    snprintf(c->tail, sizeof c->tail, "...%s", t);
    return c->tail;
}

static void fail(decode_ctx *c, bool about_field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first error; `about_field` puts the current path in front. */
static void fail(decode_ctx *c, bool about_field, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    if (c->err == NULL)
        return;
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (about_field && c->path_len) {
        set_text(c->err->field, sizeof c->err->field, "%s", path_tail(c, sizeof c->err->field - 1));
        set_text(c->err->message, sizeof c->err->message, "field '%s': %s", path_tail(c, 96), text);
    } else {
        c->err->field[0] = '\0';
        set_text(c->err->message, sizeof c->err->message, "%s", text);
    }
}

static void fail_type(decode_ctx *c, const char *expected, const json_t *v)
{
    char got[96];
    describe_value(got, sizeof got, v);
    fail(c, true, "expected %s, got %s", expected, got);
}

/* ---------------------------------------------------------------- decode */

static const char *int_kind(const ProtobufCFieldDescriptor *f, bool *is_signed, int *bits)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *is_signed = true;
        *bits = 32;
        return "a 32-bit integer";
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *is_signed = false;
        *bits = 32;
        return "an unsigned 32-bit integer";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *is_signed = true;
        *bits = 64;
        return "a 64-bit integer";
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *is_signed = false;
        *bits = 64;
        return "an unsigned 64-bit integer";
    default:
        return NULL;
    }
}

static size_t value_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

static bool decode_integer(decode_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *slot)
{
    bool is_signed = false;
    int bits = 0;
    const char *kind = int_kind(f, &is_signed, &bits);
    wide_int w;
    switch (json_to_int(v, &w)) {
    case NUM_OK:
        break;
    case NUM_BAD:
        fail_type(c, kind, v);
        return false;
    case NUM_FRACTION: {
        char got[96];
        describe_value(got, sizeof got, v);
        fail(c, true, "expected %s, got %s which has a fractional part", kind, got);
        return false;
    }
    case NUM_RANGE: {
        char got[96];
        describe_value(got, sizeof got, v);
        fail(c, true, "%s is out of range for %s", got, kind);
        return false;
    }
    }
    int64_t s = 0;
    uint64_t u = 0;
    if (!wide_fits(w, is_signed, bits, &s, &u)) {
        char got[96];
        describe_value(got, sizeof got, v);
        fail(c, true, "%s is out of range for %s", got, kind);
        return false;
    }
    if (bits == 32 && is_signed)
        *(int32_t *)slot = (int32_t)s;
    else if (bits == 32)
        *(uint32_t *)slot = (uint32_t)u;
    else if (is_signed)
        *(int64_t *)slot = s;
    else
        *(uint64_t *)slot = u;
    return true;
}

static bool decode_floating(decode_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *slot)
{
    bool is_float = f->type == PROTOBUF_C_TYPE_FLOAT;
    const char *kind = is_float ? "a number (32-bit float)" : "a number";
    double x;
    if (json_is_number(v)) {
        x = json_number_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (strcmp(s, "NaN") == 0 && len == 3) {
            x = NAN;
        } else if (strcmp(s, "Infinity") == 0 && len == 8) {
            x = INFINITY;
        } else if (strcmp(s, "-Infinity") == 0 && len == 9) {
            x = -INFINITY;
        } else if (len > 0 && json_number_len(s, len) == len) {
            errno = 0;
            x = strtod(s, NULL);
            if (errno == ERANGE && isinf(x)) {
                char got[96];
                describe_value(got, sizeof got, v);
                fail(c, true, "%s is out of range for %s", got, kind);
                return false;
            }
        } else {
            fail_type(c, kind, v);
            return false;
        }
    } else {
        fail_type(c, kind, v);
        return false;
    }
    if (is_float) {
        if (isfinite(x) && isinf((float)x)) {
            char got[96];
            describe_value(got, sizeof got, v);
            fail(c, true, "%s is out of range for %s", got, kind);
            return false;
        }
        *(float *)slot = (float)x;
    } else {
        *(double *)slot = x;
    }
    return true;
}

static bool decode_enum(decode_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *slot)
{
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    const ProtobufCEnumValue *ev = NULL;
    char got[96];
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) == json_string_length(v))
            ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
        if (ev == NULL) {
            describe_value(got, sizeof got, v);
            fail(c, true, "%s is not a value of enum %s", got, ed->name);
            return false;
        }
    } else if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x >= INT32_MIN && x <= INT32_MAX)
            ev = protobuf_c_enum_descriptor_get_value(ed, (int)x);
        if (ev == NULL) {
            describe_value(got, sizeof got, v);
            fail(c, true, "%s is not a value of enum %s", got, ed->name);
            return false;
        }
    } else {
        char expected[160];
        snprintf(expected, sizeof expected, "a value name of enum %s", ed->name);
        fail_type(c, expected, v);
        return false;
    }
    *(int *)slot = ev->value;
    return true;
}

static bool decode_message_into(decode_ctx *c, const ProtobufCMessageDescriptor *desc, const json_t *obj, ProtobufCMessage *msg,
                                int depth);

/* Decodes one value (a single element for repeated fields) into `slot`.
 * Pointer-typed results are stored before they are filled, so a failure
 * leaves a message that protobuf_c_message_free_unpacked releases fully. */
static bool decode_value(decode_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *slot, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return decode_integer(c, f, v, slot);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return decode_floating(c, f, v, slot);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) {
            fail_type(c, "true or false", v);
            return false;
        }
        *(protobuf_c_boolean *)slot = json_is_true(v);
        return true;
    case PROTOBUF_C_TYPE_ENUM:
        return decode_enum(c, f, v, slot);
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(v)) {
            fail_type(c, "a string", v);
            return false;
        }
        /* protobuf-c strings end at the first NUL: refuse what would be cut. */
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            fail(c, true, "strings must not contain the character U+0000");
            return false;
        }
        /* Always a fresh allocation, even for "": free_unpacked frees every
         * repeated element and every singular string that is not the
         * descriptor's shared default. */
        *(char **)slot = xstrndup(json_string_value(v), json_string_length(v));
        return true;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = slot;
        if (!json_is_string(v)) {
            fail_type(c, "a base64 string", v);
            return false;
        }
        if (!base64_decode(json_string_value(v), json_string_length(v), &bd->data, &bd->len)) {
            char got[96];
            describe_value(got, sizeof got, v);
            fail(c, true, "expected base64 (standard or URL-safe alphabet), got %s", got);
            return false;
        }
        return true;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        if (!json_is_object(v)) {
            fail_type(c, "an object", v);
            return false;
        }
        if (depth + 1 > KR_JSON_MAX_DEPTH) {
            fail(c, true, "messages nest deeper than %d levels", KR_JSON_MAX_DEPTH);
            return false;
        }
        ProtobufCMessage *sub = xcalloc(1, md->sizeof_message);
        protobuf_c_message_init(md, sub);
        *(ProtobufCMessage **)slot = sub;
        return decode_message_into(c, md, v, sub, depth + 1);
    }
    }
    fail(c, true, "has a type this codec does not support");
    return false;
}

static bool decode_repeated(decode_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, ProtobufCMessage *msg, int depth)
{
    if (!json_is_array(v)) {
        fail_type(c, "an array", v);
        return false;
    }
    size_t n = json_array_size(v);
    if (n == 0)
        return true;
    size_t size = value_size(f->type);
    char *arr = xcalloc(n, size);
    MEMBER(void *, msg, f->offset) = arr;
    size_t *count = &MEMBER(size_t, msg, f->quantifier_offset);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        size_t mark = path_push(c, "[%zu]", i);
        /* Counted before decoding: a zeroed slot is safe to free. */
        *count = i + 1;
        if (json_is_null(e)) {
            fail(c, true, "null is not allowed as a list element");
            return false;
        }
        if (!decode_value(c, f, e, arr + i * size, depth))
            return false;
        path_pop(c, mark);
    }
    return true;
}

/* True when `key` is the lowerCamelCase JSON name of proto field `name`
 * (protoc's rule: drop each '_' and upper-case the letter after it). */
static bool is_json_name(const char *name, const char *key)
{
    bool upper = false;
    for (; *name; name++) {
        if (*name == '_') {
            upper = true;
            continue;
        }
        char ch = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        upper = false;
        if (*key++ != ch)
            return false;
    }
    return *key == '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *desc, const char *key, size_t key_len)
{
    if (strlen(key) != key_len)
        return NULL;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
    if (f != NULL)
        return f;
    for (unsigned i = 0; i < desc->n_fields; i++)
        if (is_json_name(desc->fields[i].name, key))
            return &desc->fields[i];
    return NULL;
}

static bool decode_field(decode_ctx *c, const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *f, const json_t *v,
                         ProtobufCMessage *msg, int depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return decode_repeated(c, f, v, msg, depth);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = &MEMBER(uint32_t, msg, f->quantifier_offset);
        if (*which != 0) {
            const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(desc, *which);
            fail(c, true, "only one of '%s' and '%s' may be set, they belong to the same oneof", other ? other->name : "?",
                 f->name);
            return false;
        }
        /* The case is set first so free_unpacked sees what is stored. */
        *which = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0) {
        MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
    }
    void *slot = (char *)msg + f->offset;
    /* A proto3 string field may still point at the shared empty string. */
    if (f->type == PROTOBUF_C_TYPE_STRING)
        *(char **)slot = NULL;
    return decode_value(c, f, v, slot, depth);
}

static bool decode_message_into(decode_ctx *c, const ProtobufCMessageDescriptor *desc, const json_t *obj, ProtobufCMessage *msg,
                                int depth)
{
    /* Which key set each field, to refuse a field given under both names. */
    const char **seen = xcalloc(desc->n_fields, sizeof *seen);
    const char *key;
    size_t key_len;
    const json_t *v;
    bool ok = true;
    json_object_keylen_foreach((json_t *)obj, key, key_len, v)
    {
        const ProtobufCFieldDescriptor *f = find_field(desc, key, key_len);
        if (f == NULL) {
            char name[72];
            quote_excerpt(name, sizeof name, key, key_len, 64);
            size_t mark = path_push_name(c, name);
            fail(c, false, "unknown field '%s'", path_tail(c, 96));
            if (c->err)
                set_text(c->err->field, sizeof c->err->field, "%s", path_tail(c, sizeof c->err->field - 1));
            path_pop(c, mark);
            ok = false;
            break;
        }
        size_t index = (size_t)(f - desc->fields);
        size_t mark = path_push_name(c, f->name);
        if (seen[index] != NULL) {
            fail(c, true, "given twice, as '%s' and as '%s'", seen[index], key);
            ok = false;
            break;
        }
        seen[index] = key;
        if (!json_is_null(v) && !decode_field(c, desc, f, v, msg, depth)) {
            ok = false;
            break;
        }
        path_pop(c, mark);
    }
    free(seen);
    return ok;
}

static ProtobufCMessage *decode_root(const ProtobufCMessageDescriptor *desc, const json_t *obj, kr_json_error *err)
{
    decode_ctx c = {.err = err};
    if (err) {
        err->field[0] = '\0';
        err->message[0] = '\0';
    }
    if (obj == NULL || !json_is_object(obj)) {
        char got[96] = "nothing";
        if (obj)
            describe_value(got, sizeof got, obj);
        fail(&c, false, "expected a JSON object for %s, got %s", desc->name, got);
        return NULL;
    }
    ProtobufCMessage *msg = xcalloc(1, desc->sizeof_message);
    protobuf_c_message_init(desc, msg);
    if (!decode_message_into(&c, desc, obj, msg, 1)) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    return msg;
}

ProtobufCMessage *kr_json_decode_obj(const ProtobufCMessageDescriptor *desc, const json_t *obj, kr_json_error *err)
{
    locale_t old = enter_c_locale();
    ProtobufCMessage *msg = decode_root(desc, obj, err);
    uselocale(old);
    return msg;
}

ProtobufCMessage *kr_json_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len, kr_json_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (root == NULL) {
        if (err) {
            err->field[0] = '\0';
            set_text(err->message, sizeof err->message, "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
        }
        return NULL;
    }
    ProtobufCMessage *msg = kr_json_decode_obj(desc, root, err);
    json_decref(root);
    return msg;
}

/* ---------------------------------------------------------------- encode */

/* Copies `s`, replacing each byte that does not start a valid UTF-8
 * sequence (RFC 3629: no overlongs, no surrogates, at most U+10FFFF) by
 * U+FFFD, so the output is always valid JSON text. */
static json_t *sanitized_string(const char *s)
{
    size_t len = strlen(s);
    char *out = xcalloc(len * 3 + 1, 1);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char b = p[i];
        size_t n = b < 0x80 ? 1 : (b >= 0xc2 && b <= 0xdf) ? 2 : (b >= 0xe0 && b <= 0xef) ? 3 : (b >= 0xf0 && b <= 0xf4) ? 4 : 0;
        bool valid = n > 0 && i + n <= len;
        for (size_t k = 1; valid && k < n; k++)
            valid = (p[i + k] & 0xc0) == 0x80;
        if (valid && n == 3)
            valid = !(b == 0xe0 && p[i + 1] < 0xa0) && !(b == 0xed && p[i + 1] > 0x9f);
        if (valid && n == 4)
            valid = !(b == 0xf0 && p[i + 1] < 0x90) && !(b == 0xf4 && p[i + 1] > 0x8f);
        if (valid) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    json_t *v = must(json_stringn(out, o));
    free(out);
    return v;
}

static json_t *encode_message(const ProtobufCMessage *msg, int depth);

static json_t *encode_value(const ProtobufCFieldDescriptor *f, const void *slot, int depth)
{
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return must(json_integer(*(const int32_t *)slot));
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return must(json_integer(*(const uint32_t *)slot));
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)slot);
        return must(json_string(buf));
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)slot);
        return must(json_string(buf));
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double x = f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)slot : *(const double *)slot;
        if (isnan(x))
            return must(json_string("NaN"));
        if (isinf(x))
            return must(json_string(x > 0 ? "Infinity" : "-Infinity"));
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            x = float_as_short_double(*(const float *)slot);
        return must(json_real(x));
    }
    case PROTOBUF_C_TYPE_BOOL:
        return must(json_boolean(*(const protobuf_c_boolean *)slot));
    case PROTOBUF_C_TYPE_ENUM: {
        int x = *(const int *)slot;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, x);
        /* ProtoJSON writes values the descriptor does not know as numbers. */
        return must(ev ? json_string(ev->name) : json_integer(x));
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)slot;
        if (s == NULL)
            s = "";
        json_t *v = json_string(s);
        return v ? v : sanitized_string(s);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = slot;
        char *text = base64_encode(bd->data, bd->len);
        json_t *v = must(json_string(text));
        free(text);
        return v;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)slot;
        return sub ? encode_message(sub, depth + 1) : must(json_object());
    }
    }
    return must(json_null());
}

static json_t *encode_message(const ProtobufCMessage *msg, int depth)
{
    if (depth > KR_JSON_MAX_DEPTH)
        return NULL;
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    json_t *obj = must(json_object());
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        const void *slot = (const char *)msg + f->offset;
        json_t *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = CMEMBER(size_t, msg, f->quantifier_offset);
            const char *arr = *(const char *const *)slot;
            size_t size = value_size(f->type);
            v = must(json_array());
            for (size_t k = 0; k < n; k++) {
                json_t *e = encode_value(f, arr + k * size, depth);
                if (e == NULL) {
                    json_decref(v);
                    json_decref(obj);
                    return NULL;
                }
                json_array_append_new(v, e);
            }
        } else {
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && CMEMBER(uint32_t, msg, f->quantifier_offset) != f->id)
                continue;
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                !CMEMBER(protobuf_c_boolean, msg, f->quantifier_offset))
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(const void *const *)slot == NULL &&
                !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                continue;
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type == PROTOBUF_C_TYPE_STRING && *(const void *const *)slot == NULL)
                continue;
            v = encode_value(f, slot, depth);
            if (v == NULL) {
                json_decref(obj);
                return NULL;
            }
        }
        json_object_set_new(obj, f->name, v);
    }
    return obj;
}

json_t *kr_json_encode_obj(const ProtobufCMessage *msg)
{
    locale_t old = enter_c_locale();
    json_t *obj = encode_message(msg, 1);
    uselocale(old);
    return obj;
}

/* Output buffer with a hard ceiling (KR_JSON_MAX_OUTPUT). */
typedef struct {
    char *p;
    size_t len, cap;
    bool overflow;
} outbuf;

static void out_put(outbuf *b, const char *s, size_t n)
{
    if (b->overflow)
        return;
    if (n > KR_JSON_MAX_OUTPUT - b->len) {
        b->overflow = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void out_string(outbuf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    out_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        out_put(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        size_t n = 2;
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        out_put(b, esc, n);
    }
    out_put(b, s + run, len - run);
    out_put(b, "\"", 1);
}

/* The tree is what encode_message built, so its depth is already bounded. */
static void out_value(outbuf *b, const json_t *v)
{
    char buf[40];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *e;
        bool first = true;
        out_put(b, "{", 1);
        json_object_keylen_foreach((json_t *)v, key, key_len, e)
        {
            if (!first)
                out_put(b, ",", 1);
            first = false;
            out_string(b, key, key_len);
            out_put(b, ":", 1);
            out_value(b, e);
        }
        out_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        out_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                out_put(b, ",", 1);
            out_value(b, json_array_get(v, i));
        }
        out_put(b, "]", 1);
        break;
    case JSON_STRING:
        out_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        out_put(b, buf, strlen(buf));
        break;
    case JSON_REAL:
        format_double(buf, sizeof buf, json_real_value(v));
        /* Keep it a real for readers that distinguish (and keep -0.0's sign). */
        if (strpbrk(buf, ".eEn") == NULL)
            strcat(buf, ".0");
        out_put(b, buf, strlen(buf));
        break;
    case JSON_TRUE:
        out_put(b, "true", 4);
        break;
    case JSON_FALSE:
        out_put(b, "false", 5);
        break;
    case JSON_NULL:
        out_put(b, "null", 4);
        break;
    }
}

char *kr_json_encode(const ProtobufCMessage *msg, size_t *len_out)
{
    json_t *obj = kr_json_encode_obj(msg);
    if (obj == NULL)
        return NULL;
    outbuf b = {0};
    locale_t old = enter_c_locale();
    out_value(&b, obj);
    uselocale(old);
    json_decref(obj);
    if (b.overflow) {
        free(b.p);
        return NULL;
    }
    if (len_out)
        *len_out = b.len;
    return b.p;
}
