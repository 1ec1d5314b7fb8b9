/* clearwall.dnsserver._fastpath: the UDP fast path of the standard chain, fused in C.
 *
 * Why this exists: a repeated hit or block is answered by the chain's fast path, composed
 * in Python from one small step per handler (handlers.compose_fast): responder -> acl ->
 * ratelimit -> jurisdiction -> cache. Five closures, a dozen dictionary operations and
 * two slices cost about 2.3 us per query on the benchmark machine, a third of the
 * server's CPU per query next to the kernel's share, and the dictionaries they read
 * (the cache's index of answers, the responder's kept renderings: about 450 bytes and
 * eight cache lines per name) crowd the CPU caches when several workers share a core
 * (bench/dns.py).
 *
 * ReplyTable keeps, per (jurisdiction, query after its ID), the reply after its ID with
 * what the fast path must check and count: until when it is fresh (the cache's clock),
 * the responder's count key and the deciding order. One C record per entry, in one
 * chained hash table; emptied at every policy swap and whenever it would outgrow its
 * bound, as the dictionaries it replaces were. The responder fills it with what it
 * renders from answers the cache serves again (handlers.fused).
 *
 * FusedPath does the steps of the Python composition on the handlers' own objects (the
 * ACL's and the jurisdiction handler's memos, the rate limiter's buckets, the metrics'
 * dictionaries) and the table: same order, same side effects (a rate limiter token taken
 * for a query the table cannot answer is given back). Whatever it cannot settle with a
 * lookup it declines with None, and the general chain answers.
 * tests/dnsserver/test_fast_path.py checks replies and counters against the chain and
 * against the Python composition.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include "structmember.h"
#include <stdint.h>
#include <string.h>

#include "_ratelimit.h"

#define MIN_BUCKETS 64
#define MAX_KEY 65535
#define MAX_TAIL 65535

/* -- ReplyTable ------------------------------------------------------------------------ */

typedef struct Entry {
    struct Entry *next; /* hash chain */
    Py_hash_t hash;
    double until;            /* fresh while the cache's clock reads less */
    PyObject *jurisdiction;  /* str, owned */
    PyObject *count;         /* the responder's count key, owned */
    PyObject *order;         /* the deciding order's id (int) or None, owned */
    uint16_t klen, tlen;
    char data[]; /* klen key bytes (the query after its ID), then tlen reply bytes */
} Entry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_entries;
    Py_ssize_t count;
    Entry **table;
    size_t mask;
} ReplyTable;

static void
entry_free(Entry *e)
{
    Py_DECREF(e->jurisdiction);
    Py_DECREF(e->count);
    Py_DECREF(e->order);
    PyMem_Free(e);
}

