/* The rate limiter's token step, shared by the fused fast path (_fastpath.c) and the
 * fused miss path (_forward.c): both pay a client's token in C exactly as
 * handlers/ratelimit.py's fast step does, and give it back when they then decline.
 *
 * Included by each module (static functions: every module gets its own copy).
 * The arithmetic must round as the Python step does (built with -ffp-contract=off).
 */
#ifndef CLEARWALL_RATELIMIT_H
#define CLEARWALL_RATELIMIT_H

#include <Python.h>

/* The rate limiter's objects, as handlers/ratelimit.RateLimiter holds them. */
typedef struct {
    PyObject *exempt;   /* set: hosts the rate limiter exempts; None without a limiter */
    PyObject *prefixes; /* dict: host -> prefix (the limiter's memo) */
    PyObject *buckets;  /* dict: prefix -> [tokens, last time, slips] */
    PyObject *clock;    /* the limiter's clock */
    double rate, burst;
} Limiter;

/* The owning object's tp_traverse and tp_clear for the limiter's references. */
static int
limiter_traverse(Limiter *lim, visitproc visit, void *arg)
{
    Py_VISIT(lim->exempt);
    Py_VISIT(lim->prefixes);
    Py_VISIT(lim->buckets);
    Py_VISIT(lim->clock);
    return 0;
}

static void
limiter_clear(Limiter *lim)
{
    Py_CLEAR(lim->exempt);
    Py_CLEAR(lim->prefixes);
    Py_CLEAR(lim->buckets);
    Py_CLEAR(lim->clock);
}

static int
limiter_set_float(PyObject *list, Py_ssize_t i, double value)
{
    PyObject *f = PyFloat_FromDouble(value);
    if (f == NULL)
        return -1;
    return PyList_SetItem(list, i, f); /* steals f */
}

/* 1 when the query may go on (a token taken: *bucket is then a new reference to it),
 * 0 to decline, -1 on error. Exempt clients pass with no bucket. */
static int
limiter_take(Limiter *lim, PyObject *host, PyObject **bucket, double *tokens_left)
{
    *bucket = NULL;
    if (lim->exempt == NULL || lim->exempt == Py_None)
        return 1;
    int exempt = PySet_Contains(lim->exempt, host);
    if (exempt != 0)
        return exempt; /* 1, or -1 on error */
    PyObject *prefix = PyDict_GetItemWithError(lim->prefixes, host);
    if (prefix == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *b = PyDict_GetItemWithError(lim->buckets, prefix);
    if (b == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyList_CheckExact(b) || PyList_GET_SIZE(b) < 2)
        return 0;
    Py_INCREF(b);
    PyObject *now_obj = PyObject_CallNoArgs(lim->clock);
    if (now_obj == NULL)
        goto error;
    double now = PyFloat_AsDouble(now_obj);
    Py_DECREF(now_obj);
    double have = PyFloat_AsDouble(PyList_GET_ITEM(b, 0));
    double last = PyFloat_AsDouble(PyList_GET_ITEM(b, 1));
    if (PyErr_Occurred())
        goto error;
    double tokens = have + (now - last) * lim->rate;
    if (tokens > lim->burst)
        tokens = lim->burst;
    if (tokens < 1.0) {
        Py_DECREF(b);
        return 0;
    }
    if (limiter_set_float(b, 0, tokens - 1.0) < 0 || limiter_set_float(b, 1, now) < 0)
        goto error;
    *tokens_left = tokens - 1.0;
    *bucket = b;
    return 1;
error:
    Py_DECREF(b);
    return -1;
}

/* Give back the token of a query the caller then declined (as the Python step does);
 * releases the bucket reference. */
static int
limiter_give_back(PyObject *bucket, double tokens_left)
{
    if (bucket == NULL)
        return 0;
    int rc = limiter_set_float(bucket, 0, tokens_left + 1.0);
    Py_DECREF(bucket);
    return rc;
}

/* limiter_give_back that keeps the exception being raised (for error paths). */
static void
limiter_give_back_keeping_error(PyObject *bucket, double tokens_left)
{
    if (bucket == NULL)
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (limiter_give_back(bucket, tokens_left) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

#endif
