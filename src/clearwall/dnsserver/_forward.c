/* clearwall.dnsserver._forward: the standard chain's cache-miss path, fused in C.
 *
 * Why this exists: a first-time name cost about 44 us of server CPU on the general path
 * (bench/dns.py, py-spy: a Context and ten handler calls, a coroutine, a task and a
 * future, a Python socket created, registered with the event loop and closed, the
 * reply scanned, shaped, stored and rendered in Python) against about 20 us in Unbound.
 * Here the same steps run in C on the same objects, and Python is called only for what
 * only Python knows: the policy's verdicts on the name and the answer's addresses, the
 * clocks, the metrics' histogram and the cache's store.
 *
 * Engine: the upstream sockets. Every attempt gets a fresh UDP socket bound to a port
 * drawn uniformly from the kernel's ephemeral range with getrandom(2), connected to the
 * server (the kernel then delivers only the server's datagrams to it), and a random
 * 16-bit ID (RFC 5452 section 9.2); the socket is closed when the attempt ends, so a
 * late reply finds no socket. All sockets sit in one epoll set, with a timerfd for the
 * attempts' deadlines; the event loop watches that one descriptor (``Engine.fileno``).
 *
 * MissPath: ``miss(query, host, sockaddr, listen_fd)`` is offered each UDP datagram the
 * fused fast path declined. It takes the queries whose whole answer it can work out
 * the way the Python chain would (plain names, class IN, ordinary types, RD=1, EDNS
 * version 0, not cached, not blocked, nothing special-use) and declines everything else
 * with no trace, so the general chain answers it. A taken query is forwarded with the
 * Python upstream handler's attempt loop (attempts per server, failover on SERVFAIL,
 * REFUSED, NOTIMP and FORMERR, the upstreams' EDEs kept); a usable reply is shaped as
 * Upstream.finish shapes it (flags, minimal responses, OPT, TTL bounds, cache lifetime),
 * screened as the response policy screens it, stored as the cache stores it, rendered as
 * the responder renders it and sent from the listening socket. Whatever else can happen
 * (truncation, a CNAME, a blocked address, every upstream failing) is handed to the
 * Python continuation at the point reached (dnsserver/forward.py), which finishes the
 * query exactly as the chain would have. With the query log on, each answer sent from
 * here is recorded as the chain's query log handler records it (``record``). tests/dnsserver/test_forward.py runs random
 * query mixes through this path and through the Python chain and compares the replies,
 * counters and cache records.
 */
#define _GNU_SOURCE 1
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "structmember.h"

#ifdef __linux__
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "_ratelimit.h"

#define QR 0x80
#define TC 0x02
#define RD 0x01
#define RA 0x80
#define AD 0x20
#define CD 0x10
#define TYPE_A 1
#define TYPE_NS 2
#define TYPE_CNAME 5
#define TYPE_SOA 6
#define TYPE_AAAA 28
#define TYPE_OPT 41
#define TYPE_NSEC 47
#define TYPE_NSEC3 50
#define CLASS_IN 1
#define OUR_UDP_PAYLOAD 1232 /* context.OUR_UDP_PAYLOAD */
#define MIN_UDP 512
#define SCAN_MAX 512 /* records per reply handled here; more go to Python */
#define MAX_ENDINGS 64
#define RX_SIZE 65536
#define EVENTS 64

