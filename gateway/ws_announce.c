/* Reading a log event's announcement as text (ws_announce.h). */
#include "ws_announce.h"

#include <string.h>

typedef struct {
    const char *p, *end;
} raw_text;

static void skip_ws(raw_text *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

/* Past a string whose opening quote is at t->p; *escaped tells whether it
 * holds an escape. */
static bool skip_string(raw_text *t, bool *escaped)
{
    *escaped = false;
    if (t->p >= t->end || *t->p != '"')
        return false;
    for (t->p++; t->p < t->end; t->p++) {
        unsigned char ch = (unsigned char)*t->p;
        if (ch == '"') {
            t->p++;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            *escaped = true;
            if (++t->p >= t->end)
                return false;
        }
    }
    return false;
}

/* Past a number, true, false or null (loosely: their characters). */
static bool skip_literal(raw_text *t)
{
    const char *start = t->p;
    while (t->p < t->end && *t->p != '\0' && strchr("-+.0123456789eEtruefalsn", *t->p) != NULL)
        t->p++;
    return t->p > start;
}

/* Past one value at nesting depth `depth`. */
static bool skip_value(raw_text *t, int depth)
{
    skip_ws(t);
    if (t->p >= t->end || depth > GW_WS_ANNOUNCE_MAX_DEPTH)
        return false;
    char open = *t->p;
    bool escaped;
    if (open == '"')
        return skip_string(t, &escaped);
    if (open != '{' && open != '[')
        return skip_literal(t);
    char close = open == '{' ? '}' : ']';
    t->p++;
    skip_ws(t);
    if (t->p < t->end && *t->p == close) {
        t->p++;
        return true;
    }
    for (;;) {
        if (open == '{') {
            skip_ws(t);
            if (!skip_string(t, &escaped))
                return false;
            skip_ws(t);
            if (t->p >= t->end || *t->p != ':')
                return false;
            t->p++;
        }
        if (!skip_value(t, depth + 1))
            return false;
        skip_ws(t);
        if (t->p >= t->end)
            return false;
        if (*t->p == close) {
            t->p++;
            return true;
        }
        if (*t->p != ',')
            return false;
        t->p++;
    }
}

static bool span_is(const char *s, size_t len, const char *text)
{
    return len == strlen(text) && memcmp(s, text, len) == 0;
}

/* A JSON string of 1 to 18 digits whose value is above 0. */
static bool read_position(const char *v, size_t len, int64_t *out)
{
    if (len < 3 || len > 20 || v[0] != '"' || v[len - 1] != '"')
        return false;
    int64_t x = 0;
    for (size_t i = 1; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return x > 0;
}

bool gw_ws_announcement_read(const char *data, size_t len, gw_ws_announcement *out)
{
    const char *kind = NULL, *position = NULL;
    size_t kind_len = 0, position_len = 0;
    memset(out, 0, sizeof(*out));
    raw_text t = {data, data + len};
    skip_ws(&t);
    if (t.p >= t.end || *t.p != '{')
        return false;
    t.p++;
    skip_ws(&t);
    if (t.p < t.end && *t.p == '}')
        return false; /* nothing in it */
    for (;;) {
        skip_ws(&t);
        const char *key = t.p + 1;
        bool escaped;
        if (!skip_string(&t, &escaped) || escaped)
            return false;
        size_t key_len = (size_t)(t.p - 1 - key);
        skip_ws(&t);
        if (t.p >= t.end || *t.p != ':')
            return false;
        t.p++;
        skip_ws(&t);
        const char *value = t.p;
        if (!skip_value(&t, 1))
            return false;
        size_t value_len = (size_t)(t.p - value);
        if (span_is(key, key_len, "kind"))
            kind = value, kind_len = value_len;
        else if (span_is(key, key_len, "position"))
            position = value, position_len = value_len;
        else if (span_is(key, key_len, "event"))
            out->event = value, out->event_len = value_len;
        else if (span_is(key, key_len, "members"))
            out->members = value, out->members_len = value_len;
        skip_ws(&t);
        if (t.p >= t.end)
            return false;
        if (*t.p == '}')
            break;
        if (*t.p != ',')
            return false;
        t.p++;
    }
    t.p++;
    skip_ws(&t);
    if (t.p != t.end)
        return false;
    if (kind == NULL || kind[0] != '"' || span_is(kind, kind_len, "\"typing\"") || span_is(kind, kind_len, "\"report\""))
        return false;
    return out->event != NULL && out->event[0] == '{' && out->members != NULL && out->members[0] == '[' && position != NULL &&
           read_position(position, position_len, &out->position);
}

long gw_ws_members_copy(const char *members, size_t members_len, char *out)
{
    if (members_len < 2 || members[0] != '[' || members[members_len - 1] != ']')
        return -1;
    raw_text t = {members + 1, members + members_len - 1};
    long n = 0;
    skip_ws(&t);
    while (t.p < t.end) {
        const char *start = t.p + 1;
        bool escaped;
        if (!skip_string(&t, &escaped) || escaped)
            return -1;
        size_t k = (size_t)(t.p - 1 - start);
        memcpy(out, start, k);
        out[k] = '\0';
        out += k + 1;
        n++;
        skip_ws(&t);
        if (t.p < t.end) {
            if (*t.p != ',')
                return -1;
            t.p++;
            skip_ws(&t);
            if (t.p >= t.end)
                return -1; /* a trailing comma */
        }
    }
    return n;
}
