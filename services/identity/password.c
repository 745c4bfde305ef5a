/* Password hashing with argon2id and the password policy (see password.h). */
#include "password.h"

#include <argon2.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kr_id.h"

/* ------------------------------------------------------------- hashing */

ident_argon2_params ident_argon2_defaults(void)
{
    ident_argon2_params p = {
        .memory_kib = IDENT_ARGON2_DEFAULT_MEMORY_KIB,
        .iterations = IDENT_ARGON2_DEFAULT_ITERATIONS,
        .lanes = IDENT_ARGON2_DEFAULT_LANES,
    };
    return p;
}

bool ident_argon2_params_valid(const ident_argon2_params *p)
{
    return p != NULL && p->memory_kib >= IDENT_ARGON2_MIN_MEMORY_KIB && p->memory_kib <= IDENT_ARGON2_MAX_MEMORY_KIB &&
           p->iterations >= 1 && p->iterations <= IDENT_ARGON2_MAX_ITERATIONS && p->lanes >= 1 &&
           p->lanes <= IDENT_ARGON2_MAX_LANES && p->memory_kib >= 8u * p->lanes;
}

const char *ident_pw_strerror(int err)
{
    switch (err) {
    case IDENT_PW_OK:
        return "ok";
    case IDENT_PW_EINVAL:
        return "invalid argument";
    case IDENT_PW_MISMATCH:
        return "password does not match";
    case IDENT_PW_EFORMAT:
        return "stored hash is not a readable argon2id string";
    case IDENT_PW_EINTERNAL:
        return "argon2 failed";
    default:
        return "unknown error";
    }
}

int ident_password_hash(const ident_argon2_params *p, const char *password, size_t len, char *out, size_t outlen)
{
    if (!ident_argon2_params_valid(p) || password == NULL || len > IDENT_PASSWORD_MAX_BYTES || out == NULL ||
        outlen < IDENT_PASSWORD_HASH_MAX)
        return IDENT_PW_EINVAL;
    if (argon2_encodedlen(p->iterations, p->memory_kib, p->lanes, IDENT_ARGON2_SALT_BYTES, IDENT_ARGON2_HASH_BYTES, Argon2_id) >
        outlen)
        return IDENT_PW_EINVAL;
    uint8_t salt[IDENT_ARGON2_SALT_BYTES];
    kr_random_bytes(salt, sizeof(salt));
    int rc = argon2id_hash_encoded(p->iterations, p->memory_kib, p->lanes, password, len, salt, sizeof(salt),
                                   IDENT_ARGON2_HASH_BYTES, out, outlen);
    return rc == ARGON2_OK ? IDENT_PW_OK : IDENT_PW_EINTERNAL;
}

/* Reads a decimal number of at most 10 digits that fits in uint32_t; advances *s. */
static bool parse_u32(const char **s, uint32_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9' && n < 11) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        n++;
    }
    if (n == 0 || n > 10 || v > UINT32_MAX || (n > 1 && **s == '0'))
        return false;
    *out = (uint32_t)v;
    *s = p;
    return true;
}

static bool skip(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0)
        return false;
    *s += n;
    return true;
}

int ident_password_hash_params(const char *encoded, ident_argon2_params *out)
{
    if (encoded == NULL || out == NULL)
        return IDENT_PW_EFORMAT;
    const char *s = encoded;
    ident_argon2_params p;
    if (!skip(&s, "$argon2id$v=19$m=") || !parse_u32(&s, &p.memory_kib) || !skip(&s, ",t=") || !parse_u32(&s, &p.iterations) ||
        !skip(&s, ",p=") || !parse_u32(&s, &p.lanes) || *s != '$')
        return IDENT_PW_EFORMAT;
    *out = p;
    return IDENT_PW_OK;
}

int ident_password_verify(const char *encoded, const char *password, size_t len)
{
    if (password == NULL || len > IDENT_PASSWORD_MAX_BYTES)
        return IDENT_PW_EINVAL;
    ident_argon2_params p;
    if (ident_password_hash_params(encoded, &p) != IDENT_PW_OK)
        return IDENT_PW_EFORMAT;
    int rc = argon2_verify(encoded, password, len, Argon2_id);
    switch (rc) {
    case ARGON2_OK:
        return IDENT_PW_OK;
    case ARGON2_VERIFY_MISMATCH:
        return IDENT_PW_MISMATCH;
    case ARGON2_MEMORY_ALLOCATION_ERROR:
    case ARGON2_THREAD_FAIL:
        return IDENT_PW_EINTERNAL;
    default:
        return IDENT_PW_EFORMAT;
    }
}