static void
table_clear(ReplyTable *self)
{
    if (self->table == NULL)
        return;
    for (size_t i = 0; i <= self->mask; i++) {
        Entry *e = self->table[i];
        self->table[i] = NULL;
        while (e != NULL) {
            Entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    self->count = 0;
}

static Py_hash_t
entry_hash(Py_hash_t key_hash, Py_hash_t jurisdiction_hash)
{
    Py_hash_t h = key_hash ^ (Py_hash_t)((Py_uhash_t)jurisdiction_hash * 1000003UL);
    return h == -1 ? -2 : h;
}

/* The entry for (jurisdiction, key), or NULL. Jurisdiction codes are compared by identity
 * first (the memos hand out the same objects), then by value. */
static Entry *
table_find(ReplyTable *self, Py_hash_t hash, PyObject *jurisdiction, const char *key,
           Py_ssize_t klen)
{
    for (Entry *e = self->table[(size_t)hash & self->mask]; e != NULL; e = e->next) {
        if (e->hash != hash || e->klen != klen || memcmp(e->data, key, (size_t)klen) != 0)
            continue;
        if (e->jurisdiction == jurisdiction ||
            PyUnicode_Compare(e->jurisdiction, jurisdiction) == 0)
            return e;
        PyErr_Clear();
    }
    return NULL;
}

static void
table_grow(ReplyTable *self)
{
    size_t buckets = (self->mask + 1) * 2;
    Entry **table = PyMem_Calloc(buckets, sizeof(Entry *));
    if (table == NULL)
        return; /* chains only get longer */
    for (size_t i = 0; i <= self->mask; i++) {
        Entry *e = self->table[i];
        while (e != NULL) {
            Entry *next = e->next;
            size_t b = (size_t)e->hash & (buckets - 1);
            e->next = table[b];
            table[b] = e;
            e = next;
        }
    }
    PyMem_Free(self->table);
    self->table = table;
    self->mask = buckets - 1;
}

static int
ReplyTable_init(ReplyTable *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_entries", NULL};
    Py_ssize_t max_entries;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:ReplyTable", kwlist, &max_entries))
        return -1;
    if (max_entries < 1) {
        PyErr_SetString(PyExc_ValueError, "max_entries must be at least 1");
        return -1;
    }
    table_clear(self);
    PyMem_Free(self->table);
    self->table = PyMem_Calloc(MIN_BUCKETS, sizeof(Entry *));
    if (self->table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->mask = MIN_BUCKETS - 1;
    self->max_entries = max_entries;
    self->count = 0;
    return 0;
}

static void
ReplyTable_dealloc(ReplyTable *self)
{
    table_clear(self);
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
ReplyTable_put(ReplyTable *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"jurisdiction", "key", "tail", "until", "count", "order", NULL};
    PyObject *jurisdiction, *key, *tail, *count, *order;
    double until;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "USSdOO:put", kwlist, &jurisdiction, &key,
                                     &tail, &until, &count, &order))
        return NULL;
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ReplyTable.__init__ was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(tail) ||
        !PyUnicode_CheckExact(jurisdiction)) {
        PyErr_SetString(PyExc_TypeError, "key and tail must be bytes, jurisdiction a str");
        return NULL;
    }
    Py_ssize_t klen = PyBytes_GET_SIZE(key), tlen = PyBytes_GET_SIZE(tail);
    if (klen > MAX_KEY || tlen > MAX_TAIL)
        Py_RETURN_FALSE; /* never a UDP reply; simply not kept */
    Py_hash_t key_hash = PyObject_Hash(key), j_hash = PyObject_Hash(jurisdiction);
    if (key_hash == -1 || j_hash == -1)
        return NULL;
    Py_hash_t hash = entry_hash(key_hash, j_hash);
    Entry **slot = &self->table[(size_t)hash & self->mask];
    for (; *slot != NULL; slot = &(*slot)->next) {
        Entry *e = *slot;
        if (e->hash == hash && e->klen == klen &&
            memcmp(e->data, PyBytes_AS_STRING(key), (size_t)klen) == 0 &&
            (e->jurisdiction == jurisdiction ||
             PyUnicode_Compare(e->jurisdiction, jurisdiction) == 0)) {
            *slot = e->next; /* replaced below */
            entry_free(e);
            self->count--;
            break;
        }
        if (PyErr_Occurred())
            PyErr_Clear();
    }
    if (self->count >= self->max_entries)
        table_clear(self); /* as the dictionaries it stands in for were */
    Entry *e = PyMem_Malloc(offsetof(Entry, data) + (size_t)klen + (size_t)tlen);
    if (e == NULL)
        return PyErr_NoMemory();
    e->hash = hash;
    e->until = until;
    e->jurisdiction = Py_NewRef(jurisdiction);
    e->count = Py_NewRef(count);
    e->order = Py_NewRef(order);
    e->klen = (uint16_t)klen;
    e->tlen = (uint16_t)tlen;
    memcpy(e->data, PyBytes_AS_STRING(key), (size_t)klen);
    memcpy(e->data + klen, PyBytes_AS_STRING(tail), (size_t)tlen);
    size_t b = (size_t)hash & self->mask;
    e->next = self->table[b];
    self->table[b] = e;
    self->count++;
    if ((size_t)self->count > self->mask + 1)
        table_grow(self);
    Py_RETURN_TRUE;
}

