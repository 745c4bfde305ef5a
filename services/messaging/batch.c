/* Group commit of sends (docs/messaging.md, "What a send costs"). Appends
 * are serialised on the log head by design; a send holds it for one
 * statement. Sends arriving on other worker threads while one runs queue
 * here, and the first thread to find the head free again appends every
 * send then waiting in one statement on its own connection and hands each
 * thread its result. Most of a send statement's cost is the same for one
 * row or many (starting the statement, its checks and triggers, the log
 * head's and the room's rows, the audience, the commit), so a batch costs
 * PostgreSQL little more than a single send. The same thread then
 * announces the batch's messages in one round trip to Redis, which the
 * gateways then fan out together (one write per socket for the lot). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "messaging.h"

/* The most sends appended in one statement. */
#define BATCH_MAX 64
/* How long a batch about to start waits for sends still being checked on
 * other threads (msg_batch_expect): about what those checks take, far
 * less than the statement it saves. */
#define GATHER_NS 500000
/* While sends keep coming (the last batch had several), a batch waits this
 * long for more from the start, whether or not any are on their way yet:
 * under load each statement then carries more sends, and the processor
 * time a statement, its announcement and their fan-out cost is shared by
 * more messages. One millisecond is little beside a loaded round trip. */
#define GATHER_BUSY_NS 1000000

enum { ROW_QUEUED = 0, ROW_TAKEN, ROW_DONE };

/* Each thread waits for its own row on a condition of its own, so that a
 * batch's end wakes the threads it concerns, one each, and no others. */
static __thread pthread_cond_t tl_wake;
static __thread bool tl_wake_ready;

static pthread_cond_t *thread_wake(void)
{
    if (!tl_wake_ready) {
        pthread_cond_init(&tl_wake, NULL);
        tl_wake_ready = true;
    }
    return &tl_wake;
}

struct st_msg_batch_t {
    msg_events *events; /* NULL: the sends are not announced here */
    /* Held from the end of a batch's statement to the end of its
     * announcement, taken before the next batch may start: batches are
     * announced in the order they were appended. */
    pthread_mutex_t announcing;
    pthread_mutex_t lock;
    pthread_cond_t arrived;    /* a send queued, or one expected gave up */
    msg_send_row *head, *tail; /* queued, oldest first */
    size_t queued;
    size_t coming; /* expected, not yet queued */
    size_t last_n; /* how many sends the last batch took */
    size_t most;   /* the most sends that can wait at once (threads) */
    bool running;  /* a thread is appending a batch */
};

msg_batch *msg_batch_new(msg_events *events, size_t threads)
{
    msg_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        abort();
    b->events = events;
    b->most = threads > 0 && threads < BATCH_MAX ? threads : BATCH_MAX;
    pthread_mutex_init(&b->announcing, NULL);
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->arrived, &attr);
    pthread_condattr_destroy(&attr);
    return b;
}

void msg_batch_free(msg_batch *b)
{
    if (b == NULL)
        return;
    pthread_cond_destroy(&b->arrived);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->announcing);
    free(b);
}

void msg_batch_expect(msg_batch *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    b->coming++;
    pthread_mutex_unlock(&b->lock);
}

void msg_batch_unexpect(msg_batch *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    if (b->coming > 0)
        b->coming--;
    pthread_cond_signal(&b->arrived);
    pthread_mutex_unlock(&b->lock);
}

static bool same_send(const msg_send_row *a, const msg_send_row *b)
{
    return strcmp(a->sender, b->sender) == 0 && strcmp(a->txn_id, b->txn_id) == 0;
}

/* Appends the taken rows in one statement on `pg` and sets each row's
 * result. A second copy of a (sender, txn_id) is left out: it answers
 * CONFLICT once the first went in, as when a concurrent retry wins. */
static void append_taken(kr_pg *pg, msg_send_row **taken, size_t n)
{
    msg_send_row *rows[BATCH_MAX];
    size_t twin[BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        twin[i] = i;
        for (size_t j = 0; j < i && twin[i] == i; j++) {
            if (twin[j] == j && same_send(taken[i], taken[j]))
                twin[i] = j;
        }
        if (twin[i] == i)
            rows[k++] = taken[i];
    }
    bool refused = false;
    msg_store_result res = msg_store_send(pg, rows, k, &refused);
    /* A refusal of several is no answer for any of them: each goes again
     * on its own, and only the faulty one fails. */
    bool alone = res != MSG_STORE_OK && refused && k > 1;
    for (size_t i = 0; i < n; i++) {
        msg_send_row *row = taken[i];
        row->_alone = alone;
        if (twin[i] != i)
            row->result = taken[twin[i]]->result == MSG_STORE_OK ? MSG_STORE_CONFLICT : taken[twin[i]]->result;
    }
}

