/* clearwall.dnsserver._fastpath: the UDP fast path of the standard chain, fused in C.
 *
 * Why this exists: a repeated hit or block is answered by the chain's fast path, composed
 * in Python from one small step per handler (handlers.compose_fast): responder -> acl ->
 * ratelimit -> jurisdiction -> cache. Five closures, a dozen dictionary operations and
 * two slices cost about 2.3 us per query on the benchmark machine, a third of the
 * server's whole CPU per query next to the kernel's share (bench/dns.py). FusedPath does
 * exactly the same steps on exactly the same Python objects (the handlers' memos, the
 * cache's index, the responder's kept replies and the metrics dictionaries), without an
 * interpreter frame per step.
 *
 * It owns no state and decides nothing the Python steps would not: whatever it cannot
 * settle with a lookup is handed to the Python composition it was built from (a client
 * that is rate limited rather than exempt) or to the responder's own method (the first
 * rendering of an answer), or declined with None (the general chain then answers), in
 * the same order and with the same side effects as the Python steps. handlers.fused_path
 * builds it only for the standard chain; tests/dnsserver/test_fast_path.py checks replies
 * and counters against the general chain, and against the Python composition.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *acl_memo;     /* dict: host -> truthy when the ACL admits it */
    PyObject *exempt;       /* set: hosts the rate limiter exempts; None without a limiter */
    PyObject *jurisdiction; /* dict: host -> jurisdiction code */
    PyObject *index;        /* dict: code -> dict: query after its ID -> Answer */
    PyObject *clock;        /* the cache's clock */
    PyObject *holder;       /* PolicyHolder: .token */
    PyObject *metrics;      /* DNSMetrics: .cache_hits */
    PyObject *replies;      /* dict: query after its ID -> (answer, tail, count, order id) */
    PyObject *counts;       /* dict: count key -> queries */
    PyObject *blocks;       /* dict: order id -> blocks */
    PyObject *first;        /* responder._first_fast(data, key, host, answer) */
    PyObject *fallback;     /* the Python composition: path(data, host) */
} FusedPath;

static PyObject *str_until, *str_token, *str_cache_hits, *one;

static int
FusedPath_traverse(FusedPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->acl_memo);
    Py_VISIT(self->exempt);
    Py_VISIT(self->jurisdiction);
    Py_VISIT(self->index);
    Py_VISIT(self->clock);
    Py_VISIT(self->holder);
    Py_VISIT(self->metrics);
    Py_VISIT(self->replies);
    Py_VISIT(self->counts);
    Py_VISIT(self->blocks);
    Py_VISIT(self->first);
    Py_VISIT(self->fallback);
    return 0;
}

static int
FusedPath_clear(FusedPath *self)
{
    Py_CLEAR(self->acl_memo);
    Py_CLEAR(self->exempt);
    Py_CLEAR(self->jurisdiction);
    Py_CLEAR(self->index);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->holder);
    Py_CLEAR(self->metrics);
    Py_CLEAR(self->replies);
    Py_CLEAR(self->counts);
    Py_CLEAR(self->blocks);
    Py_CLEAR(self->first);
    Py_CLEAR(self->fallback);
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
    static char *kwlist[] = {"acl_memo", "exempt",  "jurisdiction", "index",
                             "clock",    "holder",  "metrics",      "replies",
                             "counts",   "blocks",  "first",        "fallback",
                             NULL};
    PyObject *acl_memo, *exempt, *jurisdiction, *index, *clock, *holder, *metrics, *replies,
        *counts, *blocks, *first, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!O!OOOO!O!O!OO:FusedPath", kwlist,
                                     &PyDict_Type, &acl_memo, &exempt, &PyDict_Type,
                                     &jurisdiction, &PyDict_Type, &index, &clock, &holder,
                                     &metrics, &PyDict_Type, &replies, &PyDict_Type, &counts,
                                     &PyDict_Type, &blocks, &first, &fallback))
        return -1;
    if (exempt != Py_None && !PyAnySet_Check(exempt)) {
        PyErr_SetString(PyExc_TypeError, "exempt must be a set or None");
        return -1;
    }
    if (!PyCallable_Check(clock) || !PyCallable_Check(first) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "clock, first and fallback must be callable");
        return -1;
    }
#define SET(field) Py_XSETREF(self->field, Py_NewRef(field))
    SET(acl_memo);
    SET(exempt);
    SET(jurisdiction);
    SET(index);
    SET(clock);
    SET(holder);
    SET(metrics);
    SET(replies);
    SET(counts);
    SET(blocks);
    SET(first);
    SET(fallback);
#undef SET
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

/* The cache step: the answer indexed under key for this jurisdiction while it is fresh
 * and of the current policy (a new reference), or NULL with no error set to decline. */
