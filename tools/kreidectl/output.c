/* The human-readable output: one short line per object, ids first so that
 * they can be cut out with awk, names quoted because they hold spaces. */
#include <strings.h>

#include "kreidectl.h"

const char *const ctl_school_kinds[] = {"school", "SCHOOL", "kita", "KITA", "community", "COMMUNITY", NULL};
const char *const ctl_person_roles[] = {"pupil", "PUPIL", "teacher", "TEACHER",      "parent",       "PARENT", "staff",
                                        "STAFF", "head",  "HEAD",    "school_admin", "SCHOOL_ADMIN", NULL};
const char *const ctl_group_kinds[] = {"class",      "CLASS",      "course",     "COURSE",  "club",    "CLUB", "staff",
                                       "STAFF_ROOM", "staff_room", "STAFF_ROOM", "parents", "PARENTS", NULL};
const char *const ctl_code_purposes[] = {"enrollment", "ENROLLMENT", "reset", "RESET", NULL};
const char *const ctl_client_types[] = {"confidential", "CONFIDENTIAL", "public", "PUBLIC", NULL};

const char *ctl_enum_name(const char *const *table, const char *word)
{
    for (size_t i = 0; table[i] != NULL; i += 2) {
        if (strcasecmp(table[i], word) == 0 || strcasecmp(table[i + 1], word) == 0)
            return table[i + 1];
    }
    return NULL;
}

static const char *str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* Writes `s` in double quotes, escaping quotes, backslashes and control
 * characters so that one object stays on one line. */
static void quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* " label value" when value is not empty. */
static void opt(FILE *f, const char *label, const char *value)
{
    if (*value)
        fprintf(f, " %s %s", label, value);
}

void ctl_print_object(FILE *f, ctl_obj kind, const json_t *o)
{
    switch (kind) {
    case CTL_OBJ_SCHOOL:
        fprintf(f, "school %s ", str(o, "id"));
        quoted(f, str(o, "name"));
        fprintf(f, " %s", str(o, "kind"));
        opt(f, "kennung", str(o, "kennung"));
        opt(f, "carrier", str(o, "carrier_id"));
        break;
    case CTL_OBJ_CARRIER:
        fprintf(f, "carrier %s ", str(o, "id"));
        quoted(f, str(o, "name"));
        break;
    case CTL_OBJ_USER: {
        fprintf(f, "user %s %s ", str(o, "id"), str(o, "username"));
        quoted(f, str(o, "display_name"));
        size_t i;
        const json_t *ctx;
        json_array_foreach(json_object_get(o, "contexts"), i, ctx)
        {
            fprintf(f, " %s@%s", str(ctx, "role"), str(ctx, "school_id"));
        }
        break;
    }
    case CTL_OBJ_CONTEXT:
        fprintf(f, "context %s %s@%s (%s)", str(o, "user_id"), str(o, "role"), str(o, "school_id"), str(o, "schulconnex_role"));
        break;
    case CTL_OBJ_GROUP:
        fprintf(f, "group %s ", str(o, "id"));
        quoted(f, str(o, "name"));
        fprintf(f, " %s", str(o, "kind"));
        opt(f, "year", str(o, "school_year"));
        opt(f, "school", str(o, "school_id"));
        break;
    case CTL_OBJ_MEMBERSHIP:
        fprintf(f, "member %s of %s %s", str(o, "user_id"), str(o, "group_id"), str(o, "role"));
        opt(f, "from", str(o, "valid_from"));
        opt(f, "to", str(o, "valid_to"));
        break;
    case CTL_OBJ_MEMBER:
        fprintf(f, "member %s %s ", str(o, "user_id"), str(o, "username"));
        quoted(f, str(o, "display_name"));
        fprintf(f, " %s", str(o, "role"));
        opt(f, "from", str(o, "valid_from"));
        opt(f, "to", str(o, "valid_to"));
        break;
    case CTL_OBJ_PERSON: {
        fprintf(f, "person %s %s ", str(o, "user_id"), str(o, "username"));
        quoted(f, str(o, "display_name"));
        size_t i;
        const json_t *r;
        json_array_foreach(json_object_get(o, "roles"), i, r)
        {
            fprintf(f, "%s%s", i ? "," : " ", json_string_value(r) ? json_string_value(r) : "?");
        }
        break;
    }
    case CTL_OBJ_GUARDIANSHIP:
        fprintf(f, "guardian %s of %s at %s", str(o, "parent_id"), str(o, "child_id"), str(o, "school_id"));
        break;
    case CTL_OBJ_CODE:
        fprintf(f, "code %s %s", str(o, "code"), str(o, "purpose"));
        opt(f, "expires", str(o, "expires_at"));
        break;
    case CTL_OBJ_CLIENT:
        fprintf(f, "client %s ", str(o, "client_id"));
        quoted(f, str(o, "name"));
        if (*str(o, "type"))
            fprintf(f, " %s", str(o, "type"));
        if (*str(o, "client_secret")) {
            fprintf(f, "\nsecret %s (shown once: keep it now)", str(o, "client_secret"));
        }
        break;
    }
    fputc('\n', f);
}
