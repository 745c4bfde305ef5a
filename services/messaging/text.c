/* The markdown subset and the other checks of what people type: pure
 * functions without I/O, unit-tested in text_test.c.
 *
 * Messages are CommonMark (https://spec.commonmark.org/0.30/) restricted to
 * what is safe to show anywhere: the server refuses raw HTML, images (a
 * remote image reveals who read a message to its host), link targets other
 * than http, https and mailto, and link reference definitions (which would
 * smuggle targets past the inline check). Clients render the rest with raw
 * HTML switched off as well. Inside code spans and fenced code blocks
 * everything is literal text, so a '<' there is fine. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "messaging.h"

/* Decodes one UTF-8 sequence at p (at most `left` bytes); returns its
 * length and the code point, or 0 for an invalid sequence (overlong forms,
 * surrogates and values above U+10FFFF included). */
static size_t utf8_decode(const unsigned char *p, size_t left, unsigned *cp)
{
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    unsigned min;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        min = 0x80;
        c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        min = 0x800;
        c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        min = 0x10000;
        c &= 0x07;
    } else {
        return 0;
    }
    if (len > left)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

static bool is_control(unsigned cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

long msg_plain_length(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    long n = 0;
    while (left > 0) {
        unsigned cp;
        size_t len = utf8_decode(p, left, &cp);
        if (len == 0 || is_control(cp))
            return -1;
        p += len;
        left -= len;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------- the subset */

/* Length of the run of character `c` starting at s[i]. */
static size_t run_length(const char *s, size_t len, size_t i, char c)
{
    size_t n = 0;
    while (i + n < len && s[i + n] == c)
        n++;
    return n;
}

/* Start of the line after the one holding s[i] (len when none). */
static size_t next_line(const char *s, size_t len, size_t i)
{
    while (i < len && s[i] != '\n')
        i++;
    return i < len ? i + 1 : len;
}

/* A fence line: up to 3 spaces, then 3 or more ` or ~; a backtick fence's
 * info string may hold no backtick (CommonMark 4.5). Sets *c and *n. */
static bool fence_at(const char *s, size_t len, size_t line, char *c, size_t *n)
{
    size_t i = line, sp = 0;
    while (i < len && s[i] == ' ' && sp < 4) {
        i++;
        sp++;
    }
    if (sp > 3 || i >= len || (s[i] != '`' && s[i] != '~'))
        return false;
    *c = s[i];
    *n = run_length(s, len, i, s[i]);
    if (*n < 3)
        return false;
    for (size_t j = i + *n; *c == '`' && j < len && s[j] != '\n'; j++) {
        if (s[j] == '`')
            return false;
    }
    return true;
}

/* A closing fence for (c, n): the same character at least n times, then
 * only white space to the end of the line. */
static bool closes_fence(const char *s, size_t len, size_t line, char c, size_t n)
{
    size_t i = line, sp = 0;
    while (i < len && s[i] == ' ' && sp < 4) {
        i++;
        sp++;
    }
    if (sp > 3 || i >= len || s[i] != c)
        return false;
    size_t m = run_length(s, len, i, c);
    if (m < n)
        return false;
    for (i += m; i < len && s[i] != '\n'; i++) {
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    }
    return true;
}

/* A link reference definition starts a line: up to 3 spaces, "[label]:". */
static bool refdef_at(const char *s, size_t len, size_t line)
{
    size_t i = line, sp = 0;
    while (i < len && s[i] == ' ' && sp < 4) {
        i++;
        sp++;
    }
    if (sp > 3 || i >= len || s[i] != '[')
        return false;
    for (i++; i < len && s[i] != '\n'; i++) {
        if (s[i] == '\\' && i + 1 < len) {
            i++;
            continue;
        }
        if (s[i] == ']')
            return i + 1 < len && s[i + 1] == ':';
    }
    return false;
}

/* True when the line starting at `line` holds only white space (or the
 * text ends there). */
static bool blank_line(const char *s, size_t len, size_t line)
{
    for (size_t i = line; i < len && s[i] != '\n'; i++) {
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    }
    return true;
}

/* Where the code span opened by the n backticks at s[i] ends (the index
 * after its closing run), or 0 when no run of exactly n backticks follows
 * on the same line: then the backticks count as literal. CommonMark lets a
 * span continue over the lines of a paragraph, but whether a line still
 * belongs to the paragraph depends on block structure this check does not
 * model, so a span ending on a later line is not trusted to hide anything. */
static size_t code_span_end(const char *s, size_t len, size_t i, size_t n)
{
    size_t j = i + n;
    while (j < len && s[j] != '\n') {
        if (s[j] == '`') {
            size_t m = run_length(s, len, j, '`');
            if (m == n)
                return j + m;
            j += m;
            continue;
        }
        j++;
    }
    return 0;
}

static bool allowed_target(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n'))
        i++;
    if (i < len && s[i] == '<')
        i++;
    static const char *const schemes[] = {"https://", "http://", "mailto:"};
    for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++) {
        size_t n = strlen(schemes[k]);
        if (len - i >= n && strncasecmp(s + i, schemes[k], n) == 0)
            return true;
    }
    return false;
}

/* The markdown checks proper, on text already known to be valid UTF-8
 * without stray control characters. Fenced code blocks and code spans are
 * literal and skipped; everything else is looked at. */
static msg_text_error check_markdown(const char *s, size_t len, size_t *offset)
{
    bool line_start = true, in_fence = false;
    char fence_c = 0;
    size_t fence_n = 0;
    size_t i = 0;
    while (i < len) {
        if (line_start) {
            line_start = false;
            if (in_fence) {
                if (closes_fence(s, len, i, fence_c, fence_n))
                    in_fence = false;
                i = next_line(s, len, i);
                line_start = true;
                continue;
            }
            if (fence_at(s, len, i, &fence_c, &fence_n)) {
                in_fence = true;
                i = next_line(s, len, i);
                line_start = true;
                continue;
            }
            if (refdef_at(s, len, i)) {
                *offset = i;
                return MSG_TEXT_LINK_REFDEF;
            }
        }
        char c = s[i];
        if (c == '\n') {
            line_start = true;
            i++;
            continue;
        }
        if (c == '\\' && i + 1 < len && s[i + 1] != '\n') {
            i += 2; /* an escaped character is literal */
            continue;
        }
        if (c == '`') {
            size_t n = run_length(s, len, i, '`');
            size_t close = code_span_end(s, len, i, n);
            i = close != 0 ? close : i + n;
            continue;
        }
        if (c == '<' && i + 1 < len &&
            (isalpha((unsigned char)s[i + 1]) || s[i + 1] == '/' || s[i + 1] == '!' || s[i + 1] == '?')) {
            *offset = i;
            return MSG_TEXT_HTML;
        }
        if (c == '!' && i + 1 < len && s[i + 1] == '[') {
            /* ![alt](target) is an image; "![" alone is just text. The
             * alt text may run over the lines of its paragraph. */
            for (size_t j = i + 2; j + 1 < len && !(s[j] == '\n' && blank_line(s, len, j + 1)); j++) {
                if (s[j] == ']' && s[j + 1] == '(') {
                    *offset = i;
                    return MSG_TEXT_IMAGE;
                }
            }
        }
        if (c == ']' && i + 1 < len && s[i + 1] == '(' && !allowed_target(s, len, i + 2)) {
            *offset = i + 2;
            return MSG_TEXT_LINK_SCHEME;
        }
        i++;
    }
    return MSG_TEXT_OK;
}

msg_text_error msg_text_check(const char *text, size_t max_chars, size_t *offset)
{
    *offset = 0;
    size_t len = strlen(text);
    if (len > MSG_TEXT_MAX_BYTES)
        return MSG_TEXT_TOO_LONG;
    const unsigned char *p = (const unsigned char *)text;
    size_t chars = 0;
    bool blank = true;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            *offset = i;
            return MSG_TEXT_BAD_UTF8;
        }
        if (is_control(cp) && cp != '\n' && cp != '\t') {
            *offset = i;
            return MSG_TEXT_CONTROL;
        }
        if (cp != ' ' && cp != '\n' && cp != '\t')
            blank = false;
        chars++;
        i += n;
    }
    if (blank)
        return MSG_TEXT_EMPTY;
    if (chars > max_chars)
        return MSG_TEXT_TOO_LONG;
    return check_markdown(text, len, offset);
}

