/* Input checks and the names enums are stored under: pure functions, no
 * database, so they are unit-tested on their own (check_test.c). */
#include <stdio.h>
#include <string.h>

#include "identity.h"

long ident_text_length(const char *s)
{
    long n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        if (len == 0 || (len == 1 && (*p < 0x20 || *p == 0x7f)))
            return -1;
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return -1;
        }
        p += len;
        n++;
    }
    return n;
}

bool ident_username_valid(const char *s)
{
    size_t len = strlen(s);
    if (len < 3 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

bool ident_school_year_valid(const char *s)
{
    if (s[0] == '\0')
        return true;
    if (strlen(s) != 7 || !digits(s, 4) || s[4] != '/' || !digits(s + 5, 2))
        return false;
    int first = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int second = (s[5] - '0') * 10 + (s[6] - '0');
    return first >= 1900 && (first + 1) % 100 == second;
}

bool ident_date_valid(const char *s)
{
    if (s[0] == '\0')
        return true;
    if (strlen(s) != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
        return false;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap ? 1 : 0);
}

/* Indexed by the proto enums' numbers; index 0 is the unspecified value. */
static const char *const person_roles[] = {NULL, "pupil", "teacher", "parent", "staff", "head", "school_admin"};
static const char *const schulconnex_defaults[] = {NULL, "Lern", "Lehr", "SorgBer", "Extern", "Leit", "OrgAdmin"};
static const char *const group_kinds[] = {NULL, "class", "course", "club", "staff", "parents"};
static const char *const member_roles[] = {NULL, "member", "leader"};

#define NAME_OF(table, v) ((unsigned)(v) < sizeof(table) / sizeof((table)[0]) ? (table)[(unsigned)(v)] : NULL)

static int value_of(const char *const *table, size_t n, const char *name)
{
    for (size_t i = 1; i < n; i++) {
        if (strcmp(table[i], name) == 0)
            return (int)i;
    }
    return 0;
}

const char *ident_person_role_name(Kreide__Identity__PersonRole r)
{
    return NAME_OF(person_roles, r);
}

Kreide__Identity__PersonRole ident_person_role_parse(const char *name)
{
    return (Kreide__Identity__PersonRole)value_of(person_roles, sizeof(person_roles) / sizeof(person_roles[0]), name);
}

const char *ident_schulconnex_default(Kreide__Identity__PersonRole r)
{
    return NAME_OF(schulconnex_defaults, r);
}

bool ident_schulconnex_valid(const char *code)
{
    static const char *const codes[] = {"Lern", "Lehr", "SorgBer", "Leit", "OrgAdmin", "Extern"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (strcmp(codes[i], code) == 0)
            return true;
    }
    return false;
}

const char *ident_group_kind_name(Kreide__Identity__GroupKind k)
{
    return NAME_OF(group_kinds, k);
}

Kreide__Identity__GroupKind ident_group_kind_parse(const char *name)
{
    return (Kreide__Identity__GroupKind)value_of(group_kinds, sizeof(group_kinds) / sizeof(group_kinds[0]), name);
}

const char *ident_member_role_name(Kreide__Identity__MemberRole r)
{
    return NAME_OF(member_roles, r);
}

Kreide__Identity__MemberRole ident_member_role_parse(const char *name)
{
    return (Kreide__Identity__MemberRole)value_of(member_roles, sizeof(member_roles) / sizeof(member_roles[0]), name);
}