bool ident_password_needs_rehash(const ident_argon2_params *current, const char *encoded)
{
    ident_argon2_params p;
    if (current == NULL || ident_password_hash_params(encoded, &p) != IDENT_PW_OK)
        return true;
    return p.memory_kib != current->memory_kib || p.iterations != current->iterations || p.lanes != current->lanes;
}

/* -------------------------------------------------------------- policy */

const char *ident_pwp_code(ident_pwp_reason r)
{
    switch (r) {
    case IDENT_PWP_OK:
        return "password.ok";
    case IDENT_PWP_INVALID_CHARS:
        return "password.invalid_chars";
    case IDENT_PWP_TOO_SHORT:
        return "password.too_short";
    case IDENT_PWP_TOO_LONG:
        return "password.too_long";
    case IDENT_PWP_REPEATED:
        return "password.repeated";
    case IDENT_PWP_SEQUENCE:
        return "password.sequence";
    case IDENT_PWP_PERSONAL:
        return "password.personal";
    case IDENT_PWP_COMMON:
        return "password.common";
    }
    return "password.unknown";
}

/* The numbers in the messages follow IDENT_PASSWORD_MIN_CHARS and _MAX_CHARS. */
_Static_assert(IDENT_PASSWORD_MIN_CHARS == 8 && IDENT_PASSWORD_MAX_CHARS == 128, "update the messages");

const char *ident_pwp_message(ident_pwp_reason r, const char *lang)
{
    bool de = lang != NULL && strncmp(lang, "de", 2) == 0;
    switch (r) {
    case IDENT_PWP_OK:
        return de ? "Das Passwort ist in Ordnung." : "The password is fine.";
    case IDENT_PWP_INVALID_CHARS:
        return de ? "Das Passwort enthält Zeichen, die nicht erlaubt sind."
                  : "The password contains characters that are not allowed.";
    case IDENT_PWP_TOO_SHORT:
        return de ? "Das Passwort muss mindestens 8 Zeichen lang sein. Ein kurzer Satz ist leicht zu merken."
                  : "The password must be at least 8 characters long. A short sentence is easy to remember.";
    case IDENT_PWP_TOO_LONG:
        return de ? "Das Passwort darf höchstens 128 Zeichen lang sein." : "The password may be at most 128 characters long.";
    case IDENT_PWP_REPEATED:
        return de ? "Das Passwort wiederholt nur ein Zeichen oder ein kurzes Stück. Bitte wähle etwas anderes."
                  : "The password only repeats one character or a short piece. Please choose something else.";
    case IDENT_PWP_SEQUENCE:
        return de ? "Das Passwort ist eine Tastaturreihe oder Zahlenfolge. Bitte wähle etwas anderes."
                  : "The password is a keyboard row or a counting sequence. Please choose something else.";
    case IDENT_PWP_PERSONAL:
        return de ? "Das Passwort darf nicht dein Name oder Benutzername sein."
                  : "The password must not be your name or user name.";
    case IDENT_PWP_COMMON:
        return de ? "Dieses Passwort ist sehr verbreitet und leicht zu erraten. Bitte wähle etwas anderes."
                  : "This password is very common and easy to guess. Please choose something else.";
    }
    return de ? "Das Passwort ist nicht erlaubt." : "The password is not allowed.";
}

/* Decodes one UTF-8 code point at s[*i]; false on malformed input
 * (overlong forms, surrogates, beyond U+10FFFF, truncated). */
