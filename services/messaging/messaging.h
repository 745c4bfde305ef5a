/*
 * messaging — the map of the messaging daemon.
 *
 * The messaging service owns rooms and what happens in them, kept as one
 * ordered event log (docs/messaging.md): the PostgreSQL schema `messaging`.
 * It follows identity's groups (roster rooms), enforces each school's
 * policy on every call, and publishes every appended event to Redis for the
 * realtime fan-out.
 *
 *   main.c            wiring: settings, the RPC server, the roster follower
 *   api_rooms.c       CreateRoom, GetRoom, ListRooms, members, retention,
 *                     school policies
 *   api_messages.c    sending, editing, deleting, reactions, receipts,
 *                     history, search, pins, typing, polls
 *   api_moderation.c  reports, mute, lock, removal, PurgeBefore
 *   api_common.c      what every handler shares: the caller, rooms and
 *                     messages as the caller may see them, errors
 *   policy.c          who may do what: roles, presets, the direct-chat
 *                     matrix, room permissions (pure)
 *   text.c            the markdown subset and the other input checks (pure)
 *   store.c           transactions, the log's append, rooms and members
 *   batch.c           the sends' group commit: concurrent sends appended
 *                     in one statement
 *   store_read.c      reading events and messages back, with their state
 *   events.c          publishing appended events on Redis
 *   identity.c        the calls to the identity service
 *   sync.c            the roster follower: identity's events and the
 *                     periodic reconciliation
 */
#ifndef MESSAGING_H
#define MESSAGING_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "identity.pb-c.h"
#include "kr_pg.h"
#include "kr_rpc.h"
#include "messaging.pb-c.h"

/* ================================================================== limits */

#define MSG_TEXT_MAX_CHARS 8000
#define MSG_TEXT_MAX_BYTES 32000
#define MSG_NAME_MAX 200
#define MSG_TOPIC_MAX 1000
#define MSG_MAX_MENTIONS 50
#define MSG_MAX_ATTACHMENTS 10
#define MSG_MAX_INITIAL_MEMBERS 100
#define MSG_MAX_LISTED_MEMBERS 500
#define MSG_REASON_MAX 500
#define MSG_EXCERPT_MAX 500
#define MSG_POLL_MIN_OPTIONS 2
#define MSG_POLL_MAX_OPTIONS 20
#define MSG_POLL_QUESTION_MAX 500
#define MSG_POLL_OPTION_MAX 200
#define MSG_RETENTION_MAX_DAYS 3650
#define MSG_UNREAD_CAP 1000
/* The client id in the envelopes of messaging's own calls to identity. */
#define MSG_SERVICE_CLIENT_ID "messaging"
/* Channel every appended event is announced on (docs/messaging.md). */
#define MSG_EVENTS_CHANNEL "kreide.messaging.events"
/* Channel identity announces roster changes on. */
#define MSG_IDENTITY_EVENTS_CHANNEL "kreide.identity.events"

/* ================================================================ text.c */

/* Why a text was refused; 0 = acceptable. */
typedef enum {
    MSG_TEXT_OK = 0,
    MSG_TEXT_EMPTY,       /* nothing but white space */
    MSG_TEXT_TOO_LONG,    /* more than the allowed characters or bytes */
    MSG_TEXT_BAD_UTF8,    /* not valid UTF-8 */
    MSG_TEXT_CONTROL,     /* a control character other than newline or tab */
    MSG_TEXT_HTML,        /* raw HTML: a tag, comment or declaration */
    MSG_TEXT_IMAGE,       /* markdown image syntax (no remote images) */
    MSG_TEXT_LINK_SCHEME, /* a link target other than http, https or mailto */
    MSG_TEXT_LINK_REFDEF, /* a link reference definition */
} msg_text_error;

/* Checks a message text against the markdown subset (docs/messaging.md):
 * valid UTF-8 of 1..max_chars characters and at most MSG_TEXT_MAX_BYTES
 * bytes, no control characters but newline and tab, no raw HTML, no
 * images, link targets only http(s) and mailto, no reference definitions.
 * *offset gets the byte offset of the first problem (0 for length errors). */
msg_text_error msg_text_check(const char *text, size_t max_chars, size_t *offset);

/* A short English sentence for a msg_text_error. */
const char *msg_text_strerror(msg_text_error e);

/* The machine-readable code of a msg_text_error ("messaging.text_html"). */
const char *msg_text_code(msg_text_error e);

/* Characters of a plain one-line value (a name, a reason): -1 when it is not
 * valid UTF-8 or holds a control character, else the number of code points. */