static inline uint16_t
be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void
put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An int argument (3.11 has no public PyLong_AsInt): -1 with an exception on error. */
static int
as_int(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "file descriptor out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static double
monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* -- the wire: what wire.py does, for the replies this path handles ------------------ */

/* wire.skip_name: offset past the name at off, or -1 (same checks, same order). */
static Py_ssize_t
skip_name(const uint8_t *d, Py_ssize_t end, Py_ssize_t off)
{
    int total = 0;
    for (;;) {
        if (off >= end)
            return -1;
        uint8_t len = d[off];
        if (len == 0)
            return off + 1;
        if (len >= 0xC0) {
            if (off + 1 >= end)
                return -1;
            return off + 2;
        }
        if (len > 63)
            return -1;
        total += len + 1;
        if (total > 255)
            return -1;
        off += len + 1;
    }
}

/* wire.ReplyScan, as far as this path reads it. */
typedef struct {
    int rcode; /* with the OPT's extended bits */
    int ancount;
    int truncated;
    int n_ttl;
    uint16_t ttl_off[SCAN_MAX];
    int has_min_all;
    uint32_t min_all;
    int has_soa;
    uint32_t soa_ttl;
    int n_cnames;
    int n_addr;
    uint16_t addr_off[SCAN_MAX];
    uint8_t addr_len[SCAN_MAX];
    Py_ssize_t opt_start, opt_end;
} Scan;

/* wire.scan_reply: 0, -1 where it raises DNSWireError, -2 when the reply has more
 * records than this path keeps (the caller hands it to Python). */
static int
scan_reply(const uint8_t *d, Py_ssize_t n, Scan *s)
{
    if (n < 12)
        return -1;
    int qd = be16(d + 4), an = be16(d + 6), ns = be16(d + 8), ar = be16(d + 10);
    s->rcode = d[3] & 0x0F;
    s->ancount = an;
    s->truncated = (d[2] & TC) != 0;
    s->n_ttl = s->n_cnames = s->n_addr = 0;
    s->has_min_all = s->has_soa = 0;
    s->opt_start = s->opt_end = -1;
    Py_ssize_t off = 12;
    for (int i = 0; i < qd; i++) {
        off = skip_name(d, n, off);
        if (off < 0)
            return -1;
        off += 4;
        if (off > n)
            return -1;
    }
    int total = an + ns + ar;
    for (int index = 0; index < total; index++) {
        Py_ssize_t start = off;
        off = skip_name(d, n, off);
        if (off < 0 || off + 10 > n)
            return -1;
        int rtype = be16(d + off);
        uint32_t ttl = be32(d + off + 4);
        int rdlen = be16(d + off + 8);
        Py_ssize_t rdata_at = off + 10;
        off = rdata_at + rdlen;
        if (off > n)
            return -1;
        if (rtype == TYPE_OPT) {
            if (index < an + ns || s->opt_start >= 0)
                return -1;
            s->opt_start = start;
            s->opt_end = off;
            s->rcode |= (int)((ttl >> 24) & 0xFF) << 4;
            continue;
        }
        if (ttl > 0x7FFFFFFF)
            ttl = 0;
        if (s->n_ttl == SCAN_MAX || rdata_at > 65535)
            return -2;
        s->ttl_off[s->n_ttl++] = (uint16_t)(rdata_at - 6);
        if (!s->has_min_all || ttl < s->min_all) {
            s->min_all = ttl;
            s->has_min_all = 1;
        }
        if (index < an) {
            if (rtype == TYPE_CNAME)
                s->n_cnames++;
            else if ((rtype == TYPE_A && rdlen == 4) || (rtype == TYPE_AAAA && rdlen == 16)) {
                s->addr_off[s->n_addr] = (uint16_t)rdata_at;
                s->addr_len[s->n_addr++] = (uint8_t)rdlen;
            }
        }
        else if (index < an + ns && rtype == TYPE_SOA) {
            Py_ssize_t at = skip_name(d, n, rdata_at);
            if (at < 0)
                return -1;
            at = skip_name(d, n, at);
            if (at < 0 || at + 20 > off)
                return -1;
            uint32_t minimum = be32(d + at + 16);
            s->soa_ttl = ttl < minimum ? ttl : minimum;
            s->has_soa = 1;
        }
    }
    if (off != n)
        return -1;
    return 0;
}

/* wire.question_equal: data holds question (name, QTYPE, QCLASS) after its header, the
 * name compared without ASCII case, QTYPE and QCLASS exactly. */
static int
question_equal(const uint8_t *data, Py_ssize_t n, const uint8_t *question, Py_ssize_t qlen)
{
    Py_ssize_t name_end = 12 + qlen - 4;
    if (n < name_end + 4 || memcmp(data + name_end, question + qlen - 4, 4) != 0)
        return 0;
    for (Py_ssize_t i = 0; i < qlen - 4; i++) {
        uint8_t a = data[12 + i], b = question[i];
        if (a >= 'A' && a <= 'Z')
            a += 32;
        if (b >= 'A' && b <= 'Z')
            b += 32;
        if (a != b)
            return 0;
    }
    return 1;
}

/* wire.minimal_sections into out: the new length, or -1 when the reply stays as it is
 * (Python returns the very object), -2 on a record it cannot read. */
static Py_ssize_t
minimal_sections(const uint8_t *r, Py_ssize_t n, int qtype, uint8_t *out)
{
    int qd = be16(r + 4), an = be16(r + 6), ns = be16(r + 8), ar = be16(r + 10);
    if (qd != 1 || !(ns || ar))
        return -1;
    Py_ssize_t off = skip_name(r, n, 12);
    if (off < 0)
        return -2;
    off += 4;
    int ans_qtype = 0, auth_nsec = 0, auth_soa = 0, auth_ns = 0, extra = 0;
    Py_ssize_t answer_end = off, authority_end = off, opt_start = -1, opt_end = -1;
    for (int index = 0; index < an + ns + ar; index++) {
        Py_ssize_t start = off;
        Py_ssize_t at = skip_name(r, n, off);
        if (at < 0 || at + 10 > n)
            return -2;
        int rtype = be16(r + at);
        off = at + 10 + be16(r + at + 8);
        if (index < an) {
            if (rtype == qtype)
                ans_qtype = 1;
            answer_end = authority_end = off;
        }
        else if (index < an + ns) {
            if (rtype == TYPE_NSEC || rtype == TYPE_NSEC3)
                auth_nsec = 1;
            else if (rtype == TYPE_SOA)
                auth_soa = 1;
            else if (rtype == TYPE_NS)
                auth_ns = 1;
            authority_end = off;
        }
        else if (rtype == TYPE_OPT) {
            opt_start = start;
            opt_end = off;
        }
        else
            extra = 1;
    }
    int rcode = r[3] & 0x0F;
    Py_ssize_t keep;
    int nscount;
    if (rcode == 0 && ans_qtype && qtype != TYPE_NS && !auth_nsec) {
        keep = answer_end;
        nscount = 0;
    }
    else if (rcode == 3 || (rcode == 0 && !an && (auth_soa || !auth_ns))) {
        if (!extra)
            return -1;
        keep = authority_end;
        nscount = ns;
    }
    else
        return -1;
    memcpy(out, r, 6);
    put16(out + 6, (unsigned)an);
    put16(out + 8, (unsigned)nscount);
    put16(out + 10, opt_start >= 0 ? 1 : 0);
    memcpy(out + 12, r + 12, (size_t)(keep - 12));
    Py_ssize_t len = keep;
    if (opt_start >= 0) {
        memcpy(out + len, r + opt_start, (size_t)(opt_end - opt_start));
        len += opt_end - opt_start;
    }
    return len;
}

/* -- random numbers ------------------------------------------------------------------ */

typedef struct {
    uint8_t buf[512];
    size_t pos;
    pid_t pid; /* a forked worker must not reuse its parent's unread bytes */
} Random;

static int
random_bytes(Random *r, void *out, size_t n)
{
    pid_t pid = getpid();
    if (r->pid != pid || r->pos + n > sizeof r->buf) {
        size_t got = 0;
        while (got < sizeof r->buf) {
            ssize_t k = getrandom(r->buf + got, sizeof r->buf - got, 0);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            got += (size_t)k;
        }
        r->pos = 0;
        r->pid = pid;
    }
    memcpy(out, r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

/* Uniform in [0, n) (rejection sampling: no modulo bias). */
static int
random_below(Random *r, uint32_t n, uint32_t *value)
{
    uint32_t limit = UINT32_MAX - UINT32_MAX % n, x;
    do {
        if (random_bytes(r, &x, sizeof x) < 0)
            return -1;
    } while (x >= limit);
    *value = x % n;
    return 0;
}

/* -- Engine ------------------------------------------------------------------------------ */

struct MissPath;

/* One forwarded query in flight. */
typedef struct Pending {
    struct Pending *prev, *next; /* the engine's deadline list (earliest first) */
    int fd;                      /* the current attempt's socket, -1 between attempts */
    int linked;
    double deadline;
    struct MissPath *path; /* owned */
    /* the client and its query */
    PyObject *query, *host, *jurisdiction, *key, *token; /* owned */
    PyObject *route;                                      /* tuple of server indexes, owned */
    PyObject *failures;                                   /* list of EDE options, or NULL */
    unsigned long generation;
    int listen_fd;
    struct sockaddr_storage client;
    socklen_t client_len;
    int name_end, qtype, edns, do_bit, payload;
    /* the attempt loop: server position in route, attempt on it */
    Py_ssize_t server;
    int attempt;
    uint16_t qid;
    double started; /* the upstream handler's clock when the attempt began */
    double arrived; /* CLOCK_MONOTONIC (time.perf_counter) when taken, for the query log */
} Pending;

typedef struct {
    PyObject_HEAD
    int epfd, tfd;
    Pending *head, *tail;
    Py_ssize_t count;
    double armed;
    unsigned lo, hi; /* the ephemeral port range */
    Random random;
    uint8_t *rx;
    int *listeners;
    int nlisteners, caplisteners;
    int in_poll, close_requested;
    unsigned long long sent, fallback_binds;
} Engine;

static PyTypeObject EngineType;

static void engine_unlink(Engine *e, Pending *p);
static void pending_free(Engine *e, Pending *p);

static void
read_port_range(Engine *e)
{
    e->lo = 32768;
    e->hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f == NULL)
        return;
    unsigned lo, hi;
    if (fscanf(f, "%u %u", &lo, &hi) == 2 && lo >= 1024 && hi <= 65535 && lo <= hi) {
        e->lo = lo;
        e->hi = hi;
    }
    fclose(f);
}

static int
Engine_init(Engine *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Engine", kwlist))
        return -1;
    if (self->rx != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Engine is already initialised");
        return -1;
    }
    self->epfd = self->tfd = -1;
    self->rx = PyMem_Malloc(RX_SIZE);
    if (self->rx == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->epfd < 0 || self->tfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = self};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->tfd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    read_port_range(self);
    return 0;
}

static PyObject *
Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Engine *self = (Engine *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->epfd = self->tfd = -1;
    return (PyObject *)self;
}

static void
engine_close(Engine *e)
{
    while (e->head != NULL) {
        Pending *p = e->head;
        engine_unlink(e, p);
        pending_free(e, p); /* its reply is dropped, as a stopping server drops them */
    }
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->tfd >= 0)
        close(e->tfd);
    e->epfd = e->tfd = -1;
    e->nlisteners = 0;
}

static void
Engine_dealloc(Engine *self)
{
    engine_close(self);
    PyMem_Free(self->rx);
    PyMem_Free(self->listeners);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void
engine_arm(Engine *e)
{
    double when = e->head != NULL ? e->head->deadline : 0.0;
    if (when == e->armed || e->tfd < 0)
        return;
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (when > 0) {
        its.it_value.tv_sec = (time_t)when;
        its.it_value.tv_nsec = (long)((when - (double)(time_t)when) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(e->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    e->armed = when;
}

/* Into the deadline list, kept sorted (usually at the tail: one timeout for all). */
static void
engine_link(Engine *e, Pending *p)
{
    Pending *after = e->tail;
    while (after != NULL && after->deadline > p->deadline)
        after = after->prev;
    p->prev = after;
    p->next = after != NULL ? after->next : e->head;
    if (p->next != NULL)
        p->next->prev = p;
    else
        e->tail = p;
    if (after != NULL)
        after->next = p;
    else
        e->head = p;
    p->linked = 1;
}

/* Out of the deadline list, its socket closed (which also leaves the epoll set). */
static void
engine_unlink(Engine *e, Pending *p)
{
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    if (!p->linked)
        return;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        e->head = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    else
        e->tail = p->prev;
    p->prev = p->next = NULL;
    p->linked = 0;
}

/* A fresh socket on a random port, connected to server: 0, or -1 with errno set. */
static int
engine_open(Engine *e, const struct sockaddr_storage *server, socklen_t len, Pending *p)
{
    int family = server->ss_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* RFC 5452 section 9.2: the port drawn here, uniformly over the ephemeral range;
     * should a few draws all be taken, the kernel picks one at connect(). */
    for (int i = 0; i < 8; i++) {
        uint32_t r;
        if (random_below(&e->random, e->hi - e->lo + 1, &r) < 0)
            break;
        struct sockaddr_storage local;
        memset(&local, 0, sizeof local);
        socklen_t local_len;
        if (family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&local;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)(e->lo + r));
            a->sin6_addr = in6addr_any;
            local_len = sizeof *a;
        }
        else {
            struct sockaddr_in *a = (struct sockaddr_in *)&local;
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)(e->lo + r));
            a->sin_addr.s_addr = htonl(INADDR_ANY);
            local_len = sizeof *a;
        }
        if (bind(fd, (struct sockaddr *)&local, local_len) == 0)
            goto bound;
        if (errno != EADDRINUSE && errno != EACCES)
            break;
    }
    e->fallback_binds++;
bound:
    if (connect(fd, (const struct sockaddr *)server, len) < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        goto fail;
    p->fd = fd;
    return 0;
fail: {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}
}

static int
engine_is_listener(Engine *e, int fd)
{
    for (int i = 0; i < e->nlisteners; i++)
        if (e->listeners[i] == fd)
            return 1;
    return 0;
}

static void
engine_reply(Engine *e, Pending *p, const uint8_t *out, Py_ssize_t len)
{
    /* Only from a listener that is still open: a closed one's number may be reused. */
    if (p->listen_fd >= 0 && engine_is_listener(e, p->listen_fd))
        (void)sendto(p->listen_fd, out, (size_t)len, MSG_DONTWAIT,
                     (struct sockaddr *)&p->client, p->client_len);
}

/* -- MissPath ---------------------------------------------------------------------------- */

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
} Server;

typedef struct MissPath {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Engine *engine;
    /* the fast path's objects (handlers acl, ratelimit, jurisdiction) */
    PyObject *acl_memo;
    Limiter lim;
    PyObject *jurisdiction;
    /* special_use: the text endings that may be special-use names */
    PyObject *endings;
    /* the cache */
    PyObject *cache;   /* .\_generation, ._change_at */
    PyObject *clock;   /* the cache's (and upstream's) clock */
    PyObject *records; /* LRUStore */
    PyObject *blocks;  /* OrderedDict */
    long cache_min_ttl, cache_max_ttl;
    /* the policy */
    PyObject *policy; /* PolicyHolder: .current, .token */
    PyObject *allowed;
    /* metrics */
    PyObject *metrics;
    PyObject *counts;
    PyObject *observe; /* metrics.observe_upstream */
    /* the upstream handler's settings */
    Server *servers;
    Py_ssize_t nservers;
    PyObject *default_route;   /* tuple of server indexes, or None: declined */
    PyObject *routes;          /* dict: jurisdiction -> tuple of indexes, or None: declined */
    double timeout;
    int attempts, payload, minimal;
    long negative_ttl, min_ttl, max_ttl, max_inflight;
    /* the Python continuation */
    PyObject *handoff;
    /* the query log's record(host, after_id, rcode, jurisdiction, arrived), or NULL */
    PyObject *record;
    /* the instant the policy's dates are compared with (a callable), or NULL: the
     * policy's own default, the current time (a test passes its own clock) */
    PyObject *wall;
    unsigned long long taken, handed_off, completed;
} MissPath;

static PyTypeObject MissPathType;

static PyObject *s_generation, *s_change_at, *s_current, *s_token, *s_match, *s_match_ip,
    *s_blocked, *s_inflight, *s_cache_misses, *s_put, *s_allow, *one;

static void
pending_free(Engine *e, Pending *p)
{
    if (p->fd >= 0)
        close(p->fd);
    Py_XDECREF(p->query);
    Py_XDECREF(p->host);
    Py_XDECREF(p->jurisdiction);
    Py_XDECREF(p->key);
    Py_XDECREF(p->token);
    Py_XDECREF(p->route);
    Py_XDECREF(p->failures);
    Py_XDECREF((PyObject *)p->path);
    e->count--;
    PyMem_Free(p);
}

/* metrics.<name> += delta */
static int
bump(PyObject *obj, PyObject *name, long delta)
{
    PyObject *old = PyObject_GetAttr(obj, name);
    if (old == NULL)
        return -1;
    PyObject *d = PyLong_FromLong(delta);
    PyObject *new = d == NULL ? NULL : PyNumber_Add(old, d);
    Py_DECREF(old);
    Py_XDECREF(d);
    if (new == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, new);
    Py_DECREF(new);
    return rc;
}

static int
call_clock(PyObject *clock, double *now)
{
    PyObject *v = PyObject_CallNoArgs(clock);
    if (v == NULL)
        return -1;
    *now = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int
client_port(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
    return ntohs(((const struct sockaddr_in *)a)->sin_port);
}

static void start_attempt(Pending *p);

/* Hand the query to the Python continuation at the point reached: the attempt
 * (server, attempt) with the UDP reply it received (or reply NULL: that attempt is
 * still to be made; server == len(route): every attempt failed). The continuation then
 * owns the in-flight slot. Frees p. */
static void
hand_off(Pending *p, const uint8_t *reply, Py_ssize_t len)
{
    MissPath *m = p->path;
    Engine *e = m->engine;
    engine_unlink(e, p);
    m->handed_off++;
    PyObject *sockaddr = PyBytes_FromStringAndSize((const char *)&p->client, p->client_len);
    PyObject *rep = reply == NULL ? Py_NewRef(Py_None)
                                  : PyBytes_FromStringAndSize((const char *)reply, len);
    PyObject *port = PyLong_FromLong(client_port(&p->client));
    PyObject *fd = PyLong_FromLong(p->listen_fd);
    PyObject *generation = PyLong_FromUnsignedLong(p->generation);
    PyObject *server = PyLong_FromSsize_t(p->server);
    PyObject *attempt = PyLong_FromLong(p->attempt);
    PyObject *qid = PyLong_FromLong(p->qid);
    PyObject *started = PyFloat_FromDouble(p->started);
    PyObject *arrived = PyFloat_FromDouble(p->arrived);
    PyObject *res = NULL;
    if (sockaddr && rep && port && fd && generation && server && attempt && qid && started &&
        arrived) {
        PyObject *args[] = {p->query,  p->host,  port,   sockaddr,
                            fd,        p->jurisdiction, p->key, generation,
                            p->token,  server,   attempt, p->failures ? p->failures : Py_None,
                            qid,       rep,      started, arrived};
        res = PyObject_Vectorcall(m->handoff, args, sizeof args / sizeof *args, NULL);
    }
    if (res == NULL)
        PyErr_WriteUnraisable(m->handoff);
    Py_XDECREF(res);
    Py_XDECREF(sockaddr);
    Py_XDECREF(rep);
    Py_XDECREF(port);
    Py_XDECREF(fd);
    Py_XDECREF(generation);
    Py_XDECREF(server);
    Py_XDECREF(attempt);
    Py_XDECREF(qid);
    Py_XDECREF(started);
    Py_XDECREF(arrived);
    pending_free(e, p);
}

/* The attempt ended without a usable reply (timeout, an ICMP error, garbage, a socket
 * that could not be made): the next attempt, else the next server, else Python. */
static void
attempt_failed(Pending *p)
{
    engine_unlink(p->path->engine, p);
    if (++p->attempt >= p->path->attempts) {
        p->server++;
        p->attempt = 0;
    }
    start_attempt(p);
}

/* Send the attempt (p->server, p->attempt) (the upstream handler's loop body up to
 * the transport's udp()), or hand off when no server is left. */
static void
start_attempt(Pending *p)
{
    MissPath *m = p->path;
    Engine *e = m->engine;
    if (p->server >= PyTuple_GET_SIZE(p->route)) {
        hand_off(p, NULL, 0);
        return;
    }
    Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(p->route, p->server));
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(p->query);
    uint8_t query[300];
    uint16_t qid;
    if (random_bytes(&e->random, &qid, sizeof qid) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        PyErr_WriteUnraisable((PyObject *)m);
        hand_off(p, NULL, 0);
        return;
    }
    p->qid = qid;
    /* wire.build_query(qid, name, qtype, qclass, ad=, cd=, do=, payload=) */
    put16(query, qid);
    query[2] = RD;
    query[3] = d[3] & (AD | CD);
    memcpy(query + 4, "\x00\x01\x00\x00\x00\x00\x00\x01", 8);
    Py_ssize_t name_len = p->name_end - 12, len = 12;
    for (Py_ssize_t i = 0; i < name_len; i++) {
        uint8_t c = d[12 + i];
        query[len++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    memcpy(query + len, d + p->name_end, 4);
    len += 4;
    static const uint8_t opt_head[3] = {0, 0, TYPE_OPT};
    memcpy(query + len, opt_head, 3);
    put16(query + len + 3, (unsigned)m->payload);
    put32(query + len + 5, p->do_bit ? 0x8000 : 0);
    put16(query + len + 9, 0);
    len += 11;
    if (call_clock(m->clock, &p->started) < 0) {
        PyErr_WriteUnraisable((PyObject *)m);
        p->started = 0.0;
    }
    Server *srv = &m->servers[index];
    if (engine_open(e, &srv->addr, srv->len, p) < 0 || send(p->fd, query, (size_t)len, 0) < 0) {
        /* The Python transport raises OSError here: the attempt fails. */
        engine_unlink(e, p);
        if (++p->attempt >= m->attempts) {
            p->server++;
            p->attempt = 0;
        }
        start_attempt(p);
        return;
    }
    e->sent++;
    p->deadline = monotonic() + m->timeout;
    engine_link(e, p);
    engine_arm(e);
}

/* What the upstream handler's matches() accepts: our ID, QR, one question, ours. */
static int
reply_matches(Pending *p, const uint8_t *r, Py_ssize_t n)
{
    if (n < 12 || be16(r) != p->qid || !(r[2] & QR) || r[4] != 0 || r[5] != 1)
        return 0;
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(p->query);
    /* Our question: the query's name lowercased (question_equal folds case anyway),
     * its QTYPE and QCLASS. */
    return question_equal(r, n, d + 12, p->name_end + 4 - 12);
}

static PyObject *
address_text(const uint8_t *a, int len)
{
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(len == 4 ? AF_INET : AF_INET6, a, text, sizeof text) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    return PyUnicode_FromString(text);
}

/* policy.<method>(subject, jurisdiction[, wall()]): the verdict, or NULL on error. */
static PyObject *
verdict_of(MissPath *m, PyObject *policy, PyObject *method, PyObject *subject,
           PyObject *jurisdiction)
{
    if (m->wall == NULL) {
        PyObject *args[] = {policy, subject, jurisdiction};
        return PyObject_VectorcallMethod(method, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    PyObject *now = PyObject_CallNoArgs(m->wall);
    if (now == NULL)
        return NULL;
    PyObject *args[] = {policy, subject, jurisdiction, now};
    PyObject *verdict =
        PyObject_VectorcallMethod(method, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(now);
    return verdict;
}

/* response_policy.screen for an answer without CNAMEs: 1 when an address is blocked,
 * 0 when none is, -1 on error. */
static int
address_blocked(MissPath *m, Pending *p, const uint8_t *body, Scan *s)
{
    if (s->n_addr == 0)
        return 0;
    PyObject *policy = PyObject_GetAttr(m->policy, s_current);
    if (policy == NULL)
        return -1;
    int blocked = 0;
    for (int i = 0; i < s->n_addr && !blocked; i++) {
        PyObject *addr = address_text(body + s->addr_off[i], s->addr_len[i]);
        if (addr == NULL) {
            blocked = -1;
            break;
        }
        PyObject *verdict = verdict_of(m, policy, s_match_ip, addr, p->jurisdiction);
        Py_DECREF(addr);
        if (verdict == NULL) {
            blocked = -1;
            break;
        }
        if (verdict != m->allowed) {
            PyObject *b = PyObject_GetAttr(verdict, s_blocked);
            blocked = b == NULL ? -1 : PyObject_IsTrue(b);
            Py_XDECREF(b);
        }
        Py_DECREF(verdict);
    }
    Py_DECREF(policy);
    return blocked;
}

/* cache._pack + cache.records.put (and the block under the key dropped). */
static int
store(MissPath *m, Pending *p, const uint8_t *body, Py_ssize_t n, Scan *s, long lifetime)
{
    if (lifetime < 0)
        return 0;
    if (lifetime < m->cache_min_ttl)
        lifetime = m->cache_min_ttl;
    if (lifetime > m->cache_max_ttl)
        lifetime = m->cache_max_ttl;
    if (lifetime <= 0)
        return 0;
    double now;
    if (call_clock(m->clock, &now) < 0)
        return -1;
    Py_ssize_t qlen = p->name_end + 4 - 12, qend = 12 + qlen;
    /* _HEADER "<dIIHHH": expires, stored second, generation, OPT start/end, TTLs. */
    Py_ssize_t size = 22 + 6 * (Py_ssize_t)s->n_ttl + 12 + (n - qend);
    PyObject *record = PyBytes_FromStringAndSize(NULL, size);
    if (record == NULL)
        return -1;
    uint8_t *r = (uint8_t *)PyBytes_AS_STRING(record);
    double expires = now + (double)lifetime;
    memcpy(r, &expires, 8); /* little-endian hosts only: see the module's init */
    uint32_t stored = (uint32_t)(long long)now, generation = (uint32_t)p->generation;
    uint16_t opt_start = s->opt_start >= 0 ? (uint16_t)s->opt_start : 0;
    uint16_t opt_end = s->opt_start >= 0 ? (uint16_t)s->opt_end : 0;
    uint16_t count = (uint16_t)s->n_ttl;
    memcpy(r + 8, &stored, 4);
    memcpy(r + 12, &generation, 4);
    memcpy(r + 16, &opt_start, 2);
    memcpy(r + 18, &opt_end, 2);
    memcpy(r + 20, &count, 2);
    uint8_t *at = r + 22;
    for (int i = 0; i < s->n_ttl; i++, at += 2)
        memcpy(at, &s->ttl_off[i], 2);
    for (int i = 0; i < s->n_ttl; i++, at += 4) {
        uint32_t ttl = be32(body + s->ttl_off[i]);
        if (ttl > 0x7FFFFFFF)
            ttl = 0;
        memcpy(at, &ttl, 4);
    }
    memcpy(at, body, 12);
    memcpy(at + 12, body + qend, (size_t)(n - qend));
    /* A key is in one store or the other, never both. */
    int has = PyDict_Contains(m->blocks, p->key);
    if (has < 0 || (has && PyObject_DelItem(m->blocks, p->key) < 0)) {
        Py_DECREF(record);
        return -1;
    }
    PyObject *args[] = {m->records, p->key, record};
    PyObject *res =
        PyObject_VectorcallMethod(s_put, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(record);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* counts[(qtype, rcode, "allow")] += 1 */
static int
count_reply(MissPath *m, int qtype, int rcode)
{
    PyObject *key = Py_BuildValue("(iiO)", qtype, rcode, s_allow);
    if (key == NULL)
        return -1;
    PyObject *old = PyDict_GetItemWithError(m->counts, key);
    int rc = -1;
    if (old != NULL || !PyErr_Occurred()) {
        PyObject *new = old == NULL ? PyLong_FromLong(1) : PyNumber_Add(old, one);
        if (new != NULL) {
            rc = PyDict_SetItem(m->counts, key, new);
            Py_DECREF(new);
        }
    }
    Py_DECREF(key);
    return rc;
}

/* The query log's record of an answer sent from here (handlers.querylog records what
 * the chain answers; this is the same record for what the chain would have answered:
 * the header and question after the ID, the rcode sent, and the time since taken). */
static void
record_answer(MissPath *m, Pending *p, const uint8_t *d, Py_ssize_t qend, int rcode)
{
    PyObject *after_id = PyBytes_FromStringAndSize((const char *)d + 2, qend - 2);
    PyObject *code = PyLong_FromLong(rcode);
    PyObject *arrived = PyFloat_FromDouble(p->arrived);
    PyObject *res = NULL;
    if (after_id && code && arrived) {
        PyObject *args[] = {p->host, after_id, code, p->jurisdiction, arrived};
        res = PyObject_Vectorcall(m->record, args, sizeof args / sizeof *args, NULL);
    }
    if (res == NULL)
        PyErr_WriteUnraisable(m->record); /* the reply went out whatever its record */
    Py_XDECREF(res);
    Py_XDECREF(after_id);
    Py_XDECREF(code);
    Py_XDECREF(arrived);
}

/* A usable reply (not truncated, no CNAME, rcode not one to fail over on): finish it
 * as Upstream.finish, screen, store, render and send it; or hand it to Python. */
static void
complete(Pending *p, const uint8_t *reply, Py_ssize_t n, Scan *s)
{
    MissPath *m = p->path;
    Engine *e = m->engine;
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(p->query);
    Py_ssize_t qend = p->name_end + 4;
    /* the body: our flags, the question as asked (lowercase), the reply's records */
    uint8_t *body = PyMem_Malloc((size_t)n * 2 + 64);
    if (body == NULL) {
        PyErr_NoMemory();
        goto python;
    }
    uint8_t *tmp = body + n + 32;
    memcpy(body, reply, 2);
    body[2] = QR | (d[2] & RD);
    body[3] = RA | (reply[3] & 0x0F) | (d[3] & CD) |
              ((p->do_bit || (d[3] & AD)) ? (reply[3] & AD) : 0);
    memcpy(body + 4, reply + 4, 8);
    for (Py_ssize_t i = 12; i < p->name_end; i++) {
        uint8_t c = d[i];
        body[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    memcpy(body + p->name_end, d + p->name_end, 4);
    memcpy(body + qend, reply + qend, (size_t)(n - qend));
    Py_ssize_t len = n;
    if (m->minimal) {
        Py_ssize_t k = minimal_sections(body, len, p->qtype, tmp);
        if (k == -2)
            goto python_free;
        if (k >= 0) {
            memcpy(body, tmp, (size_t)k);
            len = k;
            if (scan_reply(body, len, s) != 0)
                goto python_free;
        }
    }
    if (s->opt_start >= 0) {
        if (p->edns)
            put16(body + s->opt_start + 3, OUR_UDP_PAYLOAD);
        else if (s->opt_end == len) {
            put16(body + 10, (unsigned)(be16(body + 10) - 1));
            len = s->opt_start;
        }
        else
            goto python_free; /* the OPT is not last: Python re-renders the message */
    }
    for (int i = 0; i < s->n_ttl; i++) {
        uint32_t ttl = be32(body + s->ttl_off[i]), t = ttl > 0x7FFFFFFF ? 0 : ttl;
        if ((long)t < m->min_ttl)
            t = (uint32_t)m->min_ttl;
        else if ((long)t > m->max_ttl)
            t = (uint32_t)m->max_ttl;
        if (t != ttl)
            put32(body + s->ttl_off[i], t);
    }
    long lifetime = -1; /* Upstream.lifetime */
    if (s->rcode == 0 && s->ancount > 0)
        lifetime = s->has_min_all ? (long)s->min_all : -1;
    else if (s->rcode == 3 || s->rcode == 0) {
        if (s->has_soa)
            lifetime = (long)s->soa_ttl < m->negative_ttl ? (long)s->soa_ttl : m->negative_ttl;
    }
    int blocked = address_blocked(m, p, body, s);
    if (blocked != 0) {
        if (blocked < 0)
            PyErr_WriteUnraisable((PyObject *)m);
        goto python_free;
    }
    /* Past here nothing is handed off: the upstream's part ends as the handler's does. */
    double now;
    if (call_clock(m->clock, &now) == 0) {
        PyObject *elapsed = PyFloat_FromDouble(now - p->started);
        PyObject *res = elapsed == NULL ? NULL : PyObject_CallOneArg(m->observe, elapsed);
        Py_XDECREF(elapsed);
        Py_XDECREF(res);
    }
    if (PyErr_Occurred() || bump(m->metrics, s_inflight, -1) < 0 ||
        store(m, p, body, len, s, lifetime) < 0)
        PyErr_WriteUnraisable((PyObject *)m);
    /* Responder.render: the client's ID and question, our flags and records. */
    uint8_t *out = tmp;
    memcpy(out, d, 2);
    memcpy(out + 2, body + 2, 10);
    memcpy(out + 12, d + 12, (size_t)(qend - 12));
    memcpy(out + qend, body + qend, (size_t)(len - qend));
    Py_ssize_t out_len = len;
    int limit = p->edns ? (p->payload < OUR_UDP_PAYLOAD ? p->payload : OUR_UDP_PAYLOAD) : MIN_UDP;
    if (out_len > limit) {
        /* wire.truncated_reply: header and question, TC set, our OPT for EDNS clients */
        out[2] |= TC;
        put16(out + 4, 1);
        put16(out + 6, 0);
        put16(out + 8, 0);
        put16(out + 10, p->edns ? 1 : 0);
        out_len = qend;
        if (p->edns) {
            static const uint8_t head[3] = {0, 0, TYPE_OPT};
            memcpy(out + out_len, head, 3);
            put16(out + out_len + 3, OUR_UDP_PAYLOAD);
            put32(out + out_len + 5, p->do_bit ? 0x8000 : 0);
            put16(out + out_len + 9, 0);
            out_len += 11;
        }
    }
    if (count_reply(m, p->qtype, body[3] & 0x0F) < 0)
        PyErr_WriteUnraisable((PyObject *)m);
    engine_reply(e, p, out, out_len);
    if (m->record != NULL)
        record_answer(m, p, d, qend, out[3] & 0x0F);
    m->completed++;
    PyMem_Free(body);
    engine_unlink(e, p);
    pending_free(e, p);
    return;
python_free:
    PyMem_Free(body);
python:
    if (PyErr_Occurred())
        PyErr_WriteUnraisable((PyObject *)m);
    hand_off(p, reply, n);
}

/* The UDP reply of the current attempt (it passed reply_matches). */
static void
received(Pending *p, const uint8_t *reply, Py_ssize_t n)
{
    MissPath *m = p->path;
    engine_unlink(m->engine, p); /* the attempt is over: its socket goes */
    Scan s;
    int rc = scan_reply(reply, n, &s);
    if (rc == -1) {
        attempt_failed(p); /* DNSWireError: the handler tries again */
        return;
    }
    if (rc == -2 || s.truncated || s.n_cnames) {
        hand_off(p, reply, n); /* TCP retry, CNAME checks, huge replies: in Python */
        return;
    }
    int r = s.rcode;
    if (r == 2 || r == 5 || r == 4 || r == 1) {
        /* SERVFAIL, REFUSED, NOTIMP, FORMERR: this server cannot help; its EDEs are kept
         * for the SERVFAIL we may have to send (RFC 8914). */
        double now;
        if (call_clock(m->clock, &now) == 0) {
            PyObject *elapsed = PyFloat_FromDouble(now - p->started);
            PyObject *res = elapsed == NULL ? NULL : PyObject_CallOneArg(m->observe, elapsed);
            Py_XDECREF(elapsed);
            Py_XDECREF(res);
        }
        if (p->failures == NULL)
            p->failures = PyList_New(0);
        if (p->failures != NULL && s.opt_start >= 0) {
            Py_ssize_t off = s.opt_start + 11;
            while (off + 4 <= s.opt_end) {
                int code = be16(reply + off), length = be16(reply + off + 2);
                Py_ssize_t end = off + 4 + length;
                if (end > s.opt_end)
                    break;
                if (code == 15 && length >= 2) {
                    PyObject *opt =
                        PyBytes_FromStringAndSize((const char *)reply + off, end - off);
                    if (opt == NULL || PyList_Append(p->failures, opt) < 0)
                        PyErr_WriteUnraisable((PyObject *)m);
                    Py_XDECREF(opt);
                }
                off = end;
            }
        }
        if (PyErr_Occurred())
            PyErr_WriteUnraisable((PyObject *)m);
        p->server++;
        p->attempt = 0;
        start_attempt(p);
        return;
    }
    complete(p, reply, n, &s);
}

static void
readable(Engine *e, Pending *p)
{
    for (;;) {
        ssize_t k = recv(p->fd, e->rx, RX_SIZE, MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            attempt_failed(p); /* e.g. ICMP port unreachable: the server is down */
            return;
        }
        if (reply_matches(p, e->rx, k)) {
            received(p, e->rx, k);
            return;
        }
        /* anything else is ignored; the attempt keeps waiting */
    }
}

static void
expire(Engine *e)
{
    double now = monotonic();
    while (e->head != NULL && e->head->deadline <= now && !e->close_requested)
        attempt_failed(e->head);
}

static PyObject *
Engine_poll(Engine *self, PyObject *Py_UNUSED(ignored))
{
    if (self->epfd < 0)
        Py_RETURN_NONE;
    self->in_poll++;
    struct epoll_event ev[EVENTS];
    for (;;) {
        int k = epoll_wait(self->epfd, ev, EVENTS, 0);
        if (k <= 0)
            break;
        for (int i = 0; i < k && !self->close_requested; i++) {
            if (ev[i].data.ptr == self) {
                uint64_t ticks;
                while (read(self->tfd, &ticks, sizeof ticks) > 0)
                    ;
                self->armed = 0.0;
            }
            else
                readable(self, (Pending *)ev[i].data.ptr);
        }
        if (k < EVENTS || self->close_requested)
            break;
    }
    if (!self->close_requested)
        expire(self);
    engine_arm(self);
    self->in_poll--;
    if (self->close_requested && !self->in_poll)
        engine_close(self);
    Py_RETURN_NONE;
}

static PyObject *
Engine_close(Engine *self, PyObject *Py_UNUSED(ignored))
{
    if (self->in_poll)
        self->close_requested = 1;
    else
        engine_close(self);
    Py_RETURN_NONE;
}

static PyObject *
Engine_fileno(Engine *self, PyObject *Py_UNUSED(ignored))
{
    if (self->epfd < 0) {
        PyErr_SetString(PyExc_ValueError, "the engine is closed");
        return NULL;
    }
    return PyLong_FromLong(self->epfd);
}

static PyObject *
Engine_listen(Engine *self, PyObject *arg)
{
    int fd;
    if (as_int(arg, &fd) < 0)
        return NULL;
    if (!engine_is_listener(self, fd)) {
        if (self->nlisteners == self->caplisteners) {
            int cap = self->caplisteners ? self->caplisteners * 2 : 8;
            int *grown = PyMem_Realloc(self->listeners, (size_t)cap * sizeof(int));
            if (grown == NULL)
                return PyErr_NoMemory();
            self->listeners = grown;
            self->caplisteners = cap;
        }
        self->listeners[self->nlisteners++] = fd;
    }
    Py_RETURN_NONE;
}

static PyObject *
Engine_forget(Engine *self, PyObject *arg)
{
    int fd;
    if (as_int(arg, &fd) < 0)
        return NULL;
    for (int i = 0; i < self->nlisteners; i++)
        if (self->listeners[i] == fd) {
            self->listeners[i] = self->listeners[--self->nlisteners];
            break;
        }
    Py_RETURN_NONE;
}

static PyObject *
Engine_send(Engine *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "send(listen_fd, sockaddr, data)");
        return NULL;
    }
    int fd;
    if (as_int(args[0], &fd) < 0)
        return NULL;
    Py_ssize_t alen = PyBytes_GET_SIZE(args[1]);
    if (alen <= 0 || alen > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_ValueError, "bad sockaddr");
        return NULL;
    }
    if (!engine_is_listener(self, fd))
        Py_RETURN_FALSE;
    struct sockaddr_storage to;
    memcpy(&to, PyBytes_AS_STRING(args[1]), (size_t)alen);
    ssize_t k = sendto(fd, PyBytes_AS_STRING(args[2]), (size_t)PyBytes_GET_SIZE(args[2]),
                       MSG_DONTWAIT, (struct sockaddr *)&to, (socklen_t)alen);
    return PyBool_FromLong(k >= 0);
}

static PyObject *
Engine_get_pending(Engine *self, void *closure)
{
    return PyLong_FromSsize_t(self->count);
}

static PyObject *
Engine_get_port_range(Engine *self, void *closure)
{
    return Py_BuildValue("(II)", self->lo, self->hi);
}

static PyObject *
Engine_get_sent(Engine *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->sent);
}

static PyObject *
Engine_get_fallback_binds(Engine *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->fallback_binds);
}

static PyMethodDef Engine_methods[] = {
    {"fileno", (PyCFunction)Engine_fileno, METH_NOARGS,
     "The descriptor the event loop watches (an epoll set of every upstream socket)."},
    {"poll", (PyCFunction)Engine_poll, METH_NOARGS,
     "Read every upstream reply that arrived and expire the attempts that timed out."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS,
     "Close every socket; queries in flight get no reply."},
    {"listen", (PyCFunction)Engine_listen, METH_O,
     "listen(fd): replies may be sent from this listening UDP socket."},
    {"forget", (PyCFunction)Engine_forget, METH_O,
     "forget(fd): the listener is closing; its clients' replies are dropped."},
    {"send", (PyCFunction)(void (*)(void))Engine_send, METH_FASTCALL,
     "send(listen_fd, sockaddr, data) -> bool: a reply from a listener still open."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"pending", (getter)Engine_get_pending, NULL, "queries in flight", NULL},
    {"port_range", (getter)Engine_get_port_range, NULL,
     "(low, high): the ephemeral ports source ports are drawn from", NULL},
    {"sent", (getter)Engine_get_sent, NULL, "upstream queries sent", NULL},
    {"fallback_binds", (getter)Engine_get_fallback_binds, NULL,
     "sockets whose random ports were all taken (the kernel chose one)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.dnsserver._forward.Engine",
    .tp_doc = PyDoc_STR("Engine()\n--\n\nThe upstream UDP sockets of the fused miss path: "
                        "a fresh random port and ID per attempt."),
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

/* -- MissPath: the query side --------------------------------------------------------- */

/* Parse what the path takes (see the module comment). 1 taken into p's fields (and the
 * lowercase name text into qname), 0 declined. */
static int
parse(MissPath *m, const uint8_t *d, Py_ssize_t n, Pending *p, char *qname, Py_ssize_t *qname_len)
{
    if (n < 12 || (d[2] & 0xF8) || d[4] != 0 || d[5] != 1 || !(d[2] & RD))
        return 0;
    Py_ssize_t off = 12, text = 0;
    for (;;) {
        if (off >= n)
            return 0;
        uint8_t len = d[off];
        if (len == 0)
            break;
        /* Python reads past the end (FORMERR) or finds the name over 255 octets */
        if (len > 63 || off + 1 + len >= n || off + 1 + len > 266)
            return 0;
        if (text)
            qname[text++] = '.';
        for (Py_ssize_t i = off + 1; i <= off + len; i++) {
            uint8_t c = d[i];
            if (c >= 'A' && c <= 'Z')
                c += 32;
            else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
                return 0; /* escapes: Python spells the name */
            qname[text++] = (char)c;
        }
        off += len + 1;
    }
    if (off == 12 || off > 266)
        return 0; /* the root (Python), or longer than 255 octets (FORMERR) */
    Py_ssize_t name_end = off + 1, qend = off + 5;
    if (qend > n)
        return 0;
    int qtype = be16(d + name_end), qclass = be16(d + name_end + 2);
    if (qclass != CLASS_IN || qtype == TYPE_OPT || (qtype >= 128 && qtype <= 255))
        return 0; /* special_use and minimal_any answer these */
    static const uint8_t none[6] = {0}, one_ar[6] = {0, 0, 0, 0, 0, 1};
    int edns = 0, do_bit = 0, payload = MIN_UDP;
    if (memcmp(d + 6, none, 6) == 0) {
        if (qend != n)
            return 0;
    }
    else if (memcmp(d + 6, one_ar, 6) == 0 && qend + 11 <= n && d[qend] == 0 &&
             d[qend + 1] == 0 && d[qend + 2] == TYPE_OPT) {
        if (qend + 11 + be16(d + qend + 9) != n || d[qend + 6] != 0)
            return 0; /* a bad OPT length (FORMERR) or EDNS version (BADVERS) */
        edns = 1;
        payload = be16(d + qend + 3);
        if (payload < MIN_UDP)
            payload = MIN_UDP;
        do_bit = (d[qend + 7] & 0x80) != 0;
    }
    else
        return 0;
    /* special_use: a name ending like one of its zones is its to judge */
    Py_ssize_t ne = PyTuple_GET_SIZE(m->endings);
    for (Py_ssize_t i = 0; i < ne; i++) {
        Py_ssize_t elen;
        const char *ending = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(m->endings, i), &elen);
        if (ending == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (elen <= text && memcmp(qname + text - elen, ending, (size_t)elen) == 0)
            return 0;
    }
    *qname_len = text;
    p->name_end = (int)name_end;
    p->qtype = qtype;
    p->edns = edns;
    p->do_bit = do_bit;
    p->payload = payload;
    return 1;
}

/* 1 when the policy blocks qname for the jurisdiction, 0 when not, -1 on error. */
static int
name_blocked(MissPath *m, const char *qname, Py_ssize_t len, PyObject *jurisdiction)
{
    PyObject *policy = PyObject_GetAttr(m->policy, s_current);
    if (policy == NULL)
        return -1;
    PyObject *name = PyUnicode_FromStringAndSize(qname, len);
    if (name == NULL) {
        Py_DECREF(policy);
        return -1;
    }
    PyObject *verdict = verdict_of(m, policy, s_match, name, jurisdiction);
    Py_DECREF(name);
    Py_DECREF(policy);
    if (verdict == NULL)
        return -1;
    int blocked = 0;
    if (verdict != m->allowed) {
        PyObject *b = PyObject_GetAttr(verdict, s_blocked);
        blocked = b == NULL ? -1 : PyObject_IsTrue(b);
        Py_XDECREF(b);
    }
    Py_DECREF(verdict);
    return blocked;
}

static PyObject *
MissPath_call(MissPath *m, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 4 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "MissPath takes (query, host, sockaddr, listen_fd)");
        return NULL;
    }
    PyObject *query = args[0], *host = args[1], *sockaddr = args[2];
    if (!PyBytes_CheckExact(query) || !PyUnicode_CheckExact(host) || !PyBytes_Check(sockaddr))
        Py_RETURN_NONE;
    Engine *e = m->engine;
    Py_ssize_t alen = PyBytes_GET_SIZE(sockaddr);
    if (e->epfd < 0 || alen <= 0 || alen > (Py_ssize_t)sizeof(struct sockaddr_storage))
        Py_RETURN_NONE;
    int listen_fd;
    if (as_int(args[3], &listen_fd) < 0)
        return NULL;
    /* acl, ratelimit, jurisdiction: as the fast path */
    PyObject *admitted = PyDict_GetItemWithError(m->acl_memo, host);
    if (admitted == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    int ok = PyObject_IsTrue(admitted);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *bucket;
    double tokens_left = 0.0;
    ok = limiter_take(&m->lim, host, &bucket, &tokens_left);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *code = PyDict_GetItemWithError(m->jurisdiction, host);
    PyObject *key = NULL, *token = NULL, *route = NULL;
    Pending *p = NULL;
    if (code == NULL && PyErr_Occurred())
        goto error;
    if (code == NULL || !PyUnicode_CheckExact(code)) {
        code = NULL;
        goto decline;
    }
    Py_INCREF(code);
    p = PyMem_Calloc(1, sizeof(Pending));
    if (p == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    p->fd = -1;
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(query);
    Py_ssize_t n = PyBytes_GET_SIZE(query);
    char qname[260];
    Py_ssize_t qname_len;
    if (!parse(m, d, n, p, qname, &qname_len))
        goto decline;
    /* the cache: the key, and nothing stored under it (else the chain serves it) */
    double now;
    if (call_clock(m->clock, &now) < 0)
        goto error;
    PyObject *change_at = PyObject_GetAttr(m->cache, s_change_at);
    if (change_at == NULL)
        goto error;
    double cross = PyFloat_AsDouble(change_at);
    Py_DECREF(change_at);
    if (cross == -1.0 && PyErr_Occurred())
        goto error;
    if (now >= cross)
        goto decline; /* an order's date passed: the chain's cache crosses it */
    Py_ssize_t jlen;
    const char *j = PyUnicode_AsUTF8AndSize(code, &jlen);
    if (j == NULL)
        goto error;
    if (jlen > 255)
        goto decline;
    int bits = (d[3] & (AD | CD)) | (p->edns ? 0x200 : 0) | (p->do_bit ? 0x100 : 0);
    Py_ssize_t qlen = p->name_end + 4 - 12;
    key = PyBytes_FromStringAndSize(NULL, 1 + jlen + 2 + qlen);
    if (key == NULL)
        goto error;
    uint8_t *k = (uint8_t *)PyBytes_AS_STRING(key);
    k[0] = (uint8_t)jlen;
    memcpy(k + 1, j, (size_t)jlen);
    put16(k + 1 + jlen, (unsigned)bits);
    uint8_t *kq = k + 3 + jlen;
    for (Py_ssize_t i = 0; i < qlen - 4; i++) {
        uint8_t c = d[12 + i];
        kq[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
    memcpy(kq + qlen - 4, d + p->name_end, 4);
    int has = PyDict_Contains(m->blocks, key);
    if (has == 0)
        has = PySequence_Contains(m->records, key);
    if (has < 0)
        goto error;
    if (has)
        goto decline;
    /* the upstream handler: a slot free */
    PyObject *inflight = PyObject_GetAttr(m->metrics, s_inflight);
    if (inflight == NULL)
        goto error;
    long busy = PyLong_AsLong(inflight);
    Py_DECREF(inflight);
    if (busy == -1 && PyErr_Occurred())
        goto error;
    if (busy >= m->max_inflight)
        goto decline;
    /* query_policy: not blocked */
    int blocked = name_blocked(m, qname, qname_len, code);
    if (blocked < 0)
        goto error;
    if (blocked)
        goto decline;
    PyObject *generation = PyObject_GetAttr(m->cache, s_generation);
    if (generation == NULL)
        goto error;
    p->generation = PyLong_AsUnsignedLongMask(generation);
    Py_DECREF(generation);
    if (PyErr_Occurred())
        goto error;
    token = PyObject_GetAttr(m->policy, s_token);
    if (token == NULL)
        goto error;
    route = PyDict_GetItemWithError(m->routes, code);
    if (route == NULL && PyErr_Occurred())
        goto error;
    if (route == NULL || (PyTuple_CheckExact(route) && PyTuple_GET_SIZE(route) == 0))
        route = m->default_route;
    if (!PyTuple_CheckExact(route)) {
        /* None: a route with an encrypted (tls://, https://) server, which only the
         * Python upstream speaks; never sent out here as plain UDP. */
        route = NULL;
        goto decline;
    }
    Py_INCREF(route);
    /* Taken: from here every side effect is the chain's own. */
    if (bump(m->metrics, s_cache_misses, 1) < 0 || bump(m->metrics, s_inflight, 1) < 0)
        goto error;
    Py_XDECREF(bucket); /* the token stays spent */
    p->path = (MissPath *)Py_NewRef((PyObject *)m);
    p->query = Py_NewRef(query);
    p->host = Py_NewRef(host);
    p->jurisdiction = code;
    p->key = key;
    p->token = token;
    p->route = route;
    p->listen_fd = listen_fd;
    if (m->record != NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* time.perf_counter's clock on Linux */
        p->arrived = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    memcpy(&p->client, PyBytes_AS_STRING(sockaddr), (size_t)alen);
    p->client_len = (socklen_t)alen;
    e->count++;
    m->taken++;
    start_attempt(p);
    Py_RETURN_TRUE;
decline:
    Py_XDECREF(code);
    Py_XDECREF(key);
    Py_XDECREF(token);
    Py_XDECREF(route);
    PyMem_Free(p);
    if (limiter_give_back(bucket, tokens_left) < 0)
        return NULL;
    Py_RETURN_NONE;
error:
    limiter_give_back_keeping_error(bucket, tokens_left);
    Py_XDECREF(code);
    Py_XDECREF(key);
    Py_XDECREF(token);
    Py_XDECREF(route);
    PyMem_Free(p);
    return NULL;
}

static PyObject *
MissPath_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return MissPath_call((MissPath *)callable, args, nargsf, kwnames);
}

static PyObject *
MissPath_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    MissPath *self = (MissPath *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = MissPath_vectorcall;
    return (PyObject *)self;
}

/* A server "host" / (host, port) into a sockaddr. */
static int
server_addr(PyObject *pair, Server *out)
{
    const char *host;
    int port;
    if (!PyTuple_Check(pair)) { /* else PyArg_ParseTuple raises SystemError */
        PyErr_Format(PyExc_TypeError, "an upstream must be (host, port), not %R", pair);
        return -1;
    }
    if (!PyArg_ParseTuple(pair, "si", &host, &port))
        return -1;
    memset(out, 0, sizeof *out);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
    if (port <= 0 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "bad upstream port %d", port);
        return -1;
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        out->len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *a6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "upstream %s is not an IP address", host);
    return -1;
}

/* The index of server (a (host, port) pair) in m->servers, appending it if new. */
static PyObject *
route_of(MissPath *m, PyObject *servers, PyObject *seen)
{
    if (!PyTuple_Check(servers)) {
        PyErr_SetString(PyExc_TypeError, "servers must be a tuple of (host, port)");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(servers);
    PyObject *route = PyTuple_New(n);
    if (route == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(servers, i);
        PyObject *index = PyDict_GetItemWithError(seen, pair);
        if (index == NULL) {
            if (PyErr_Occurred())
                goto error;
            Server *grown = PyMem_Realloc(m->servers, (size_t)(m->nservers + 1) * sizeof(Server));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            m->servers = grown;
            if (server_addr(pair, &m->servers[m->nservers]) < 0)
                goto error;
            index = PyLong_FromSsize_t(m->nservers++);
            if (index == NULL || PyDict_SetItem(seen, pair, index) < 0) {
                Py_XDECREF(index);
                goto error;
            }
            Py_DECREF(index); /* the dict holds it */
        }
        PyTuple_SET_ITEM(route, i, Py_NewRef(index));
    }
    return route;
error:
    Py_DECREF(route);
    return NULL;
}

static int
MissPath_init(MissPath *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {
        "engine",   "acl_memo",  "exempt",        "prefixes",      "buckets",  "limiter_clock",
        "rate",     "burst",     "jurisdiction",  "endings",       "cache",    "clock",
        "records",  "blocks",    "cache_min_ttl", "cache_max_ttl", "policy",   "allowed",
        "metrics",  "counts",    "default",       "per_jurisdiction", "timeout", "attempts",
        "payload",  "minimal",   "negative_ttl",  "min_ttl",       "max_ttl",  "max_inflight",
        "handoff",  "record",    "wall",          NULL};
    PyObject *engine, *acl_memo, *exempt, *prefixes, *buckets, *limiter_clock, *jurisdiction,
        *endings, *cache, *clock, *records, *blocks, *policy, *allowed, *metrics, *counts,
        *def, *per, *handoff, *record = Py_None, *wall = Py_None;
    double rate, burst, timeout;
    long cache_min_ttl, cache_max_ttl, negative_ttl, min_ttl, max_ttl, max_inflight;
    int attempts, payload, minimal;
    if (self->engine != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "MissPath is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "O!O!OOOOddO!O!OOOO!llOOOO!OO!diipllllO|OO:MissPath", kwlist, &EngineType,
            &engine, &PyDict_Type, &acl_memo, &exempt, &prefixes, &buckets, &limiter_clock,
            &rate, &burst, &PyDict_Type, &jurisdiction, &PyTuple_Type, &endings, &cache, &clock,
            &records, &PyDict_Type, &blocks, &cache_min_ttl, &cache_max_ttl, &policy, &allowed,
            &metrics, &PyDict_Type, &counts, &def, &PyDict_Type, &per, &timeout,
            &attempts, &payload, &minimal, &negative_ttl, &min_ttl, &max_ttl, &max_inflight,
            &handoff, &record, &wall))
        return -1;
    if (exempt != Py_None &&
        (!PyAnySet_Check(exempt) || !PyDict_Check(prefixes) || !PyDict_Check(buckets) ||
         !PyCallable_Check(limiter_clock))) {
        PyErr_SetString(PyExc_TypeError,
                        "a rate limiter needs a set, two dicts and a clock (or exempt=None)");
        return -1;
    }
    if (!PyCallable_Check(clock) || !PyCallable_Check(handoff) ||
        (record != Py_None && !PyCallable_Check(record)) ||
        (wall != Py_None && !PyCallable_Check(wall))) {
        PyErr_SetString(PyExc_TypeError, "clock, handoff, record and wall must be callable");
        return -1;
    }
    if (def != Py_None && !PyTuple_Check(def)) {
        PyErr_SetString(PyExc_TypeError, "default must be a tuple of (host, port) or None");
        return -1;
    }
    if ((def != Py_None && PyTuple_GET_SIZE(def) == 0) || attempts < 1 || timeout <= 0 ||
        payload < 512 || payload > 65535) {
        PyErr_SetString(PyExc_ValueError,
                        "need upstream servers, attempts >= 1, a timeout and 512 <= payload");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(endings); i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(endings, i))) {
            PyErr_SetString(PyExc_TypeError, "endings must be strings");
            return -1;
        }
    PyObject *seen = PyDict_New();
    if (seen == NULL)
        return -1;
    PyObject *default_route = def == Py_None ? Py_NewRef(Py_None) : route_of(self, def, seen);
    PyObject *routes = PyDict_New();
    if (default_route == NULL || routes == NULL)
        goto fail;
    PyObject *code, *servers;
    Py_ssize_t pos = 0;
    while (PyDict_Next(per, &pos, &code, &servers)) {
        PyObject *route = servers == Py_None ? Py_NewRef(Py_None) : route_of(self, servers, seen);
        if (route == NULL || PyDict_SetItem(routes, code, route) < 0) {
            Py_XDECREF(route);
            goto fail;
        }
        Py_DECREF(route);
    }
    Py_DECREF(seen);
    self->observe = PyObject_GetAttrString(metrics, "observe_upstream");
    if (self->observe == NULL) {
        Py_DECREF(default_route);
        Py_DECREF(routes);
        return -1;
    }
#define SET(field) self->field = Py_NewRef(field)
    self->engine = (Engine *)Py_NewRef(engine);
    SET(acl_memo);
    self->lim.exempt = Py_NewRef(exempt);
    self->lim.prefixes = Py_NewRef(prefixes);
    self->lim.buckets = Py_NewRef(buckets);
    self->lim.clock = Py_NewRef(limiter_clock);
    self->lim.rate = rate;
    self->lim.burst = burst;
    SET(jurisdiction);
    SET(endings);
    SET(cache);
    SET(clock);
    SET(records);
    SET(blocks);
    SET(policy);
    SET(allowed);
    SET(metrics);
    SET(counts);
    SET(handoff);
#undef SET
    self->record = record == Py_None ? NULL : Py_NewRef(record);
    self->wall = wall == Py_None ? NULL : Py_NewRef(wall);
    self->default_route = default_route;
    self->routes = routes;
    self->cache_min_ttl = cache_min_ttl;
    self->cache_max_ttl = cache_max_ttl;
    self->timeout = timeout;
    self->attempts = attempts;
    self->payload = payload;
    self->minimal = minimal;
    self->negative_ttl = negative_ttl;
    self->min_ttl = min_ttl;
    self->max_ttl = max_ttl;
    self->max_inflight = max_inflight;
    return 0;
fail:
    Py_DECREF(seen);
    Py_XDECREF(default_route);
    Py_XDECREF(routes);
    return -1;
}

static int
MissPath_traverse(MissPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->engine);
    Py_VISIT(self->acl_memo);
    int vret = limiter_traverse(&self->lim, visit, arg);
    if (vret)
        return vret;
    Py_VISIT(self->jurisdiction);
    Py_VISIT(self->endings);
    Py_VISIT(self->cache);
    Py_VISIT(self->clock);
    Py_VISIT(self->records);
    Py_VISIT(self->blocks);
    Py_VISIT(self->policy);
    Py_VISIT(self->allowed);
    Py_VISIT(self->metrics);
    Py_VISIT(self->counts);
    Py_VISIT(self->observe);
    Py_VISIT(self->default_route);
    Py_VISIT(self->routes);
    Py_VISIT(self->handoff);
    Py_VISIT(self->record);
    Py_VISIT(self->wall);
    return 0;
}

static int
MissPath_clear(MissPath *self)
{
    Py_CLEAR(self->engine);
    Py_CLEAR(self->acl_memo);
    limiter_clear(&self->lim);
    Py_CLEAR(self->jurisdiction);
    Py_CLEAR(self->endings);
    Py_CLEAR(self->cache);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->records);
    Py_CLEAR(self->blocks);
    Py_CLEAR(self->policy);
    Py_CLEAR(self->allowed);
    Py_CLEAR(self->metrics);
    Py_CLEAR(self->counts);
    Py_CLEAR(self->observe);
    Py_CLEAR(self->default_route);
    Py_CLEAR(self->routes);
    Py_CLEAR(self->handoff);
    Py_CLEAR(self->record);
    Py_CLEAR(self->wall);
    return 0;
}

static void
MissPath_dealloc(MissPath *self)
{
    PyObject_GC_UnTrack(self);
    MissPath_clear(self);
    PyMem_Free(self->servers);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
MissPath_stats(MissPath *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{sKsKsK}", "taken", self->taken, "handed_off", self->handed_off,
                         "completed", self->completed);
}

static PyMethodDef MissPath_methods[] = {
    {"stats", (PyCFunction)MissPath_stats, METH_NOARGS,
     "{taken, handed_off, completed}: queries this path took, handed to Python, finished."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef MissPath_members[] = {
    {"engine", T_OBJECT, offsetof(MissPath, engine), READONLY, "the Engine it forwards with"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject MissPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.dnsserver._forward.MissPath",
    .tp_doc = PyDoc_STR("MissPath(**objects of the standard chain)\n--\n\n"
                        "miss(query, host, sockaddr, listen_fd) -> True (taken: the reply "
                        "follows) or None (the general chain answers). See the module."),
    .tp_basicsize = sizeof(MissPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(MissPath, vectorcall),
    .tp_new = MissPath_new,
    .tp_init = (initproc)MissPath_init,
    .tp_dealloc = (destructor)MissPath_dealloc,
    .tp_traverse = (traverseproc)MissPath_traverse,
    .tp_clear = (inquiry)MissPath_clear,
    .tp_call = PyVectorcall_Call,
    .tp_methods = MissPath_methods,
    .tp_members = MissPath_members,
};
#endif /* __linux__ */

static struct PyModuleDef forward_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clearwall.dnsserver._forward",
    .m_doc = PyDoc_STR("The standard chain's cache-miss path in C: Engine (upstream sockets) "
                       "and MissPath. Linux only."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__forward(void)
{
    PyObject *m = PyModule_Create(&forward_module);
    if (m == NULL)
        return NULL;
    int available = 0;
#ifdef __linux__
    /* The cache record header is packed little-endian ("<dIIHHH"); this module writes
     * it with memcpy, so only little-endian hosts use it (the Python path elsewhere). */
    uint16_t probe = 1;
    available = *(uint8_t *)&probe == 1;
#define INTERN(var, text)                                                                  \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                  \
        goto error;
    INTERN(s_generation, "_generation");
    INTERN(s_change_at, "_change_at");
    INTERN(s_current, "current");
    INTERN(s_token, "token");
    INTERN(s_match, "match");
    INTERN(s_match_ip, "match_ip");
    INTERN(s_blocked, "blocked");
    INTERN(s_inflight, "inflight");
    INTERN(s_cache_misses, "cache_misses");
    INTERN(s_put, "put");
    INTERN(s_allow, "allow");
#undef INTERN
    one = PyLong_FromLong(1);
    if (one == NULL)
        goto error;
    if (PyType_Ready(&EngineType) < 0 || PyType_Ready(&MissPathType) < 0 ||
        PyModule_AddType(m, &EngineType) < 0 || PyModule_AddType(m, &MissPathType) < 0)
        goto error;
#endif
    if (PyModule_AddIntConstant(m, "AVAILABLE", available) < 0)
        goto error;
    return m;
error:
    Py_DECREF(m);
    return NULL;
}
