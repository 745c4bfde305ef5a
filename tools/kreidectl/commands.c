/* The API commands: each parses its options, builds the request body from
 * them, calls the route (see gateway/routes.c and proto/identity.proto for
 * the fields) and prints the reply. */
#include <stdlib.h>
#include <string.h>

#include "kreidectl.h"

int ctl_command_usage(const ctl_command *self)
{
    fprintf(stderr, "usage: kreidectl [global options] %s %s %s\n", self->noun, self->verb, self->usage);
    return CTL_EXIT_USAGE;
}

/* ------------------------------------------------------------ helpers */

/* A request path built piece by piece; ids and query values are escaped. */
typedef struct {
    char s[4096];
    size_t n;
    bool overflow;
    bool has_query;
} path_buf;

static void path_lit(path_buf *p, const char *lit)
{
    size_t len = strlen(lit);
    if (p->overflow || p->n + len >= sizeof(p->s)) {
        p->overflow = true;
        return;
    }
    memcpy(p->s + p->n, lit, len + 1);
    p->n += len;
}

static void path_esc(path_buf *p, const char *v)
{
    if (p->overflow)
        return;
    long n = ctl_escape(v, p->s + p->n, sizeof(p->s) - p->n);
    if (n < 0)
        p->overflow = true;
    else
        p->n += (size_t)n;
}

/* Appends "?name=value" or "&name=value" unless value is NULL or empty. */
static void path_query(path_buf *p, const char *name, const char *value)
{
    if (value == NULL || *value == '\0')
        return;
    path_lit(p, p->has_query ? "&" : "?");
    p->has_query = true;
    path_lit(p, name);
    path_lit(p, "=");
    path_esc(p, value);
}

/* Says which required option is missing; true when all were given. */
static bool given(const char *value, const char *option)
{
    if (value != NULL && *value != '\0')
        return true;
    fprintf(stderr, "kreidectl: %s is required\n", option);
    return false;
}

/* The enum name for `word`, or NULL after saying which words `option` takes. */
static const char *enum_arg(const char *const *table, const char *word, const char *option)
{
    const char *name = ctl_enum_name(table, word);
    if (name == NULL) {
        fprintf(stderr, "kreidectl: %s takes", option);
        for (size_t i = 0; table[i] != NULL; i += 2) {
            /* Aliases map to the same name as the word before them. */
            if (i == 0 || strcmp(table[i + 1], table[i - 1]) != 0)
                fprintf(stderr, "%s%s", i ? "|" : " ", table[i]);
        }
        fprintf(stderr, ", not '%s'\n", word);
    }
    return name;
}

/* Handles the options every command shares (global options, unknown
 * options). Returns -1 when parsing may go on, else the exit status. */
static int common_option(ctl_ctx *ctx, const ctl_command *self, int c, const char *arg)
{
    int g = ctl_global_option(ctx, c, arg);
    if (g == CTL_EXIT_OK)
        return -1;
    return g < 0 ? ctl_command_usage(self) : g;
}

/* Checks that nothing but options was given. */
static bool no_operands(const ctl_command *self, int argc, char **argv)
{
    if (optind == argc)
        return true;
    fprintf(stderr, "kreidectl: unexpected argument '%s'\n", argv[optind]);
    ctl_command_usage(self);
    return false;
}

/* Sends the request and prints the reply object: as it came with --json,
 * else as one line of `kind`. Takes ownership of `body`. */
static int call_and_print(ctl_ctx *ctx, const char *method, const path_buf *p, json_t *body, ctl_obj kind)
{
    if (p->overflow) {
        json_decref(body);
        fprintf(stderr, "kreidectl: an argument is too long\n");
        return CTL_EXIT_USAGE;
    }
    ctl_reply r;
    int rc = ctl_call(ctx, method, p->s, body, &r);
    json_decref(body);
    if (rc == CTL_EXIT_OK) {
        if (ctx->json)
            printf("%s\n", r.body);
        else
            ctl_print_object(stdout, kind, r.json);
    }
    ctl_reply_clear(&r);
    return rc;
}

/* GETs every page of a paged list (following page.next_cursor) and prints
 * the items under `key`: with --json as one reply of the API's own shape,
 * else one line each. */