long msg_plain_length(const char *s);

/* True for a client transaction id: 1..64 of [A-Za-z0-9._~-]. */
bool msg_txn_id_valid(const char *s);

/* True for a reaction key: 1..32 bytes of valid UTF-8 without white space
 * or control characters. */
bool msg_reaction_key_valid(const char *s);

/* True for an attachment's media type: type/subtype of RFC 6838's
 * restricted-name characters, lower case, at most 127 bytes. */
bool msg_media_type_valid(const char *s);

/* True for a file name: 1..255 characters of plain text without '/' or '\\'
 * and not "." or "..". */
bool msg_file_name_valid(const char *s);

/* Builds a prefix query for PostgreSQL's to_tsquery('simple', ...) from
 * free text: each word (letters and digits, any script) becomes word:*,
 * joined by &. Returns NULL when no word remains or `q` is not valid text.
 * At most 16 words; the result is allocated from `arena`. */
char *msg_search_query(kr_arena *arena, const char *q);

/* Parses an RFC 3339 timestamp (as the API takes them) into Unix ms.
 * Accepts "YYYY-MM-DDTHH:MM:SS[.fff](Z|+hh:mm|-hh:mm)". */
bool msg_time_parse(const char *s, int64_t *ms);

/* ============================================================== policy.c */

/* Roles at a school, as tokens carry them, as bits. */
enum {
    MSG_ROLE_PUPIL = 1u << 0,
    MSG_ROLE_TEACHER = 1u << 1,
    MSG_ROLE_PARENT = 1u << 2,
    MSG_ROLE_STAFF = 1u << 3,
    MSG_ROLE_HEAD = 1u << 4,
    MSG_ROLE_SCHOOL_ADMIN = 1u << 5,
};
#define MSG_NROLES 6
#define MSG_ROLES_ALL ((1u << MSG_NROLES) - 1)

typedef enum {
    MSG_PRESET_SCHOOL = 0,
    MSG_PRESET_KITA = 1,
    MSG_PRESET_COMMUNITY = 2,
} msg_preset;

/* A school's messaging policy in force. */
typedef struct {
    msg_preset preset;
    /* direct[i] has bit j set when role i may open a direct room with
     * someone holding role j (bit numbers as MSG_ROLE_*). */
    unsigned direct[MSG_NROLES];
    unsigned room_creators;  /* MSG_ROLE_* bits */
    unsigned retention_days; /* 0 = none */
} msg_policy;

/* The bit of a role name ("pupil"), 0 for an unknown name. */
unsigned msg_role_bit(const char *name);

/* The name of role number i (0..MSG_NROLES-1). */
const char *msg_role_name(int i);

/* Parses "school", "kita", "community". */
bool msg_preset_parse(const char *s, msg_preset *out);
const char *msg_preset_name(msg_preset p);

/* The preset matching identity's school kind (1 school, 2 kita, 3 community). */
msg_preset msg_preset_for_school_kind(int kind);

/* Fills `out` with a preset's defaults (retention none). */
void msg_policy_defaults(msg_preset p, msg_policy *out);

/* True when someone with `from_roles` may open a direct room with someone
 * with `to_roles` (both MSG_ROLE_* bit sets at the same school). */
bool msg_direct_allowed(const msg_policy *p, unsigned from_roles, unsigned to_roles);

/* True when someone with `roles` may create GROUP and ANNOUNCEMENT rooms. */
bool msg_may_create_room(const msg_policy *p, unsigned roles);

/* Parses a stored direct rule "from>to" into role numbers. */
bool msg_direct_rule_parse(const char *s, int *from, int *to);

/* The caller's roles at a school as MSG_ROLE_* bits (0: none, also for
 * callers that are not people). */
unsigned msg_caller_roles_at(const Kreide__Caller *caller, const char *school_id);

/* True when the caller is a signed-in person (USER with a valid user id). */
bool msg_caller_is_person(const Kreide__Caller *caller);

/* True when the caller holds the installation-wide role "operator". */
bool msg_caller_is_operator(const Kreide__Caller *caller);

/* The caller's standing in one room. */
typedef struct {
    bool joined;
    bool moderator;
    bool muted;
} msg_standing;

typedef enum {
    MSG_KIND_DIRECT = 1,
    MSG_KIND_GROUP = 2,
    MSG_KIND_ANNOUNCEMENT = 3,
    MSG_KIND_ROSTER = 4,
} msg_room_kind;

/* The stored name of a room kind and back (0 for unknown names). */
const char *msg_room_kind_name(msg_room_kind k);
msg_room_kind msg_room_kind_parse(const char *s);