const char *msg_text_strerror(msg_text_error e)
{
    switch (e) {
    case MSG_TEXT_OK:
        return "acceptable";
    case MSG_TEXT_EMPTY:
        return "the text is empty";
    case MSG_TEXT_TOO_LONG:
        return "the text is too long";
    case MSG_TEXT_BAD_UTF8:
        return "the text is not valid UTF-8";
    case MSG_TEXT_CONTROL:
        return "the text holds a control character (only newlines and tabs are allowed)";
    case MSG_TEXT_HTML:
        return "raw HTML is not allowed; write plain text or markdown (links as [text](https://...))";
    case MSG_TEXT_IMAGE:
        return "images cannot be embedded; attach the file instead";
    case MSG_TEXT_LINK_SCHEME:
        return "links must point to http, https or mailto addresses";
    case MSG_TEXT_LINK_REFDEF:
        return "link reference definitions are not supported; write links inline as [text](https://...)";
    }
    return "the text is not acceptable";
}

const char *msg_text_code(msg_text_error e)
{
    switch (e) {
    case MSG_TEXT_EMPTY:
        return "messaging.text_empty";
    case MSG_TEXT_TOO_LONG:
        return "messaging.text_too_long";
    case MSG_TEXT_BAD_UTF8:
    case MSG_TEXT_CONTROL:
        return "messaging.text_invalid";
    case MSG_TEXT_HTML:
        return "messaging.text_html";
    case MSG_TEXT_IMAGE:
        return "messaging.text_image";
    case MSG_TEXT_LINK_SCHEME:
    case MSG_TEXT_LINK_REFDEF:
        return "messaging.text_link";
    case MSG_TEXT_OK:
        break;
    }
    return "messaging.text_invalid";
}