static PyObject *
cached(FusedPath *self, PyObject *code, PyObject *key)
{
    PyObject *by_query = PyDict_GetItemWithError(self->index, code);
    if (by_query == NULL)
        return NULL;
    PyObject *answer = PyDict_GetItemWithError(by_query, key); /* borrowed */
    if (answer == NULL)
        return NULL;
    Py_INCREF(answer); /* the clock below may run Python code (a test's clock) */
    PyObject *now = PyObject_CallNoArgs(self->clock);
    if (now == NULL)
        goto fail;
    PyObject *until = PyObject_GetAttr(answer, str_until);
    if (until == NULL) {
        Py_DECREF(now);
        goto fail;
    }
    int fresh = PyObject_RichCompareBool(now, until, Py_LT);
    Py_DECREF(now);
    Py_DECREF(until);
    if (fresh <= 0)
        goto fail;
    PyObject *token = PyObject_GetAttr(answer, str_token);
    if (token == NULL)
        goto fail;
    PyObject *current = PyObject_GetAttr(self->holder, str_token);
    if (current == NULL) {
        Py_DECREF(token);
        goto fail;
    }
    int same = token == current;
    Py_DECREF(token);
    Py_DECREF(current);
    if (!same)
        goto fail;
    PyObject *hits = PyObject_GetAttr(self->metrics, str_cache_hits);
    if (hits == NULL)
        goto fail;
    PyObject *more = PyNumber_Add(hits, one);
    Py_DECREF(hits);
    if (more == NULL)
        goto fail;
    int rc = PyObject_SetAttr(self->metrics, str_cache_hits, more);
    Py_DECREF(more);
    if (rc < 0)
        goto fail;
    return answer;
fail:
    Py_DECREF(answer);
    return NULL;
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
    if (self->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FusedPath.__init__ was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(data) || !PyUnicode_CheckExact(host))
        return PyObject_Vectorcall(self->fallback, args, nargsf, NULL);

    /* acl: clients the memo admits go on */
    PyObject *admitted = PyDict_GetItemWithError(self->acl_memo, host);
    if (admitted == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    int ok = PyObject_IsTrue(admitted);
    if (ok < 0)
        return NULL;
    if (!ok)
        Py_RETURN_NONE;
    /* ratelimit: exempt clients go on; the others pay a token in the Python step */
    if (self->exempt != Py_None) {
        int exempt = PySet_Contains(self->exempt, host);
        if (exempt < 0)
            return NULL;
        if (!exempt)
            return PyObject_Vectorcall(self->fallback, args, nargsf, NULL);
    }
    /* jurisdiction: memoized clients go on tagged */
    PyObject *code = PyDict_GetItemWithError(self->jurisdiction, host);
    if (code == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(code);
    const char *raw = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    PyObject *key = PyBytes_FromStringAndSize(size > 2 ? raw + 2 : raw, size > 2 ? size - 2 : 0);
    if (key == NULL) {
        Py_DECREF(code);
        return NULL;
    }
    PyObject *answer = cached(self, code, key);
    Py_DECREF(code);
    PyObject *out = NULL;
    if (answer == NULL) {
        if (!PyErr_Occurred())
            out = Py_NewRef(Py_None);
        goto done;
    }
    /* responder: the kept rendering of this very answer, else a first rendering */
    PyObject *seen = PyDict_GetItemWithError(self->replies, key); /* borrowed */
    if (seen == NULL && PyErr_Occurred())
        goto done;
    if (seen != NULL && PyTuple_CheckExact(seen) && PyTuple_GET_SIZE(seen) == 4 &&
        PyTuple_GET_ITEM(seen, 0) == answer && PyBytes_CheckExact(PyTuple_GET_ITEM(seen, 1))) {
        Py_INCREF(seen);
        PyObject *tail = PyTuple_GET_ITEM(seen, 1);
        PyObject *oid = PyTuple_GET_ITEM(seen, 3);
        if (increment(self->counts, PyTuple_GET_ITEM(seen, 2)) == 0 &&
            (oid == Py_None || increment(self->blocks, oid) == 0)) {
            Py_ssize_t tlen = PyBytes_GET_SIZE(tail);
            out = PyBytes_FromStringAndSize(NULL, tlen + 2);
            if (out != NULL) {
                char *dst = PyBytes_AS_STRING(out);
                memcpy(dst, raw, 2);
                memcpy(dst + 2, PyBytes_AS_STRING(tail), (size_t)tlen);
            }
        }
        Py_DECREF(seen);
        goto done;
    }
    PyObject *call[4] = {data, key, host, answer};
    out = PyObject_Vectorcall(self->first, call, 4, NULL);
done:
    Py_XDECREF(answer);
    Py_DECREF(key);
    return out;
}

static PyObject *
FusedPath_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames)
{
    return FusedPath_call((FusedPath *)callable, args, nargsf, kwnames);
}

typedef struct {
    FusedPath base;
    vectorcallfunc vectorcall;
} FusedPathObject;

static PyObject *
FusedPath_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    FusedPathObject *self = (FusedPathObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = FusedPath_vectorcall;
    return (PyObject *)self;
}

static PyObject *
FusedPath_tp_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    return PyVectorcall_Call(self, args, kwds);
}

static PyTypeObject FusedPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.dnsserver._fastpath.FusedPath",
    .tp_doc = PyDoc_STR(
        "FusedPath(acl_memo, exempt, jurisdiction, index, clock, holder, metrics, replies,\n"
        "          counts, blocks, first, fallback)\n--\n\n"
        "The standard chain's UDP fast path in one call: path(data, host) -> reply bytes,\n"
        "or None for the general chain. Works on the handlers' own objects; see the\n"
        "module docstring."),
    .tp_basicsize = sizeof(FusedPathObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(FusedPathObject, vectorcall),
    .tp_new = FusedPath_new,
    .tp_init = (initproc)FusedPath_init,
    .tp_dealloc = (destructor)FusedPath_dealloc,
    .tp_traverse = (traverseproc)FusedPath_traverse,
    .tp_clear = (inquiry)FusedPath_clear,
    .tp_call = FusedPath_tp_call,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clearwall.dnsserver._fastpath",
    .m_doc = PyDoc_STR("The standard chain's UDP fast path, fused in C (FusedPath)."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    str_until = PyUnicode_InternFromString("until");
    str_token = PyUnicode_InternFromString("token");
    str_cache_hits = PyUnicode_InternFromString("cache_hits");
    one = PyLong_FromLong(1);
    if (str_until == NULL || str_token == NULL || str_cache_hits == NULL || one == NULL)
        return NULL;
    if (PyType_Ready(&FusedPathType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "FusedPath", (PyObject *)&FusedPathType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