/* May post messages and polls, and edit their own. */
bool msg_may_post(msg_room_kind kind, bool locked, const msg_standing *s);
/* May react and vote. */
bool msg_may_react(bool locked, const msg_standing *s);
/* May pin and unpin: moderators; both people of a direct room. */
bool msg_may_pin(msg_room_kind kind, const msg_standing *s);
/* May add and remove members by hand: moderators of GROUP rooms and of
 * ANNOUNCEMENT rooms that follow no group. */
bool msg_may_manage_members(msg_room_kind kind, bool follows_group, const msg_standing *s);
/* May mute, lock, remove messages, see the room's reports: the room's
 * moderators, and the school's admins and heads (`school_roles`) in every
 * room but direct ones, where only reports reach them. */
bool msg_may_moderate(msg_room_kind kind, const msg_standing *s, unsigned school_roles);
/* May act on reports of the whole school and remove reported messages:
 * school admins and heads. */
bool msg_is_school_moderator(unsigned school_roles);

/* ================================================================ app */

typedef struct st_msg_events_t msg_events;
typedef struct st_msg_identity_t msg_identity;
typedef struct st_msg_sync_t msg_sync;

typedef struct st_msg_batch_t msg_batch;

/* What every handler reaches through ctx->app. */
typedef struct {
    msg_events *events;     /* never NULL; may be disabled */
    msg_identity *identity; /* never NULL */
    msg_sync *sync;         /* NULL in tools and tests */
    msg_batch *batch;       /* the sends' group commit; NULL: each send on its own */
} msg_app;

/* ============================================================== store.c */

typedef enum {
    MSG_STORE_OK = 0,
    MSG_STORE_NOT_FOUND,
    MSG_STORE_CONFLICT, /* a unique value is taken */
    MSG_STORE_ERROR,    /* database unreachable or failing; logged */
} msg_store_result;

/* Runs one parameterised statement; NULL (logged) on failure, then
 * kr_pg_sqlstate tells why. `what` names the statement in logs. */
PGresult *msg_sql(kr_pg *pg, const char *what, const char *sql, int n, const char *const *params);

/* msg_sql as a prepared statement named `what` (one SQL text per name, a
 * string literal): for the statements of every send, which PostgreSQL then
 * parses and plans once per connection. */
PGresult *msg_sql_hot(kr_pg *pg, const char *what, const char *sql, int n, const char *const *params);

/* Maps the last failure of `pg` to a result (unique violation: CONFLICT). */
msg_store_result msg_sql_failure(kr_pg *pg);

/* BEGIN / COMMIT; a failed commit is rolled back. ROLLBACK never fails. */
msg_store_result msg_tx_begin(kr_pg *pg);
msg_store_result msg_tx_commit(kr_pg *pg);
void msg_tx_rollback(kr_pg *pg);

/* One event to append. Strings are borrowed for the call. */
typedef struct {
    const char *kind;       /* stored kind, "message", "member.joined", ... */
    const char *sender;     /* NULL: the service itself */
    const char *txn_id;     /* NULL: none */
    const char *message_id; /* NULL: not about a message */
    const char *data;       /* JSON object text; NULL for {} */
    const char *id;         /* NULL: a new UUIDv7; else the id to use */
} msg_new_event;

/* An appended event, for the reply and for publishing after commit. */
typedef struct {
    int64_t position;
    char id[40];
    char room_id[40];
    char school_id[40];
    char kind[24];
    char sender[40]; /* "" for the service */
    char created_at[40];
} msg_appended;

/* Appends `n` events to a room's log inside the caller's open transaction,
 * one statement each: takes a position from the log head (holding its lock
 * until the transaction ends), inserts the event and moves the room's
 * last_position. Call it late in the transaction: every other append waits
 * for the commit. `out` gets n entries. CONFLICT when a txn_id is taken. */
msg_store_result msg_store_append(kr_pg *pg, const char *school_id, const char *room_id, const msg_new_event *evs, size_t n,
                                  msg_appended *out);

/* Takes the log head's lock now, ahead of the append, in a transaction that
 * changes its room's row before appending (a lock, a rename, retention).
 * Every append locks the log head, then the room's row (its last_position):
 * taking them in the other order would let such a transaction and a send
 * to the room wait for each other until PostgreSQL breaks the deadlock. */
msg_store_result msg_store_hold_head(kr_pg *pg);

/* Who one room's events of a transaction are announced to: the room's
 * joined members at the end of the transaction, and those who left with
 * one of its events (left_position >= since). */
