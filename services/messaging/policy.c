/* Who may do what in messaging: pure functions of the sealed caller, the
 * school's policy and the caller's standing in a room, asked by every
 * handler before it changes anything (policy_test.c). */
#include <string.h>
#include <strings.h>

#include "kr_id.h"
#include "messaging.h"

static const char *const role_names[MSG_NROLES] = {"pupil", "teacher", "parent", "staff", "head", "school_admin"};

unsigned msg_role_bit(const char *name)
{
    for (int i = 0; i < MSG_NROLES; i++) {
        if (strcmp(role_names[i], name) == 0)
            return 1u << i;
    }
    return 0;
}

const char *msg_role_name(int i)
{
    return i >= 0 && i < MSG_NROLES ? role_names[i] : NULL;
}

static const char *const preset_names[] = {"school", "kita", "community"};

bool msg_preset_parse(const char *s, msg_preset *out)
{
    for (size_t i = 0; i < sizeof(preset_names) / sizeof(preset_names[0]); i++) {
        if (strcmp(preset_names[i], s) == 0) {
            *out = (msg_preset)i;
            return true;
        }
    }
    return false;
}

const char *msg_preset_name(msg_preset p)
{
    return (unsigned)p < sizeof(preset_names) / sizeof(preset_names[0]) ? preset_names[p] : "school";
}

msg_preset msg_preset_for_school_kind(int kind)
{
    return kind == 2 ? MSG_PRESET_KITA : kind == 3 ? MSG_PRESET_COMMUNITY : MSG_PRESET_SCHOOL;
}

#define P MSG_ROLE_PUPIL
#define T MSG_ROLE_TEACHER
#define A MSG_ROLE_PARENT
#define S MSG_ROLE_STAFF
#define H MSG_ROLE_HEAD
#define SA MSG_ROLE_SCHOOL_ADMIN
#define STAFF_ROLES (T | S | H | SA)

void msg_policy_defaults(msg_preset p, msg_policy *out)
{
    memset(out, 0, sizeof(*out));
    out->preset = p;
    switch (p) {
    case MSG_PRESET_KITA:
        /* Children do not chat; parents reach the educators and the
         * office, not each other; staff reach parents and each other. */
        out->direct[0] = 0;
        out->direct[1] = STAFF_ROLES | A;
        out->direct[2] = STAFF_ROLES;
        out->direct[3] = STAFF_ROLES | A;
        out->direct[4] = STAFF_ROLES | A;
        out->direct[5] = STAFF_ROLES | A;
        out->room_creators = STAFF_ROLES;
        break;
    case MSG_PRESET_COMMUNITY:
        /* A housing co-operative or a club: neighbours talk to each other. */
        for (int i = 0; i < MSG_NROLES; i++)
            out->direct[i] = MSG_ROLES_ALL;
        out->room_creators = MSG_ROLES_ALL;
        break;
    case MSG_PRESET_SCHOOL:
    default:
        /* Pupils reach teachers, staff (social workers, the office) and the
         * head, not each other; parents reach the school's people, not
         * other parents or children; the school's people reach everyone. */
        out->direct[0] = T | S | H;
        out->direct[1] = MSG_ROLES_ALL;
        out->direct[2] = STAFF_ROLES;
        out->direct[3] = MSG_ROLES_ALL;
        out->direct[4] = MSG_ROLES_ALL;
        out->direct[5] = MSG_ROLES_ALL;
        out->room_creators = STAFF_ROLES;
        break;
    }
}

#undef P
#undef T
#undef A
#undef S
#undef H
#undef SA

bool msg_direct_allowed(const msg_policy *p, unsigned from_roles, unsigned to_roles)
{
    for (int i = 0; i < MSG_NROLES; i++) {
        if ((from_roles & (1u << i)) && (p->direct[i] & to_roles))
            return true;
    }
    return false;
}

bool msg_may_create_room(const msg_policy *p, unsigned roles)
{
    return (p->room_creators & roles) != 0;
}

bool msg_direct_rule_parse(const char *s, int *from, int *to)
{
    const char *gt = strchr(s, '>');
    if (gt == NULL || gt == s)
        return false;
    char name[32];
    size_t n = (size_t)(gt - s);
    if (n >= sizeof(name))
        return false;
    memcpy(name, s, n);
    name[n] = '\0';
    unsigned a = msg_role_bit(name), b = msg_role_bit(gt + 1);
    if (a == 0 || b == 0)
        return false;
    *from = __builtin_ctz(a);
    *to = __builtin_ctz(b);
    return true;
}

/* ------------------------------------------------------------ callers */

bool msg_caller_is_person(const Kreide__Caller *caller)
{
    return caller->kind == KREIDE__CALLER__KIND__USER && kr_uuid_valid(caller->user_id);
}

bool msg_caller_is_operator(const Kreide__Caller *caller)
{
    if (caller->kind != KREIDE__CALLER__KIND__USER && caller->kind != KREIDE__CALLER__KIND__SERVICE)
        return false;
    for (size_t i = 0; i < caller->n_roles; i++) {
        if (strcmp(caller->roles[i], "operator") == 0)
            return true;
    }
    return false;
}

unsigned msg_caller_roles_at(const Kreide__Caller *caller, const char *school_id)
{
    /* Rooms are for people: a service token holds no standing in them. */
    if (!msg_caller_is_person(caller))
        return 0;
    unsigned bits = 0;
    for (size_t i = 0; i < caller->n_schools; i++) {
        const Kreide__CallerSchool *s = caller->schools[i];
        if (strcasecmp(s->school_id, school_id) != 0)
            continue;
        for (size_t j = 0; j < s->n_roles; j++)
            bits |= msg_role_bit(s->roles[j]);
    }
    return bits;
}

/* -------------------------------------------------------------- rooms */

static const char *const kind_names[] = {NULL, "direct", "group", "announcement", "roster"};

const char *msg_room_kind_name(msg_room_kind k)
{
    return (unsigned)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : NULL;
}

msg_room_kind msg_room_kind_parse(const char *s)
{
    for (size_t i = 1; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
        if (strcmp(kind_names[i], s) == 0)
            return (msg_room_kind)i;
    }
    return (msg_room_kind)0;
}

bool msg_may_post(msg_room_kind kind, bool locked, const msg_standing *s)
{
    if (!s->joined)
        return false;
    if (s->moderator)
        return true;
    return !s->muted && !locked && kind != MSG_KIND_ANNOUNCEMENT;
}

bool msg_may_react(bool locked, const msg_standing *s)
{
    if (!s->joined)
        return false;
    return s->moderator || (!s->muted && !locked);
}

bool msg_may_pin(msg_room_kind kind, const msg_standing *s)
{
    return s->joined && (s->moderator || kind == MSG_KIND_DIRECT);
}

bool msg_may_manage_members(msg_room_kind kind, bool follows_group, const msg_standing *s)
{
    if (!s->joined || !s->moderator)
        return false;
    return kind == MSG_KIND_GROUP || (kind == MSG_KIND_ANNOUNCEMENT && !follows_group);
}

bool msg_is_school_moderator(unsigned school_roles)
{
    return (school_roles & (MSG_ROLE_SCHOOL_ADMIN | MSG_ROLE_HEAD)) != 0;
}

bool msg_may_moderate(msg_room_kind kind, const msg_standing *s, unsigned school_roles)
{
    if (kind == MSG_KIND_DIRECT)
        return false;
    return (s->joined && s->moderator) || msg_is_school_moderator(school_roles);
}