static PyObject *
ReplyTable_get(ReplyTable *self, PyObject *args)
{
    PyObject *jurisdiction, *key;
    if (!PyArg_ParseTuple(args, "US:get", &jurisdiction, &key))
        return NULL;
    if (self->table == NULL)
        Py_RETURN_NONE;
    Py_hash_t key_hash = PyObject_Hash(key), j_hash = PyObject_Hash(jurisdiction);
    if (key_hash == -1 || j_hash == -1)
        return NULL;
    Entry *e = table_find(self, entry_hash(key_hash, j_hash), jurisdiction,
                          PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    if (e == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(y#dOO)", e->data + e->klen, (Py_ssize_t)e->tlen, e->until,
                         e->count, e->order);
}

static PyObject *
ReplyTable_clear_method(ReplyTable *self, PyObject *Py_UNUSED(ignored))
{
    table_clear(self);
    Py_RETURN_NONE;
}

static Py_ssize_t
ReplyTable_len(ReplyTable *self)
{
    return self->count;
}

static PyMethodDef ReplyTable_methods[] = {
    {"put", (PyCFunction)(void (*)(void))ReplyTable_put, METH_VARARGS | METH_KEYWORDS,
     "put(jurisdiction, key, tail, until, count, order) -> bool\n\n"
     "Keep the reply after its ID for (jurisdiction, query after its ID), fresh until\n"
     "``until``; False when too long to keep. A full table is emptied first."},
    {"get", (PyCFunction)ReplyTable_get, METH_VARARGS,
     "get(jurisdiction, key) -> (tail, until, count, order) or None (for tests)."},
    {"clear", (PyCFunction)ReplyTable_clear_method, METH_NOARGS, "Drop every entry."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods ReplyTable_as_sequence = {
    .sq_length = (lenfunc)ReplyTable_len,
};

static PyTypeObject ReplyTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.dnsserver._fastpath.ReplyTable",
    .tp_doc = PyDoc_STR("ReplyTable(max_entries)\n--\n\n"
                        "Rendered replies the fast path serves, one C record each."),
    .tp_basicsize = sizeof(ReplyTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ReplyTable_init,
    .tp_dealloc = (destructor)ReplyTable_dealloc,
    .tp_methods = ReplyTable_methods,
    .tp_as_sequence = &ReplyTable_as_sequence,
};

/* -- FusedPath ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *acl_memo;     /* dict: host -> truthy when the ACL admits it */
    Limiter lim;            /* the rate limiter's objects (exempt None: no limiter) */
    PyObject *jurisdiction; /* dict: host -> jurisdiction code */
    ReplyTable *table;
    PyObject *clock;        /* the cache's clock */
    PyObject *metrics;      /* DNSMetrics: .cache_hits */
    PyObject *counts;       /* dict: count key -> queries */
    PyObject *blocks;       /* dict: order id -> blocks */
} FusedPath;

static PyObject *str_cache_hits, *one;

static int
FusedPath_traverse(FusedPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->acl_memo);
    int vret = limiter_traverse(&self->lim, visit, arg);
    if (vret)
        return vret;
    Py_VISIT(self->jurisdiction);
    Py_VISIT(self->table);
    Py_VISIT(self->clock);
    Py_VISIT(self->metrics);
    Py_VISIT(self->counts);
    Py_VISIT(self->blocks);
    return 0;
}

static int
FusedPath_clear(FusedPath *self)
{
    Py_CLEAR(self->acl_memo);
    limiter_clear(&self->lim);
    Py_CLEAR(self->jurisdiction);
    Py_CLEAR(self->table);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->metrics);
    Py_CLEAR(self->counts);
    Py_CLEAR(self->blocks);
    return 0;
}

static void
FusedPath_dealloc(FusedPath *self)
{
    PyObject_GC_UnTrack(self);
    FusedPath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
FusedPath_init(FusedPath *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"acl_memo", "exempt",       "prefixes", "buckets", "limiter_clock",
                             "rate",     "burst",        "jurisdiction", "table", "clock",
                             "metrics",  "counts",       "blocks",   NULL};
    PyObject *acl_memo, *exempt, *prefixes, *buckets, *limiter_clock, *jurisdiction, *table,
        *clock, *metrics, *counts, *blocks;
    double rate, burst;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "O!OOOOddO!O!OOO!O!:FusedPath", kwlist, &PyDict_Type, &acl_memo,
            &exempt, &prefixes, &buckets, &limiter_clock, &rate, &burst, &PyDict_Type,
            &jurisdiction, &ReplyTableType, &table, &clock, &metrics, &PyDict_Type, &counts,
            &PyDict_Type, &blocks))
        return -1;
    if (exempt != Py_None &&
        (!PyAnySet_Check(exempt) || !PyDict_Check(prefixes) || !PyDict_Check(buckets) ||
         !PyCallable_Check(limiter_clock))) {
        PyErr_SetString(PyExc_TypeError,
                        "a rate limiter needs a set, two dicts and a clock (or exempt=None)");
        return -1;
    }
    if (!PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "clock must be callable");
        return -1;
    }