typedef struct {
    char room_id[40];
    int64_t since; /* the transaction's first position in the room */
    bool known;    /* read since the room's last append */
    char **ids;    /* malloc'd user ids, sorted */
    size_t n;
} msg_audience;

/* What a transaction appended, to announce once it committed. */
typedef struct {
    msg_appended *items;
    size_t n, cap;
    msg_audience *rooms; /* one per room appended to */
    size_t nrooms, rooms_cap;
} msg_outbox;

/* Appends into the open transaction like msg_store_append and remembers the
 * events in `box` (grows; free with msg_outbox_free). */
msg_store_result msg_append_to(kr_pg *pg, msg_outbox *box, const char *school_id, const char *room_id, const msg_new_event *ev,
                               msg_appended *out);

/* Takes the audience of `room_id` from column `col` of `r` (one user id per
 * row), read by a statement of the transaction after its last append to the
 * room, with no membership change after it: the log head lock then makes
 * it exactly the members at the event's position. */
void msg_outbox_take_audience(msg_outbox *box, const char *room_id, const PGresult *r, int col);

/* Ends the open transaction of an outbox: with `announce`, first reads the
 * audiences not yet known (one statement for every room), while the log
 * head lock still orders them with every other append; then commits. On
 * failure the transaction is rolled back and the box emptied. */
msg_store_result msg_outbox_commit(kr_pg *pg, msg_outbox *box, bool announce);

/* Adds an event that a statement of the caller's own appended (taking its
 * position from the log head as msg_store_append does) to `box`. */
void msg_outbox_add(msg_outbox *box, const msg_appended *a);

/* Sets the audience of `room_id`, appended to in `box`, from
 * comma-separated user ids (NULL or "": nobody). */
void msg_outbox_set_audience(msg_outbox *box, const char *room_id, const char *ids);

/* The audience of an appended event's room (NULL when not read). */
const msg_audience *msg_outbox_audience(const msg_outbox *box, const char *room_id);

void msg_outbox_free(msg_outbox *box);

/* One message (or poll) to append with msg_store_send or msg_batch_send.
 * The strings are borrowed and checked already; ids in lower case. */
typedef struct st_msg_send_row_t {
    const char *id; /* the event's and the message's, a new UUIDv7 */
    const char *txn_id;
    const char *school_id;
    const char *room_id;
    const char *sender;
    const char *text;
    const char *reply_to; /* NULL: none */
    const char *mentions; /* uuid[] literal */
    Kreide__Messaging__Attachment *const *attachments;
    size_t n_attachments;
    const char *options;   /* text[] literal, polls only */
    const char *closes_at; /* NULL: open-ended */
    /* For the announcement a batch makes (msg_sent_event's): */
    char *const *mention_ids; /* as stored, lower case, once each */
    size_t n_mention_ids;
    bool poll;
    bool multiple_choice, anonymous; /* polls only */
    bool announcement;               /* the room is an announcement channel */
    /* Filled when it was appended (result OK): */
    msg_store_result result;
    int64_t position;
    char *audience; /* the room's audience at the position, comma-separated user ids; malloc'd, NULL: nobody */
    char created_at[40];
    bool announced; /* announced already, with the batch it went in (msg_batch_send) */
    /* msg_batch's own */
    bool _alone;
    int _state;
    struct st_msg_send_row_t *_next;
    pthread_cond_t *_wake; /* its thread's */
} msg_send_row;

/* Appends `n` sends (1 or more, any rooms) in one statement on its own,
 * outside any transaction: takes n positions from the log head at once (in
 * the order of `rows`), inserts the events, moves each room's head to its
 * last position, inserts the messages with their attachments and polls,
 * and reads each room's audience with a fresh snapshot
 * (messaging.room_audience) while the statement holds the log head. The
 * head is so held for the statement's execution and commit only.
 *
 * On OK every row is filled. When the connection was lost, so that it is
 * open whether the statement committed, the log is searched for the rows'
 * ids (on a new connection): found, they are filled and OK (their
 * audiences read as they are then). Otherwise nothing was appended and
 * the result says why (CONFLICT: a txn_id taken); *refused is set when the
 * server refused the statement, so that every row might go through on its
 * own. Free each row's audience with msg_send_row_clear. */
msg_store_result msg_store_send(kr_pg *pg, msg_send_row *const *rows, size_t n, bool *refused);

/* Frees what msg_store_send filled into `row`. */
void msg_send_row_clear(msg_send_row *row);

/* The appended event of a send `row` that msg_store_send filled. */
void msg_send_appended(const msg_send_row *row, msg_appended *out);