static bool utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
    unsigned char c = s[*i];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        *i += 1;
        return true;
    } else if ((c & 0xE0) == 0xC0) {
        n = 1, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3, v = c & 0x07, min = 0x10000;
    } else {
        return false;
    }
    if (*i + n >= len)
        return false;
    for (size_t k = 1; k <= n; k++) {
        unsigned char d = s[*i + k];
        if ((d & 0xC0) != 0x80)
            return false;
        v = (v << 6) | (d & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return false;
    *cp = v;
    *i += n + 1;
    return true;
}

static void put_utf8(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* Folded text is at most twice as long as its input (ß -> ss, ä -> ae). */
#define FOLD_MAX (2 * IDENT_PASSWORD_MAX_BYTES + 1)

/* Folds `in` for comparison: lower case for ASCII and Latin-1 letters, the
 * German letters as ASCII. Returns the folded length, or -1 for malformed
 * UTF-8 or input over IDENT_PASSWORD_MAX_BYTES. `out` holds FOLD_MAX bytes. */
static int fold(const char *in, char *out)
{
    size_t len = strlen(in), o = 0, i = 0;
    if (len > IDENT_PASSWORD_MAX_BYTES)
        return -1;
    while (i < len) {
        uint32_t cp;
        if (!utf8_next((const unsigned char *)in, len, &i, &cp))
            return -1;
        if (cp >= 'A' && cp <= 'Z')
            cp += 'a' - 'A';
        else if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
            cp += 0x20;
        const char *spell = NULL;
        switch (cp) {
        case 0xE4:
            spell = "ae";
            break;
        case 0xF6:
            spell = "oe";
            break;
        case 0xFC:
            spell = "ue";
            break;
        case 0xDF:
            spell = "ss";
            break;
        default:
            break;
        }
        if (spell != NULL) {
            out[o++] = spell[0];
            out[o++] = spell[1];
        } else {
            put_utf8(out, &o, cp);
        }
    }
    out[o] = '\0';
    return (int)o;
}

/* A letter for the policy: ASCII letters and everything beyond ASCII. */
static bool is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* Copies `in` without the non-letters at either end. */
static void strip_ends(const char *in, char *out)
{
    size_t b = 0, e = strlen(in);
    while (b < e && !is_letter((unsigned char)in[b]))
        b++;
    while (e > b && !is_letter((unsigned char)in[e - 1]))
        e--;
    memcpy(out, in + b, e - b);
    out[e - b] = '\0';
}

/* Copies the letters of `in` only. */
static void letters_only(const char *in, char *out)
{
    size_t o = 0;
    for (const char *p = in; *p != '\0'; p++) {
        if (is_letter((unsigned char)*p))
            out[o++] = *p;
    }
    out[o] = '\0';
}

/* Undoes the common digit-for-letter swaps (p4ssw0rt); `one` is the letter
 * taken for '1'. */
static void unleet(const char *in, char *out, char one)
{
    size_t o = 0;
    for (const char *p = in; *p != '\0'; p++) {
        char c = *p;
        switch (c) {
        case '0':
            c = 'o';
            break;
        case '1':
        case '!':
        case '|':
            c = one;
            break;
        case '3':
            c = 'e';
            break;
        case '4':
        case '@':
            c = 'a';
            break;
        case '5':
        case '$':
            c = 's';
            break;
        case '7':
        case '+':
            c = 't';
            break;
        default:
            break;
        }
        out[o++] = c;
    }
    out[o] = '\0';
}

/* ---- deny-list: an open-addressing hash set of folded strings */

struct st_ident_denylist_t {
    char **slots; /* NULL = empty */
    size_t cap;   /* power of two */
    size_t n;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        abort();
    return p;
}

ident_denylist *ident_denylist_new(void)
{
    ident_denylist *dl = xcalloc(1, sizeof(*dl));
    dl->cap = 1024;
    dl->slots = xcalloc(dl->cap, sizeof(char *));
    return dl;
}

static size_t find_slot(char *const *slots, size_t cap, const char *key)
{
    size_t i = (size_t)fnv1a(key) & (cap - 1);
    while (slots[i] != NULL && strcmp(slots[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static void grow(ident_denylist *dl)
{
    size_t cap = dl->cap * 2;
    char **slots = xcalloc(cap, sizeof(char *));
    for (size_t i = 0; i < dl->cap; i++) {
        if (dl->slots[i] != NULL)
            slots[find_slot(slots, cap, dl->slots[i])] = dl->slots[i];
    }
    free(dl->slots);
    dl->slots = slots;
    dl->cap = cap;
}

void ident_denylist_add(ident_denylist *dl, const char *word)
{
    char trimmed[IDENT_PASSWORD_MAX_BYTES + 1], folded[FOLD_MAX];
    size_t b = 0, e = strlen(word);
    while (b < e && (word[b] == ' ' || word[b] == '\t'))
        b++;
    while (e > b && (word[e - 1] == ' ' || word[e - 1] == '\t' || word[e - 1] == '\r' || word[e - 1] == '\n'))
        e--;
    if (e == b || e - b > IDENT_PASSWORD_MAX_BYTES)
        return;
    memcpy(trimmed, word + b, e - b);
    trimmed[e - b] = '\0';
    if (fold(trimmed, folded) <= 0)
        return;
    if ((dl->n + 1) * 2 > dl->cap)
        grow(dl);
    size_t i = find_slot(dl->slots, dl->cap, folded);
    if (dl->slots[i] != NULL)
        return;
    dl->slots[i] = strdup(folded);
    if (dl->slots[i] == NULL)
        abort();
    dl->n++;
}

int ident_denylist_load(const char *path, ident_denylist **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    ident_denylist *dl = ident_denylist_new();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n == 0 || line[0] == '#')
            continue;
        ident_denylist_add(dl, line);
    }
    bool failed = ferror(f) != 0;
    free(line);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s: read error", path);
        ident_denylist_free(dl);
        return -1;
    }
    *out = dl;
    return 0;
}

size_t ident_denylist_size(const ident_denylist *dl)
{
    return dl->n;
}

bool ident_denylist_contains(const ident_denylist *dl, const char *word)
{
    char folded[FOLD_MAX];
    if (dl == NULL || fold(word, folded) <= 0)
        return false;
    return dl->slots[find_slot(dl->slots, dl->cap, folded)] != NULL;
}

void ident_denylist_free(ident_denylist *dl)
{
    if (dl == NULL)
        return;
    for (size_t i = 0; i < dl->cap; i++)
        free(dl->slots[i]);
    free(dl->slots);
    free(dl);
}

/* Looks up an already folded string. */
static bool contains_folded(const ident_denylist *dl, const char *folded)
{
    return folded[0] != '\0' && dl->slots[find_slot(dl->slots, dl->cap, folded)] != NULL;
}

/* ---- the checks */

/* True when the code points are one piece of 1 to 4 code points repeated. */
static bool is_repetition(const uint32_t *cp, size_t n)
{
    for (size_t unit = 1; unit <= 4 && unit < n; unit++) {
        size_t i = unit;
        while (i < n && cp[i] == cp[i - unit])
            i++;
        if (i == n)
            return true;
    }
    return false;
}

/* Keyboard rows (German QWERTZ after folding, English QWERTY, French AZERTY),
 * the alphabet and the digits, each read forwards or backwards. */
static const char *const sequences[] = {
    "01234567890",  "abcdefghijklmnopqrstuvwxyz",
    "qwertzuiopue", "asdfghjkloeae",
    "yxcvbnm",      "qwertyuiop",
    "asdfghjkl",    "zxcvbnm",
    "azertyuiop",   "qsdfghjklm",
    "wxcvbnm",      "1qaz2wsx3edc",
};

static bool in_sequence(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t k = 0; k < sizeof(sequences) / sizeof(sequences[0]); k++) {
        const char *seq = sequences[k];
        size_t n = strlen(seq);
        for (size_t start = 0; start + len <= n; start++) {
            bool fwd = true, back = true;
            for (size_t i = 0; i < len && (fwd || back); i++) {
                fwd = fwd && s[i] == seq[start + i];
                back = back && s[i] == seq[n - 1 - start - i];
            }
            if (fwd || back)
                return true;
        }
    }
    return false;
}

/* True when the folded password is one or two runs (letters, then the rest,
 * or the other way round) that each are a piece of a keyboard row or
 * counting sequence of at least 3 characters: 12345678, qwertz123,
 * abcd4321. */
static bool is_sequence(const char *f)
{
    size_t len = strlen(f), cut = 0;
    while (cut < len && is_letter((unsigned char)f[cut]) == is_letter((unsigned char)f[0]))
        cut++;
    if (cut == len)
        return in_sequence(f, len);
    for (size_t i = cut; i < len; i++) {
        if (is_letter((unsigned char)f[i]) != is_letter((unsigned char)f[cut]))
            return false;
    }
    return cut >= 3 && len - cut >= 3 && in_sequence(f, cut) && in_sequence(f + cut, len - cut);
}

/* Folds `in` and keeps its letters; "" when malformed. */
static void name_key(const char *in, char *out)
{
    char folded[FOLD_MAX];
    if (in == NULL || fold(in, folded) < 0)
        folded[0] = '\0';
    letters_only(folded, out);
}

/* True when a candidate equals the letters of the user name, the given or
 * family name, or both names in either order. Names of fewer than 3 letters
 * are not compared. */
static bool is_personal(const ident_pwp_person *person, const char *const *candidates, size_t ncand)
{
    if (person == NULL)
        return false;
    char names[5][2 * FOLD_MAX];
    char given[FOLD_MAX], family[FOLD_MAX];
    name_key(person->username, names[0]);
    name_key(person->given_name, given);
    name_key(person->family_name, family);
    snprintf(names[1], sizeof(names[1]), "%s", given);
    snprintf(names[2], sizeof(names[2]), "%s", family);
    snprintf(names[3], sizeof(names[3]), "%s%s", given, family);
    snprintf(names[4], sizeof(names[4]), "%s%s", family, given);
    for (size_t k = 0; k < 5; k++) {
        if (strlen(names[k]) < 3)
            continue;
        for (size_t c = 0; c < ncand; c++) {
            if (strcmp(candidates[c], names[k]) == 0)
                return true;
        }
    }
    return false;
}

ident_pwp_reason ident_password_policy_check(const ident_denylist *dl, const char *password, const ident_pwp_person *person)
{
    if (password == NULL)
        return IDENT_PWP_TOO_SHORT;
    size_t len = strlen(password);
    if (len > IDENT_PASSWORD_MAX_BYTES)
        return IDENT_PWP_TOO_LONG; /* more bytes than the longest allowed password can take */
    size_t chars = 0, i = 0;
    while (i < len) {
        uint32_t cp;
        if (!utf8_next((const unsigned char *)password, len, &i, &cp))
            return IDENT_PWP_INVALID_CHARS;
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return IDENT_PWP_INVALID_CHARS;
        chars++;
    }
    if (chars < IDENT_PASSWORD_MIN_CHARS)
        return IDENT_PWP_TOO_SHORT;
    if (chars > IDENT_PASSWORD_MAX_CHARS)
        return IDENT_PWP_TOO_LONG;

    char f[FOLD_MAX];
    int flen = fold(password, f);
    if (flen < 0)
        return IDENT_PWP_INVALID_CHARS;

    uint32_t cps[FOLD_MAX];
    size_t ncp = 0;
    for (size_t k = 0; k < (size_t)flen;) {
        if (!utf8_next((const unsigned char *)f, (size_t)flen, &k, &cps[ncp]))
            return IDENT_PWP_INVALID_CHARS;
        ncp++;
    }
    if (is_repetition(cps, ncp))
        return IDENT_PWP_REPEATED;
    if (is_sequence(f))
        return IDENT_PWP_SEQUENCE;

    /* The forms compared with names and the deny-list: the whole password,
     * without digits and symbols at either end, with digit swaps undone,
     * and letters only. */
    char stem[FOLD_MAX], leet_i[FOLD_MAX], leet_l[FOLD_MAX], letters[FOLD_MAX], leet_letters[FOLD_MAX];
    strip_ends(f, stem);
    unleet(stem, leet_i, 'i');
    unleet(stem, leet_l, 'l');
    letters_only(f, letters);
    letters_only(leet_i, leet_letters);
    const char *const cands[] = {f, stem, leet_i, leet_l, letters, leet_letters};
    const size_t ncand = sizeof(cands) / sizeof(cands[0]);
    if (is_personal(person, cands, ncand))
        return IDENT_PWP_PERSONAL;
    if (dl != NULL) {
        for (size_t c = 0; c < ncand; c++) {
            if (contains_folded(dl, cands[c]))
                return IDENT_PWP_COMMON;
        }
    }
    return IDENT_PWP_OK;
}