#define SET(field) Py_XSETREF(self->field, Py_NewRef(field))
    SET(acl_memo);
    Py_XSETREF(self->lim.exempt, Py_NewRef(exempt));
    Py_XSETREF(self->lim.prefixes, Py_NewRef(prefixes));
    Py_XSETREF(self->lim.buckets, Py_NewRef(buckets));
    Py_XSETREF(self->lim.clock, Py_NewRef(limiter_clock));
    SET(jurisdiction);
    SET(clock);
    SET(metrics);
    SET(counts);
    SET(blocks);
#undef SET
    Py_XSETREF(self->table, (ReplyTable *)Py_NewRef(table));
    self->lim.rate = rate;
    self->lim.burst = burst;
    return 0;
}

/* d[key] += 1, with 0 for a missing key: counts.get(key, 0) + 1. */
static int
increment(PyObject *d, PyObject *key)
{
    PyObject *old = PyDict_GetItemWithError(d, key); /* borrowed */
    if (old == NULL && PyErr_Occurred())
        return -1;
    PyObject *new = old == NULL ? PyLong_FromLong(1) : PyNumber_Add(old, one);
    if (new == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, new);
    Py_DECREF(new);
    return rc;
}

static PyObject *
FusedPath_call(FusedPath *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "FusedPath takes (data, host)");
        return NULL;
    }
    PyObject *data = args[0], *host = args[1];
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FusedPath.__init__ was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(data) || !PyUnicode_CheckExact(host))
        Py_RETURN_NONE;

    /* acl: clients the memo admits go on */
    PyObject *admitted = PyDict_GetItemWithError(self->acl_memo, host);
    if (admitted == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    int ok = PyObject_IsTrue(admitted);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    /* ratelimit: exempt clients go on; a known prefix with a token to spare pays it */
    PyObject *bucket;
    double tokens_left = 0.0;
    ok = limiter_take(&self->lim, host, &bucket, &tokens_left);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    /* jurisdiction: memoized clients go on tagged */
    PyObject *code = PyDict_GetItemWithError(self->jurisdiction, host);
    if (code == NULL || !PyUnicode_CheckExact(code)) {
        int failed = PyErr_Occurred() != NULL;
        if (limiter_give_back(bucket, tokens_left) < 0 || failed)
            return NULL;
        Py_RETURN_NONE;
    }
    /* cache + responder: the kept reply for this query, while fresh */
    const char *raw = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    PyObject *key = PyBytes_FromStringAndSize(size > 2 ? raw + 2 : raw, size > 2 ? size - 2 : 0);
    if (key == NULL) {
        limiter_give_back(bucket, tokens_left);
        return NULL;
    }
    Py_INCREF(code);
    PyObject *out = NULL;
    Entry *e = NULL;
    Py_hash_t key_hash = PyObject_Hash(key), j_hash = PyObject_Hash(code);
    if (key_hash == -1 || j_hash == -1)
        goto failed;
    e = table_find(self->table, entry_hash(key_hash, j_hash), code, PyBytes_AS_STRING(key),
                   PyBytes_GET_SIZE(key));
    if (e != NULL) {
        /* The clock may be Python code (a test's) that changes the table: keep what is
         * needed of the entry before calling it. */
        double until = e->until;
        PyObject *count = Py_NewRef(e->count), *order = Py_NewRef(e->order);
        Py_ssize_t tlen = e->tlen;
        PyObject *tail = PyBytes_FromStringAndSize(NULL, tlen + 2);
        if (tail != NULL) {
            memcpy(PyBytes_AS_STRING(tail), raw, 2);
            memcpy(PyBytes_AS_STRING(tail) + 2, e->data + e->klen, (size_t)tlen);
        }
        e = NULL;
        PyObject *now_obj = tail == NULL ? NULL : PyObject_CallNoArgs(self->clock);
        double now = now_obj == NULL ? 0.0 : PyFloat_AsDouble(now_obj);
        Py_XDECREF(now_obj);
        int fresh = now_obj != NULL && !PyErr_Occurred() && now < until;
        if (fresh) {
            PyObject *hits = PyObject_GetAttr(self->metrics, str_cache_hits);
            PyObject *more = hits == NULL ? NULL : PyNumber_Add(hits, one);
            Py_XDECREF(hits);
            if (more != NULL && PyObject_SetAttr(self->metrics, str_cache_hits, more) == 0 &&
                increment(self->counts, count) == 0 &&
                (order == Py_None || increment(self->blocks, order) == 0))
                out = Py_NewRef(tail);
            Py_XDECREF(more);
        }
        Py_XDECREF(tail);
        Py_DECREF(count);
        Py_DECREF(order);
        if (out != NULL) {
            Py_XDECREF(bucket); /* the token stays spent */
            bucket = NULL;
            goto done;
        }
        if (PyErr_Occurred())
            goto failed;
    }
    if (limiter_give_back(bucket, tokens_left) < 0) {
        bucket = NULL;
        goto failed_no_bucket;
    }
    bucket = NULL;
    out = Py_NewRef(Py_None);
    goto done;
failed:
    if (bucket != NULL) {
        limiter_give_back_keeping_error(bucket, tokens_left);
        bucket = NULL;
    }
failed_no_bucket:
    out = NULL;
done:
    Py_DECREF(code);
    Py_DECREF(key);
    return out;
}