/* How many people of a comma-separated audience (msg_send_row's) are not
 * `user_id`. */
uint32_t msg_audience_but(const char *ids, const char *user_id);

/* What messaging knows of a school. */
typedef struct {
    msg_policy policy;
    bool customized;
    char updated_at[40];
} msg_school_row;

/* Reads a school's row; NOT_FOUND when messaging has not met it yet. */
msg_store_result msg_store_school(kr_pg *pg, const char *school_id, msg_school_row *out);

/* Inserts a school's row with `preset` unless it exists; *created tells
 * which. Its reconciliation is due at once. */
msg_store_result msg_store_school_ensure(kr_pg *pg, const char *school_id, msg_preset preset, bool *created);

/* Remembers display names identity reported (one statement; n may be 0). */
msg_store_result msg_store_people(kr_pg *pg, const char *const *user_ids, const char *const *names, size_t n);

/* A room with the caller's standing in it. */
typedef struct {
    char id[40];
    char school_id[40];
    msg_room_kind kind;
    char group_id[40]; /* "" when none */
    bool locked;
    unsigned room_retention_days;   /* 0 = none */
    unsigned school_retention_days; /* 0 = none */
    msg_standing me;
    int64_t my_last_read;
} msg_room_ref;

/* Reads a room and `user_id`'s standing in it (user_id may be "" for none). */
msg_store_result msg_store_room_ref(kr_pg *pg, const char *room_id, const char *user_id, msg_room_ref *out);

/* A send found by its (sender, txn_id). */
typedef struct {
    int64_t position; /* 0: none */
    char room_id[40];
} msg_earlier_send;

/* msg_store_room_ref, and in the same statement the send `user_id` made
 * with `txn_id` before, if any. */
msg_store_result msg_store_room_ref_txn(kr_pg *pg, const char *room_id, const char *user_id, const char *txn_id, msg_room_ref *out,
                                        msg_earlier_send *earlier);

/* A message as the checks before changing it need it. */
typedef struct {
    char id[40];
    char sender[40];
    int64_t position;
    bool deleted;
    bool is_poll;
    bool expired; /* older than the room's retention allows */
    char body_excerpt[MSG_EXCERPT_MAX * 4 + 1];
} msg_message_ref;

/* Reads a message and its room with `user_id`'s standing there. */
msg_store_result msg_store_message_ref(kr_pg *pg, const char *message_id, const char *user_id, msg_room_ref *room,
                                       msg_message_ref *msg);

/* Joined members' user ids of a room, and those who left at or after
 * `left_since` (0: none), into `arena` (for ephemeral notices). */
msg_store_result msg_store_room_audience(kr_pg *pg, kr_arena *arena, const char *room_id, int64_t left_since, char ***ids,
                                         size_t *n);

/* Writes an audit entry inside or outside a transaction. `counts` is JSON
 * object text (NULL = {}); `room_id` may be NULL. */
msg_store_result msg_store_audit(kr_pg *pg, const char *school_id, const char *room_id, const char *action, const char *actor,
                                 const char *rule, const char *counts);

/* One member a roster sync wants in a room. */
typedef struct {
    const char *user_id;
    bool leader;
} msg_roster_member;

/* Makes the rooms following identity group `group_id` of `school_id` match
 * `members` (the group's members valid today) in one transaction: creates
 * the roster room when missing (named `name`, kind `group_kind`), renames
 * it when the name changed, adds, re-roles and removes members whose
 * membership follows the group, each change an event. Serialised per group
 * by an advisory lock, so replicas may run it at once. Appended events go
 * to `box` (empty on entry) for publishing after it returns OK, with their
 * audiences when `announce` (msg_outbox_commit); on failure it stays
 * empty. */
msg_store_result msg_store_sync_group(kr_pg *pg, const char *school_id, const char *group_id, const char *name,
                                      const char *group_kind, const msg_roster_member *members, size_t n, msg_outbox *box,
                                      bool announce);

/* What one purge batch deleted. */
typedef struct {
    uint64_t events, messages, attachments;
} msg_purge_counts;

/* Deletes, in one transaction, up to `limit` of a school's oldest events
 * created before `before` (RFC 3339), or with `before` NULL those older
 * than their room's retention allows; `room_id` NULL for every room of the
 * school. The messages they carry go with them, with attachment
 * references, reactions, votes, pins, confirmations and reports. Fewer
 * events than `limit` means nothing is left to delete. */