/* Announces the messages the taken rows appended (polls are read back
 * and announced by their own threads; a row going again on its own is
 * announced by its thread too). */
static void announce_taken(msg_batch *b, msg_send_row **taken, size_t n)
{
    if (!msg_events_enabled(b->events))
        return;
    msg_send_row *rows[BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        msg_send_row *r = taken[i];
        if (r->result == MSG_STORE_OK && !r->_alone && !r->poll) {
            r->announced = true;
            rows[k++] = r;
        }
    }
    msg_events_publish_sends(b->events, rows, k);
}

static msg_store_result send_alone(kr_pg *pg, msg_send_row *row)
{
    bool refused;
    msg_send_row *rows[] = {row};
    return msg_store_send(pg, rows, 1, &refused);
}

/* With the lock held and the batch marked running: while sends expected
 * are still on their way, waits for them a little (GATHER_NS at most);
 * after a batch of several, GATHER_BUSY_NS for whatever comes. Never
 * once every thread that can send has queued. */
static void gather(msg_batch *b)
{
    bool busy = b->last_n > 1;
    if ((b->coming == 0 && !busy) || b->queued >= b->most)
        return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += busy ? GATHER_BUSY_NS : GATHER_NS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while ((busy || b->coming > 0) && b->queued < b->most) {
        if (pthread_cond_timedwait(&b->arrived, &b->lock, &until) == ETIMEDOUT)
            break;
    }
}

msg_store_result msg_batch_send(msg_batch *b, kr_pg *pg, msg_send_row *row, bool expected)
{
    row->result = MSG_STORE_ERROR;
    row->audience = NULL;
    row->announced = false;
    row->_alone = false;
    if (b == NULL)
        return send_alone(pg, row);
    row->_next = NULL;
    row->_state = ROW_QUEUED;
    row->_wake = thread_wake();
    pthread_mutex_lock(&b->lock);
    if (b->tail != NULL)
        b->tail->_next = row;
    else
        b->head = row;
    b->tail = row;
    b->queued++;
    if (expected && b->coming > 0)
        b->coming--;
    pthread_cond_signal(&b->arrived);
    while (row->_state != ROW_DONE) {
        /* A row taken is being appended or announced by another thread:
         * threads whose rows still queue take the head. */
        if (b->running || row->_state == ROW_TAKEN) {
            pthread_cond_wait(row->_wake, &b->lock);
            continue;
        }
        /* The head is free: this thread appends what waits, oldest first
         * (this row among them unless BATCH_MAX older ones wait). */
        b->running = true;
        gather(b);
        msg_send_row *taken[BATCH_MAX];
        size_t n = 0;
        while (b->head != NULL && n < BATCH_MAX) {
            msg_send_row *r = b->head;
            b->head = r->_next;
            r->_next = NULL;
            r->_state = ROW_TAKEN;
            taken[n++] = r;
        }
        if (b->head == NULL)
            b->tail = NULL;
        b->queued -= n;
        b->last_n = n;
        pthread_mutex_unlock(&b->lock);
        append_taken(pg, taken, n);
        /* The head is free for the next batch while this one is
         * announced; its announcement waits for this one's. */
        pthread_mutex_lock(&b->announcing);
        pthread_mutex_lock(&b->lock);
        b->running = false;
        if (b->head != NULL) /* the oldest send waiting appends the next batch */
            pthread_cond_signal(b->head->_wake);
        pthread_mutex_unlock(&b->lock);
        announce_taken(b, taken, n);
        pthread_mutex_unlock(&b->announcing);
        pthread_mutex_lock(&b->lock);
        for (size_t i = 0; i < n; i++) {
            taken[i]->_state = ROW_DONE;
            if (taken[i] != row)
                pthread_cond_signal(taken[i]->_wake);
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (row->_alone)
        return send_alone(pg, row);
    return row->result;
}