static PyObject *
FusedPath_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames)
{
    return FusedPath_call((FusedPath *)callable, args, nargsf, kwnames);
}

static PyObject *
FusedPath_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    FusedPath *self = (FusedPath *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = FusedPath_vectorcall;
    return (PyObject *)self;
}

static PyMemberDef FusedPath_members[] = {
    {"table", T_OBJECT, offsetof(FusedPath, table), READONLY, "the ReplyTable it serves from"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FusedPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.dnsserver._fastpath.FusedPath",
    .tp_doc = PyDoc_STR(
        "FusedPath(acl_memo, exempt, prefixes, buckets, limiter_clock, rate, burst,\n"
        "          jurisdiction, table, clock, metrics, counts, blocks)\n--\n\n"
        "The standard chain's UDP fast path in one call: path(data, host) -> reply bytes,\n"
        "or None for the general chain. See the module docstring."),
    .tp_basicsize = sizeof(FusedPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(FusedPath, vectorcall),
    .tp_new = FusedPath_new,
    .tp_init = (initproc)FusedPath_init,
    .tp_dealloc = (destructor)FusedPath_dealloc,
    .tp_traverse = (traverseproc)FusedPath_traverse,
    .tp_clear = (inquiry)FusedPath_clear,
    .tp_call = PyVectorcall_Call,
    .tp_members = FusedPath_members,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clearwall.dnsserver._fastpath",
    .m_doc = PyDoc_STR("The standard chain's UDP fast path, fused in C: FusedPath over a "
                       "ReplyTable."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    str_cache_hits = PyUnicode_InternFromString("cache_hits");
    one = PyLong_FromLong(1);
    if (str_cache_hits == NULL || one == NULL)
        return NULL;
    if (PyType_Ready(&ReplyTableType) < 0 || PyType_Ready(&FusedPathType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "ReplyTable", (PyObject *)&ReplyTableType) < 0 ||
        PyModule_AddObjectRef(m, "FusedPath", (PyObject *)&FusedPathType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