msg_store_result msg_store_purge_batch(kr_pg *pg, const char *school_id, const char *room_id, const char *before, unsigned limit,
                                       msg_purge_counts *out);

/* ========================================================== store_read.c */

/* Who reads, and with what. */
typedef struct {
    kr_pg *pg;
    kr_arena *arena;              /* every string and message read */
    const char *viewer;           /* whose reactions, votes and confirmations are `mine`; NULL: no one's */
    const Kreide__Caller *caller; /* whose stream (ListEvents without a room); NULL: none */
} msg_reader;

/* A handler's reader: the caller reads, with the request's arena. */
msg_reader msg_reader_of(kr_rpc_ctx *ctx);

/* Which events ListEvents reads. */
typedef struct {
    const char *room_id; /* NULL: every room of the caller */
    int64_t after;       /* exclusive; 0 = from the start */
    int64_t before;      /* exclusive; 0 = to the end */
    bool backward;       /* the newest `limit` events (before given or no bounds) */
    unsigned limit;
    bool messages_only;
} msg_event_query;

/* Reads events the caller may see, ascending, with message state; *more
 * when further events lie in the direction read; *head the newest position
 * the caller can see. Strings and messages from ctx->arena. */
msg_store_result msg_read_events(kr_rpc_ctx *ctx, const msg_event_query *q, Kreide__Messaging__Event ***out, size_t *n, bool *more,
                                 int64_t *head);

/* Reads the events of `items` (just appended, so not yet expired) in one
 * statement (and one more each for polls and announcements among them), as
 * ListEvents shows them to `rd->viewer`: (*out)[i] is items[i]'s event, or
 * NULL when it is gone. From rd->arena. */
msg_store_result msg_read_appended(const msg_reader *rd, const msg_appended *items, size_t n, Kreide__Messaging__Event ***out);

/* The event of a message `row` appended as `e` (msg_store_send), as
 * ListEvents shows it right after the commit: its text, reply target,
 * mentions (`mentions`, lower case, as stored) and attachments, no
 * reactions, neither pinned nor edited; in an announcement channel
 * (`announcement`) its read status: `audience` people but the sender,
 * none of whom has read or confirmed it yet. Not for polls. From `arena`. */
Kreide__Messaging__Event *msg_sent_event(kr_arena *arena, const msg_appended *e, const msg_send_row *row, char *const *mentions,
                                         size_t n_mentions, bool announcement, uint32_t audience);

/* Reads one message with its state (reactions, poll, read status). */
msg_store_result msg_read_message(kr_rpc_ctx *ctx, const char *message_id, Kreide__Messaging__Message **out);

/* Full-text search within a room. `tsquery` from msg_search_query. */
msg_store_result msg_read_search(kr_rpc_ctx *ctx, const msg_room_ref *room, const char *tsquery, int64_t before, unsigned limit,
                                 Kreide__Messaging__Message ***out, size_t *n, bool *more);

/* Fills a Room for the caller (unread counts; members and pins when
 * `full`). */
msg_store_result msg_read_room(kr_rpc_ctx *ctx, const char *room_id, bool full, Kreide__Messaging__Room *out);

/* The caller's rooms at the given schools (`schools` a PostgreSQL uuid[]
 * literal), by newest activity, after the cursor (last_position, room id;
 * 0/"" = from the start). */
msg_store_result msg_read_rooms(kr_rpc_ctx *ctx, const char *schools, int64_t after_pos, const char *after_id, unsigned limit,
                                Kreide__Messaging__Room ***out, size_t *n, bool *more);

/* ============================================================== batch.c */

/* Group commit of sends. Every append waits for the log head, and a send
 * holds it for one statement; sends that arrive on other threads meanwhile
 * wait here instead, and the next of them appends all that are waiting in
 * one statement (msg_store_send), for all of them, and announces the
 * messages among them on `events` together (msg_events_publish_sends). A
 * send that finds nothing running and no other send on its way goes at
 * once. `events` (may be NULL: nothing announced here) must outlive the
 * batch; `threads` is how many threads send through it (0: unknown), so
 * that a batch does not wait for more sends than can come. */
msg_batch *msg_batch_new(msg_events *events, size_t threads);

/* Frees the batch; no thread may be sending through it. NULL is ignored. */
void msg_batch_free(msg_batch *b);

/* Tells the batch that a send is on its way (its checks are running): a
 * batch about to start waits a moment (half a millisecond at most) for
 * the sends expected, so that they go in one statement. Every call is
 * matched by msg_batch_send with `expected` or by msg_batch_unexpect.
 * NULL is ignored. */