static int list_all(ctl_ctx *ctx, const path_buf *base, const char *key, ctl_obj kind)
{
    json_t *all = json_array();
    char cursor[1024] = "";
    int rc = CTL_EXIT_OK;
    for (int pages = 0; pages < 100000; pages++) {
        path_buf p = *base;
        char limit[16];
        snprintf(limit, sizeof(limit), "%u", ctx->page_size ? ctx->page_size : 500);
        path_query(&p, "page.limit", limit);
        path_query(&p, "page.cursor", cursor);
        if (p.overflow) {
            fprintf(stderr, "kreidectl: an argument is too long\n");
            rc = CTL_EXIT_USAGE;
            break;
        }
        ctl_reply r;
        rc = ctl_call(ctx, "GET", p.s, NULL, &r);
        if (rc != CTL_EXIT_OK) {
            ctl_reply_clear(&r);
            break;
        }
        json_array_extend(all, json_object_get(r.json, key));
        const char *next = json_string_value(json_object_get(json_object_get(r.json, "page"), "next_cursor"));
        bool more = next != NULL && *next != '\0' && strlen(next) < sizeof(cursor);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", next);
        ctl_reply_clear(&r);
        if (!more)
            break;
    }
    if (rc == CTL_EXIT_OK) {
        if (ctx->json) {
            json_t *out = json_pack("{s:O, s:{s:s}}", key, all, "page", "next_cursor", "");
            char *text = json_dumps(out, JSON_COMPACT);
            printf("%s\n", text);
            free(text);
            json_decref(out);
        } else {
            size_t i;
            const json_t *item;
            json_array_foreach(all, i, item)
            {
                ctl_print_object(stdout, kind, item);
            }
        }
    }
    json_decref(all);
    return rc;
}

#define COMMAND(fn) static int fn(ctl_ctx *ctx, const ctl_command *self, int argc, char **argv)
#define OPTIONS(...)                                                                                                               \
    static const struct option opts[] = {__VA_ARGS__, CTL_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};                                     \
    int c;                                                                                                                         \
    optind = 1
#define NEXT_OPTION() ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
#define OTHER_OPTION()                                                                                                             \
    default: {                                                                                                                     \
        int rc_ = common_option(ctx, self, c, optarg);                                                                             \
        if (rc_ >= 0)                                                                                                              \
            return rc_;                                                                                                            \
    }

/* ------------------------------------------------------------ schools */