/* ------------------------------------------------------- small values */

bool msg_txn_id_valid(const char *s)
{
    size_t len = strlen(s);
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '~' && c != '-')
            return false;
    }
    return true;
}

bool msg_reaction_key_valid(const char *s)
{
    size_t len = strlen(s);
    if (len < 1 || len > 32)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0 || is_control(cp) || cp == ' ' || cp == 0xa0 || cp == 0x2028 || cp == 0x2029 || (cp >= 0x2000 && cp <= 0x200a))
            return false;
        i += n;
    }
    return true;
}

static bool restricted_name(const char *s, size_t len)
{
    /* RFC 6838 section 4.2: restricted-name-first, then restricted-name-chars. */
    if (len < 1 || len > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!islower(c) && !isdigit(c) && !strchr("!#$&^_.+-", c))
            return false;
    }
    return true;
}

bool msg_media_type_valid(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL)
        return false;
    return restricted_name(s, (size_t)(slash - s)) && restricted_name(slash + 1, strlen(slash + 1));
}

bool msg_file_name_valid(const char *s)
{
    long n = msg_plain_length(s);
    if (n < 1 || n > 255 || strchr(s, '/') != NULL || strchr(s, '\\') != NULL)
        return false;
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

char *msg_search_query(kr_arena *arena, const char *q)
{
    if (msg_plain_length(q) < 0)
        return NULL;
    size_t len = strlen(q);
    char *out = kr_arena_alloc(arena, len * 2 + 16 * 6 + 1);
    size_t o = 0;
    int words = 0;
    for (size_t i = 0; i < len && words < 16;) {
        unsigned char c = (unsigned char)q[i];
        if (!(isalnum(c) || c >= 0x80)) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && (isalnum((unsigned char)q[i]) || (unsigned char)q[i] >= 0x80))
            i++;
        if (i - start > 64)
            continue;
        if (words > 0) {
            memcpy(out + o, " & ", 3);
            o += 3;
        }
        memcpy(out + o, q + start, i - start);
        o += i - start;
        memcpy(out + o, ":*", 2);
        o += 2;
        words++;
    }
    out[o] = '\0';
    return words > 0 ? out : NULL;
}

static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

bool msg_time_parse(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, se;
    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &se))
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    const char *p = s + 19;
    int frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3)
                frac = frac * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0 || n > 9)
            return false;
        for (; n < 3; n++)
            frac *= 10;
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = (oh * 60 + om) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = se};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) /* February 30th and the like */
        return false;
    *ms = ((int64_t)t - (int64_t)offset * 60) * 1000 + frac;
    return true;
}