void msg_batch_expect(msg_batch *b);
void msg_batch_unexpect(msg_batch *b);

/* Appends `row` (its out fields filled as by msg_store_send) together with
 * the sends of other threads waiting at the same moment, at most 64 in one
 * statement, run on `pg` of whichever thread finds the head free (this
 * one's for a send on its own); `expected` when this send was announced
 * with msg_batch_expect. The same (sender, txn_id) twice in one
 * batch is appended once: the other copy answers CONFLICT, as when a
 * concurrent retry won. When the server refuses a batch of several (a
 * txn_id taken meanwhile, any other refusal), each of its sends is tried
 * again on its own on its thread's connection, so that one send's fault
 * fails no other. The messages (not polls) a batch appended are announced
 * by the thread that appended them, all in one round trip to Redis and in
 * position order across batches, before their threads return: such a row
 * comes back with `announced` set. With `b` NULL the row goes on its own
 * on `pg`, not announced. Returns the row's result; free it with
 * msg_send_row_clear. */
msg_store_result msg_batch_send(msg_batch *b, kr_pg *pg, msg_send_row *row, bool expected);

/* ============================================================= events.c */

/* Creates the publisher; `redis_url` NULL or "" turns publishing off.
 * Free after every thread that publishes is gone. */
msg_events *msg_events_new(const char *redis_url);
bool msg_events_enabled(const msg_events *ev);
void msg_events_free(msg_events *ev);

/* Publishes the committed events of `box` (one Redis message each, in
 * position order) to their rooms' audiences (msg_outbox_commit read them),
 * each with events[i], box->items[i] as msg_read_appended read it. An
 * event without an audience or a reading is not announced. Best effort:
 * failures are logged and counted, never returned. */
void msg_events_publish(msg_events *ev, const msg_outbox *box, Kreide__Messaging__Event *const *events);

/* Announces appended sends of messages (not polls; result OK) in one round
 * trip to Redis, in the order of `rows`: each with its event as
 * msg_sent_event makes it and its audience (msg_send_row's). Best effort
 * as msg_events_publish. */
void msg_events_publish_sends(msg_events *ev, msg_send_row *const *rows, size_t n);

/* Publishes an ephemeral notice that is not in the log ("typing",
 * "report") to `user_ids`. `extra` is JSON object members without braces
 * appended to the message (may be NULL). */
void msg_events_notify(msg_events *ev, const char *kind, const char *school_id, const char *room_id, const char *user_id,
                       const char *extra, char *const *user_ids, size_t n);

/* The JSON of one published event (exposed for tests): the appended event's
 * facts, its audience, and `event` as ListEvents encodes it, read by no one
 * in particular (every `mine` and `confirmed_by_me` false). Caller frees. */
char *msg_event_json(const msg_appended *e, const Kreide__Messaging__Event *event, char *const *members, size_t n);

/* =========================================================== identity.c */

typedef enum {
    MSG_ID_OK = 0,
    MSG_ID_NOT_FOUND,   /* no such user/group, or not at that school */
    MSG_ID_UNAVAILABLE, /* identity did not answer or failed */
} msg_id_result;

/* Creates the client for identity's URLs (comma-separated). Returns NULL
 * with a message in err on a malformed URL. */
msg_identity *msg_identity_new(const char *urls, const kr_keyring *keys, int64_t timeout_ms, char *err, size_t errlen);
void msg_identity_free(msg_identity *id);

/* Whether a connection to identity is up: Health/Check reports the service
 * unready without one, since nearly every call asks identity. */
bool msg_identity_connected(const msg_identity *id);

/* A person's roles at a school (MSG_ROLE_* bits) and display name.
 * NOT_FOUND when the person has no context there. */
msg_id_result msg_identity_person(msg_identity *id, kr_arena *arena, const char *school_id, const char *user_id, unsigned *roles,
                                  const char **display_name);

/* The school's kind at identity (1 school, 2 kita, 3 community). */
msg_id_result msg_identity_school_kind(msg_identity *id, kr_arena *arena, const char *school_id, int *kind);

/* A group of a school as identity lists it. */
typedef struct {
    const char *id;
    const char *kind; /* class, course, club, staff, parents */
    const char *name;
} msg_id_group;

/* Every group of a school (all pages). */
msg_id_result msg_identity_groups(msg_identity *id, kr_arena *arena, const char *school_id, msg_id_group **out, size_t *n);

/* A group member as identity lists them. */
typedef struct {
    const char *user_id;
    const char *display_name;
    bool leader;
    const char *valid_from; /* "" or YYYY-MM-DD */
    const char *valid_to;
} msg_id_member;