COMMAND(school_create)
{
    const char *name = NULL, *kind = NULL, *kennung = "", *carrier = "";
    OPTIONS({"name", required_argument, NULL, 'n'}, {"kind", required_argument, NULL, 'k'},
            {"kennung", required_argument, NULL, 'K'}, {"carrier", required_argument, NULL, 'c'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 'k':
            if ((kind = enum_arg(ctl_school_kinds, optarg, "--kind")) == NULL)
                return CTL_EXIT_USAGE;
            break;
        case 'K':
            kennung = optarg;
            break;
        case 'c':
            carrier = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(name, "--name") || !given(kind, "--kind"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools");
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "kind", kind, "kennung", kennung, "carrier_id", carrier);
    return call_and_print(ctx, "POST", &p, body, CTL_OBJ_SCHOOL);
}

COMMAND(school_list)
{
    const char *prefix = "";
    OPTIONS({"prefix", required_argument, NULL, 'p'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'p':
            prefix = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools");
    path_query(&p, "name_prefix", prefix);
    return list_all(ctx, &p, "schools", CTL_OBJ_SCHOOL);
}

COMMAND(school_get)
{
    const char *id = NULL;
    OPTIONS({"id", required_argument, NULL, 'i'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'i':
            id = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(id, "--id"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools/");
    path_esc(&p, id);
    return call_and_print(ctx, "GET", &p, NULL, CTL_OBJ_SCHOOL);
}

/* ----------------------------------------------------------- carriers */

COMMAND(carrier_create)
{
    const char *name = NULL;
    OPTIONS({"name", required_argument, NULL, 'n'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(name, "--name"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/carriers");
    return call_and_print(ctx, "POST", &p, json_pack("{s:s}", "name", name), CTL_OBJ_CARRIER);
}

/* -------------------------------------------------------------- users */

COMMAND(user_create)
{
    const char *username = NULL, *given_name = NULL, *family = NULL, *display = "";
    json_t *contexts = json_array();
    json_t *pending = NULL; /* the last --school, waiting for its --role */
    OPTIONS({"username", required_argument, NULL, 'u'}, {"given", required_argument, NULL, 'g'},
            {"family", required_argument, NULL, 'f'}, {"display", required_argument, NULL, 'd'},
            {"school", required_argument, NULL, 's'}, {"role", required_argument, NULL, 'r'});
    int rc = CTL_EXIT_USAGE;
    while (NEXT_OPTION()) {
        switch (c) {
        case 'u':
            username = optarg;
            break;
        case 'g':
            given_name = optarg;
            break;
        case 'f':
            family = optarg;
            break;
        case 'd':
            display = optarg;
            break;
        case 's':
            if (pending != NULL) {
                fprintf(stderr, "kreidectl: --school %s needs a --role after it\n",
                        json_string_value(json_object_get(pending, "school_id")));
                goto out;
            }
            pending = json_pack("{s:s}", "school_id", optarg);
            break;
        case 'r': {
            const char *role = enum_arg(ctl_person_roles, optarg, "--role");
            if (role == NULL)
                goto out;
            if (pending == NULL) {
                fprintf(stderr, "kreidectl: --role %s needs a --school before it\n", optarg);
                goto out;
            }
            json_object_set_new(pending, "role", json_string(role));
            json_array_append_new(contexts, pending);
            pending = NULL;
            break;
        }
        default:
            if ((rc = common_option(ctx, self, c, optarg)) >= 0)
                goto out;
            rc = CTL_EXIT_USAGE;
        }
    }
    if (pending != NULL) {
        fprintf(stderr, "kreidectl: --school %s needs a --role after it\n",
                json_string_value(json_object_get(pending, "school_id")));
        goto out;
    }
    if (!no_operands(self, argc, argv) || !given(username, "--username") || !given(given_name, "--given") ||
        !given(family, "--family"))
        goto out;
    path_buf p = {0};
    path_lit(&p, "/api/v1/users");
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:O}", "username", username, "given_name", given_name, "family_name", family,
                             "display_name", display, "contexts", contexts);
    rc = call_and_print(ctx, "POST", &p, body, CTL_OBJ_USER);
out:
    json_decref(pending);
    json_decref(contexts);
    return rc;
}

COMMAND(user_get)
{
    const char *id = NULL;
    OPTIONS({"id", required_argument, NULL, 'i'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'i':
            id = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(id, "--id"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/users/");
    path_esc(&p, id);
    return call_and_print(ctx, "GET", &p, NULL, CTL_OBJ_USER);
}

COMMAND(user_add_role)
{
    const char *user = NULL, *school = NULL, *role = NULL;
    OPTIONS({"user", required_argument, NULL, 'u'}, {"school", required_argument, NULL, 's'},
            {"role", required_argument, NULL, 'r'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'u':
            user = optarg;
            break;
        case 's':
            school = optarg;
            break;
        case 'r':
            if ((role = enum_arg(ctl_person_roles, optarg, "--role")) == NULL)
                return CTL_EXIT_USAGE;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(user, "--user") || !given(school, "--school") || !given(role, "--role"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools/");
    path_esc(&p, school);
    path_lit(&p, "/people");
    return call_and_print(ctx, "POST", &p, json_pack("{s:s, s:s}", "user_id", user, "role", role), CTL_OBJ_CONTEXT);
}

/* ------------------------------------------------------------- groups */

COMMAND(group_create)
{
    const char *school = NULL, *name = NULL, *kind = NULL, *year = "";
    OPTIONS({"school", required_argument, NULL, 's'}, {"name", required_argument, NULL, 'n'},
            {"kind", required_argument, NULL, 'k'}, {"year", required_argument, NULL, 'y'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 's':
            school = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'k':
            if ((kind = enum_arg(ctl_group_kinds, optarg, "--kind")) == NULL)
                return CTL_EXIT_USAGE;
            break;
        case 'y':
            year = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(school, "--school") || !given(name, "--name") || !given(kind, "--kind"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools/");
    path_esc(&p, school);
    path_lit(&p, "/groups");
    json_t *body = json_pack("{s:s, s:s, s:s}", "name", name, "kind", kind, "school_year", year);
    return call_and_print(ctx, "POST", &p, body, CTL_OBJ_GROUP);
}

COMMAND(group_list)
{
    const char *school = NULL, *year = "";
    OPTIONS({"school", required_argument, NULL, 's'}, {"year", required_argument, NULL, 'y'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 's':
            school = optarg;
            break;
        case 'y':
            year = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(school, "--school"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools/");
    path_esc(&p, school);
    path_lit(&p, "/groups");
    path_query(&p, "school_year", year);
    return list_all(ctx, &p, "groups", CTL_OBJ_GROUP);
}

COMMAND(group_add_member)
{
    const char *group = NULL, *user = NULL, *from = "", *to = "";
    bool leader = false;
    OPTIONS({"group", required_argument, NULL, 'g'}, {"user", required_argument, NULL, 'u'}, {"leader", no_argument, NULL, 'l'},
            {"from", required_argument, NULL, 'f'}, {"to", required_argument, NULL, 't'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'g':
            group = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'l':
            leader = true;
            break;
        case 'f':
            from = optarg;
            break;
        case 't':
            to = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(group, "--group") || !given(user, "--user"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/groups/");
    path_esc(&p, group);
    path_lit(&p, "/members");
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "user_id", user, "role", leader ? "LEADER" : "MEMBER", "valid_from", from,
                             "valid_to", to);
    return call_and_print(ctx, "POST", &p, body, CTL_OBJ_MEMBERSHIP);
}

COMMAND(group_remove_member)
{
    const char *group = NULL, *user = NULL;
    OPTIONS({"group", required_argument, NULL, 'g'}, {"user", required_argument, NULL, 'u'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'g':
            group = optarg;
            break;
        case 'u':
            user = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(group, "--group") || !given(user, "--user"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/groups/");
    path_esc(&p, group);
    path_lit(&p, "/members/");
    path_esc(&p, user);
    if (p.overflow) {
        fprintf(stderr, "kreidectl: an argument is too long\n");
        return CTL_EXIT_USAGE;
    }
    ctl_reply r;
    int rc = ctl_call(ctx, "DELETE", p.s, NULL, &r);
    if (rc == CTL_EXIT_OK) {
        if (ctx->json)
            printf("%s\n", r.body);
        else
            printf("removed %s from %s\n", user, group);
    }
    ctl_reply_clear(&r);
    return rc;
}

COMMAND(group_members)
{
    const char *group = NULL;
    OPTIONS({"group", required_argument, NULL, 'g'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'g':
            group = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(group, "--group"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/groups/");
    path_esc(&p, group);
    path_lit(&p, "/members");
    return list_all(ctx, &p, "members", CTL_OBJ_MEMBER);
}

/* ------------------------------------------------ guardians, directory */

COMMAND(guardian_add)
{
    const char *parent = NULL, *child = NULL, *school = NULL;
    OPTIONS({"parent", required_argument, NULL, 'p'}, {"child", required_argument, NULL, 'c'},
            {"school", required_argument, NULL, 's'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'p':
            parent = optarg;
            break;
        case 'c':
            child = optarg;
            break;
        case 's':
            school = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(parent, "--parent") || !given(child, "--child") || !given(school, "--school"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/guardianships");
    json_t *body = json_pack("{s:s, s:s, s:s}", "school_id", school, "parent_id", parent, "child_id", child);
    return call_and_print(ctx, "POST", &p, body, CTL_OBJ_GUARDIANSHIP);
}

COMMAND(directory_search)
{
    const char *school = NULL, *query = "";
    OPTIONS({"school", required_argument, NULL, 's'}, {"query", required_argument, NULL, 'q'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 's':
            school = optarg;
            break;
        case 'q':
            query = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(school, "--school"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/schools/");
    path_esc(&p, school);
    path_lit(&p, "/directory");
    path_query(&p, "q", query);
    return list_all(ctx, &p, "people", CTL_OBJ_PERSON);
}

/* ------------------------------------------------- codes, OIDC clients */

COMMAND(code_issue)
{
    const char *user = NULL, *school = NULL, *purpose = "ENROLLMENT";
    OPTIONS({"user", required_argument, NULL, 'u'}, {"school", required_argument, NULL, 's'},
            {"purpose", required_argument, NULL, 'p'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'u':
            user = optarg;
            break;
        case 's':
            school = optarg;
            break;
        case 'p':
            if ((purpose = enum_arg(ctl_code_purposes, optarg, "--purpose")) == NULL)
                return CTL_EXIT_USAGE;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(user, "--user") || !given(school, "--school"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/users/");
    path_esc(&p, user);
    path_lit(&p, "/codes");
    return call_and_print(ctx, "POST", &p, json_pack("{s:s, s:s}", "school_id", school, "purpose", purpose), CTL_OBJ_CODE);
}

/* Appends each space-separated word of `arg` to `array`. */
static void append_words(json_t *array, const char *arg)
{
    const char *p = arg;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        if (end > p)
            json_array_append_new(array, json_stringn(p, (size_t)(end - p)));
        p = end;
    }
}

COMMAND(client_create)
{
    const char *name = NULL, *type = NULL, *alg = "", *school = "";
    json_t *uris = json_array(), *grants = json_array(), *scopes = json_array(), *logout_uris = json_array();
    bool first_party = false;
    int rc = CTL_EXIT_USAGE;
    OPTIONS({"name", required_argument, NULL, 'n'}, {"type", required_argument, NULL, 't'},
            {"redirect-uri", required_argument, NULL, 'r'}, {"grant", required_argument, NULL, 'g'},
            {"scope", required_argument, NULL, 's'}, {"alg", required_argument, NULL, 'a'},
            {"school", required_argument, NULL, 'S'}, {"first-party", no_argument, NULL, 'F'},
            {"post-logout-redirect-uri", required_argument, NULL, 'L'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 't':
            if ((type = enum_arg(ctl_client_types, optarg, "--type")) == NULL)
                goto out;
            break;
        case 'r':
            json_array_append_new(uris, json_string(optarg));
            break;
        case 'g':
            append_words(grants, optarg);
            break;
        case 's':
            append_words(scopes, optarg);
            break;
        case 'a':
            alg = optarg;
            break;
        case 'S':
            school = optarg;
            break;
        case 'F':
            first_party = true;
            break;
        case 'L':
            json_array_append_new(logout_uris, json_string(optarg));
            break;
        default:
            if ((rc = common_option(ctx, self, c, optarg)) >= 0)
                goto out;
            rc = CTL_EXIT_USAGE;
        }
    }
    if (!no_operands(self, argc, argv) || !given(name, "--name") || !given(type, "--type"))
        goto out;
    path_buf p = {0};
    path_lit(&p, "/api/v1/oidc/clients");
    json_t *body = json_pack("{s:s, s:s, s:O, s:O, s:O}", "name", name, "type", type, "redirect_uris", uris, "grant_types", grants,
                             "scopes", scopes);
    /* Optional fields are left out rather than sent empty. */
    if (*alg)
        json_object_set_new(body, "id_token_alg", json_string(alg));
    if (*school)
        json_object_set_new(body, "school_id", json_string(school));
    if (first_party)
        json_object_set_new(body, "first_party", json_true());
    if (json_array_size(logout_uris) > 0)
        json_object_set(body, "post_logout_redirect_uris", logout_uris);
    rc = call_and_print(ctx, "POST", &p, body, CTL_OBJ_CLIENT);
out:
    json_decref(logout_uris);
    json_decref(uris);
    json_decref(grants);
    json_decref(scopes);
    return rc;
}

COMMAND(client_get)
{
    const char *id = NULL;
    OPTIONS({"id", required_argument, NULL, 'i'});
    while (NEXT_OPTION()) {
        switch (c) {
        case 'i':
            id = optarg;
            break;
            OTHER_OPTION()
        }
    }
    if (!no_operands(self, argc, argv) || !given(id, "--id"))
        return CTL_EXIT_USAGE;
    path_buf p = {0};
    path_lit(&p, "/api/v1/oidc/clients/");
    path_esc(&p, id);
    return call_and_print(ctx, "GET", &p, NULL, CTL_OBJ_CLIENT);
}

const ctl_command ctl_commands[] = {
    {"school", "create", school_create, "--name N --kind school|kita|community [--kennung K] [--carrier ID]"},
    {"school", "list", school_list, "[--prefix P]"},
    {"school", "get", school_get, "--id ID"},
    {"carrier", "create", carrier_create, "--name N"},
    {"user", "create", user_create,
     "--username U --given G --family F [--display D]\n"
     "           [--school ID --role pupil|teacher|parent|staff|head|school_admin]..."},
    {"user", "get", user_get, "--id ID"},
    {"user", "add-role", user_add_role, "--user ID --school ID --role pupil|teacher|parent|staff|head|school_admin"},
    {"group", "create", group_create, "--school ID --name N --kind class|course|club|staff|parents [--year 2026/27]"},
    {"group", "list", group_list, "--school ID [--year 2026/27]"},
    {"group", "add-member", group_add_member, "--group ID --user ID [--leader] [--from YYYY-MM-DD] [--to YYYY-MM-DD]"},
    {"group", "remove-member", group_remove_member, "--group ID --user ID"},
    {"group", "members", group_members, "--group ID"},
    {"guardian", "add", guardian_add, "--parent ID --child ID --school ID"},
    {"directory", "search", directory_search, "--school ID [--query PREFIX]"},
    {"code", "issue", code_issue, "--user ID --school ID [--purpose enrollment|reset]"},
    {"client", "create", client_create,
     "--name N --type confidential|public --redirect-uri U... --grant G... --scope S...\n"
     "           [--alg ES256|RS256] [--school ID] [--first-party] [--post-logout-redirect-uri U]..."},
    {"client", "get", client_get, "--id CLIENT_ID"},
    {NULL, NULL, NULL, NULL},
};