/* Every member of a group (all pages). NOT_FOUND when the group does not
 * exist at the school. */
msg_id_result msg_identity_members(msg_identity *id, kr_arena *arena, const char *school_id, const char *group_id,
                                   msg_id_member **out, size_t *n);

/* True when a membership with these dates counts on `today` (YYYY-MM-DD). */
bool msg_membership_current(const char *valid_from, const char *valid_to, const char *today);

/* ================================================================ sync.c */

typedef struct {
    const char *redis_url; /* NULL: no events, reconciliation only */
    const char *database_url;
    int reconcile_interval_s; /* every school at least this often */
    int sweep_interval_s;     /* expired history is deleted this often */
} msg_sync_opts;

/* Starts the roster follower's thread: it subscribes to identity's
 * events, re-reads a group from identity whenever one changes, reconciles
 * every known school in turn, and deletes history that retention expired
 * (one replica at a time). */
msg_sync *msg_sync_start(const msg_sync_opts *opts, msg_identity *identity, msg_events *events);

/* Asks the follower to reconcile `school_id` soon (a school just met). */
void msg_sync_kick(msg_sync *s);

/* Stops the thread and frees everything (NULL ignored). */
void msg_sync_stop(msg_sync *s);

/* Brings one group's rooms in line with identity now (used by the thread;
 * exposed for the school-first-met path). */
msg_store_result msg_sync_group_now(kr_pg *pg, msg_identity *identity, msg_events *events, kr_arena *arena, const char *school_id,
                                    const char *group_id, const msg_id_group *known);

/* ======================================================== api_common.c */

/* Method tables of the api_*.c files, joined in main.c. */
extern const kr_rpc_method msg_room_methods[];
extern const size_t msg_room_nmethods;
extern const kr_rpc_method msg_message_methods[];
extern const size_t msg_message_nmethods;
extern const kr_rpc_method msg_moderation_methods[];
extern const size_t msg_moderation_nmethods;

/* Fails with NOT_FOUND "messaging.room_not_found"-style answers; returns -1. */
int msg_fail_store(kr_rpc_ctx *ctx, msg_store_result r, const char *what);
int msg_fail_forbidden(kr_rpc_ctx *ctx, const char *why);
int msg_fail_invalid(kr_rpc_ctx *ctx, const char *code, const char *field, const char *why);

/* Refuses callers that are not signed-in people (UNAUTHENTICATED). */
int msg_require_person(kr_rpc_ctx *ctx);

/* Checks a UUID argument. */
int msg_check_uuid(kr_rpc_ctx *ctx, const char *id, const char *field);

/* Loads a room the caller is a joined member of; every other room,
 * including rooms of schools the caller's token does not name, answers
 * NOT_FOUND as if it did not exist. With `allow_school_moderator`, a
 * school admin or head of the room's school passes as well (moderation). */
int msg_room_for(kr_rpc_ctx *ctx, const char *room_id, const char *field, bool allow_school_moderator, msg_room_ref *out);

/* msg_room_for, and the caller's earlier send with `txn_id` (its position
 * 0 when none) read in the same statement: SendMessage and CreatePoll. */
int msg_room_for_txn(kr_rpc_ctx *ctx, const char *room_id, const char *txn_id, msg_room_ref *out, msg_earlier_send *earlier);

/* Loads a message in a room the caller may see (as msg_room_for); expired
 * messages do not exist. */
int msg_message_for(kr_rpc_ctx *ctx, const char *message_id, const char *field, bool allow_school_moderator, msg_room_ref *room,
                    msg_message_ref *msg);

/* Makes sure messaging knows the school (policy row), asking identity for
 * its kind the first time; kicks the follower for a school just met. */
int msg_school_known(kr_rpc_ctx *ctx, const char *school_id);

/* Commits a handler's transaction with msg_outbox_commit, reading the
 * audiences when events are announced. */
msg_store_result msg_commit(kr_rpc_ctx *ctx, msg_outbox *box);

/* After the commit: reads what the handler appended once, as the caller
 * sees it, and announces it. With `reply`, the box's last event is
 * answered from the same reading (-1 after kr_rpc_fail when it cannot be
 * read); without, returns 0. Frees nothing: the caller frees the box. */
int msg_publish(kr_rpc_ctx *ctx, const msg_outbox *box, Kreide__Messaging__Event **reply);

/* An event of the log read back for a reply (a retried send answers the
 * first one). */
int msg_reply_event(kr_rpc_ctx *ctx, int64_t position, Kreide__Messaging__Event *out);

#endif
