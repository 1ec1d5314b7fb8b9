/* clearwall.policy._keytable: a snapshot's listed names (trie keys) as an open-addressing
 * hash table, built in a few hundredths of the time marisa takes to build its trie.
 *
 * Why this exists: a first start (and any whole compile the gateway waits for) spent
 * about 0.55 s of its 2.4 s building the marisa trie of a million names, which nothing
 * else can overlap on one core. marisa's trie is small (4.4 MB for a million names
 * against about 35 MB here), so it stays the snapshot the gateway keeps: the policy
 * source serves a whole compile from a key table at once and replaces it with the trie,
 * compiled in the background, as soon as it is ready (control/policy_source.py). The
 * matcher asks the table what it asks the trie: the ids of keys and which keys are
 * prefixes of a query's key (policy/keytable.py gives it marisa's method names).
 *
 * Keys are hashed with SipHash-1-3 under a random 16-byte key chosen per compile (a
 * hostile list cannot make its names collide) and placed by linear probing in a table
 * at most half full. Lookups compare the whole key, so an answer is exact.
 *
 * The image (built by build(), saved as one file, native byte order):
 *
 *   header   64 bytes: MAGIC, key count n, slot count c (a power of two > n), size s of
 *            the key bytes, the 16-byte hash key, then zeros
 *   offsets  n + 1 uint32: where key i starts in the key bytes (offsets[n] = s)
 *   slots    c uint32: 0 for an empty slot, else 1 + the id of the key placed there
 *   keys     s bytes: the distinct keys in id order (first seen first), each followed
 *            by a newline
 *
 * Loading reads only the header (O(1)); lookups check every offset and id they read
 * against the header's sizes and probe at most c slots, so a damaged image gives wrong
 * answers at worst, never a read out of bounds or a loop without end.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_siphash.h"

#define MAGIC "CWKEYTB1"
#define HEADER_SIZE 64
#define KEY_SIZE 16
#define MIN_SLOTS 8

typedef struct {
    const uint32_t *offsets;
    const uint32_t *slots;
    const unsigned char *keys;
    uint64_t n, capacity, size;
    uint64_t k0, k1;
} Table;

/* The id of the len bytes at key, or -1 when the table does not hold them. */
static Py_ssize_t
table_find(const Table *t, const unsigned char *key, size_t len)
{
    uint64_t mask = t->capacity - 1;
    uint64_t at = siphash13(t->k0, t->k1, key, len) & mask;
    for (uint64_t probes = 0; probes < t->capacity; probes++, at = (at + 1) & mask) {
        uint32_t slot = t->slots[at];
        if (slot == 0)
            return -1;
        uint64_t id = (uint64_t)slot - 1;
        if (id >= t->n)
            continue; /* damaged: not a key of this table */
        uint64_t start = t->offsets[id], end = t->offsets[id + 1];
        if (start >= end || end > t->size)
            continue;
        if (end - start - 1 == len && memcmp(t->keys + start, key, len) == 0)
            return (Py_ssize_t)id;
    }
    return -1;
}

/* Parse and check an image of len bytes; -1 with ValueError set if it is not one. */
static int
parse_image(const unsigned char *buf, Py_ssize_t len, Table *t)
{
    uint64_t n, capacity, size;
    if (((uintptr_t)buf & 7) != 0 || len < HEADER_SIZE || memcmp(buf, MAGIC, 8) != 0) {
        PyErr_SetString(PyExc_ValueError, "not a key table image");
        return -1;
    }
    memcpy(&n, buf + 8, 8);
    memcpy(&capacity, buf + 16, 8);
    memcpy(&size, buf + 24, 8);
    if (n >= UINT32_MAX || size > UINT32_MAX || capacity <= n || capacity > ((uint64_t)1 << 32) ||
        (capacity & (capacity - 1)) != 0 ||
        (uint64_t)len != HEADER_SIZE + 4 * (n + 1) + 4 * capacity + size) {
        PyErr_SetString(PyExc_ValueError, "key table image has a bad size");
        return -1;
    }
    t->offsets = (const uint32_t *)(buf + HEADER_SIZE);
    t->slots = t->offsets + n + 1;
    t->keys = (const unsigned char *)(t->slots + capacity);
    t->n = n;
    t->capacity = capacity;
    t->size = size;
    t->k0 = load_le64(buf + 32);
    t->k1 = load_le64(buf + 40);
    return 0;
}

/* The smallest power of two, at least MIN_SLOTS, that keeps n keys at most half full. */
static uint64_t
slots_for(uint64_t n)
{
    uint64_t c = MIN_SLOTS;
    while (c < 2 * n + 1)
        c <<= 1;
    return c;
}

/* Place every key of t (ids 0..n-1, keys and offsets filled in) into its slots. */
static void
place_all(Table *t, uint32_t *slots)
{
    uint64_t mask = t->capacity - 1;
    memset(slots, 0, 4 * t->capacity);
    for (uint64_t id = 0; id < t->n; id++) {
        uint64_t start = t->offsets[id], len = t->offsets[id + 1] - start - 1;
        uint64_t at = siphash13(t->k0, t->k1, t->keys + start, len) & mask;
        while (slots[at] != 0)
            at = (at + 1) & mask;
        slots[at] = (uint32_t)(id + 1);
    }
}

/* build(keys, key) -> bytes: the image of the newline-terminated keys in keys. */
static PyObject *
keytable_build(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer blob, hkey;
    PyObject *result = NULL;
    uint32_t *offsets = NULL, *slots = NULL;
    unsigned char *keys = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "build(keys, key) takes 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &blob, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &hkey, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&blob);
        return NULL;
    }
    const unsigned char *in = blob.buf;
    size_t inlen = (size_t)blob.len;
    if (hkey.len != KEY_SIZE) {
        PyErr_Format(PyExc_ValueError, "hash key must be %d bytes", KEY_SIZE);
        goto done;
    }
    if (inlen && in[inlen - 1] != '\n') {
        PyErr_SetString(PyExc_ValueError, "keys must each end with a newline");
        goto done;
    }
    if (inlen > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "keys too large for one key table (4 GiB)");
        goto done;
    }
    uint64_t lines = 0;
    for (const unsigned char *p = in; (p = memchr(p, '\n', inlen - (size_t)(p - in))) != NULL;
         p++)
        lines++;
    Table t = {0};
    t.k0 = load_le64(hkey.buf);
    t.k1 = load_le64((const unsigned char *)hkey.buf + 8);
    t.capacity = slots_for(lines);
    offsets = PyMem_RawMalloc(4 * (lines + 1));
    slots = PyMem_RawCalloc(t.capacity, 4);
    keys = PyMem_RawMalloc(inlen ? inlen : 1);
    if (offsets == NULL || slots == NULL || keys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        uint64_t mask = t.capacity - 1, n = 0, size = 0;
        const unsigned char *p = in, *end = in + inlen;
        while (p < end) {
            const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = (size_t)(nl - p);
            uint64_t at = siphash13(t.k0, t.k1, p, len) & mask;
            for (;; at = (at + 1) & mask) {
                uint32_t slot = slots[at];
                if (slot == 0) { /* a new key: id n */
                    slots[at] = (uint32_t)(n + 1);
                    offsets[n++] = (uint32_t)size;
                    memcpy(keys + size, p, len);
                    keys[size + len] = '\n';
                    size += len + 1;
                    offsets[n] = (uint32_t)size; /* the end of the newest key */
                    break;
                }
                uint64_t id = (uint64_t)slot - 1;
                if (offsets[id + 1] - offsets[id] - 1 == len &&
                    memcmp(keys + offsets[id], p, len) == 0)
                    break; /* listed already (another order, or twice in one) */
            }
            p = nl + 1;
        }
        offsets[n] = (uint32_t)size;
        t.n = n;
        t.size = size;
        t.offsets = offsets;
        t.keys = keys;
        /* Duplicates leave the table emptier than it needs to be: size it for n. */
        if (slots_for(n) < t.capacity) {
            t.capacity = slots_for(n);
            place_all(&t, slots);
        }
    }
    Py_ssize_t total = HEADER_SIZE + 4 * (Py_ssize_t)(t.n + 1) + 4 * (Py_ssize_t)t.capacity +
                       (Py_ssize_t)t.size;
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        goto done;
    {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        memset(out, 0, HEADER_SIZE);
        memcpy(out, MAGIC, 8);
        memcpy(out + 8, &t.n, 8);
        memcpy(out + 16, &t.capacity, 8);
        memcpy(out + 24, &t.size, 8);
        memcpy(out + 32, hkey.buf, KEY_SIZE);
        out += HEADER_SIZE;
        memcpy(out, offsets, 4 * (t.n + 1));
        out += 4 * (t.n + 1);
        memcpy(out, slots, 4 * t.capacity);
        out += 4 * t.capacity;
        memcpy(out, keys, t.size);
    }
done:
    PyMem_RawFree(offsets);
    PyMem_RawFree(slots);
    PyMem_RawFree(keys);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&hkey);
    return result;
}

/* -- KeyTable: an image, searched in place --------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_buffer view; /* the image, kept exported (an mmap stays shared, never copied) */
    Table table;
} KeyTableObject;

static int
KeyTable_init(KeyTableObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"image", NULL};
    PyObject *image;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:KeyTable", kwlist, &image))
        return -1;
    if (self->view.obj != NULL) {
        PyErr_SetString(PyExc_TypeError, "KeyTable is already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(image, &self->view, PyBUF_SIMPLE) < 0)
        return -1;
    if (parse_image(self->view.buf, self->view.len, &self->table) < 0) {
        PyBuffer_Release(&self->view);
        return -1;
    }
    return 0;
}

static void
KeyTable_dealloc(KeyTableObject *self)
{
    if (self->view.obj != NULL)
        PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The UTF-8 bytes of a str key; NULL with TypeError set for anything else. */
static const char *
key_bytes(KeyTableObject *self, PyObject *key, Py_ssize_t *len)
{
    if (self->view.obj == NULL) {
        PyErr_SetString(PyExc_ValueError, "KeyTable is not initialised");
        return NULL;
    }
    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "a key must be a str");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(key, len);
}

static PyObject *
KeyTable_key_id(KeyTableObject *self, PyObject *key)
{
    Py_ssize_t len;
    const char *data = key_bytes(self, key, &len);
    if (data == NULL)
        return NULL;
    Py_ssize_t id = table_find(&self->table, (const unsigned char *)data, (size_t)len);
    if (id < 0) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return PyLong_FromSsize_t(id);
}

static PyObject *
KeyTable_prefixes(KeyTableObject *self, PyObject *key)
{
    Py_ssize_t len;
    const char *data = key_bytes(self, key, &len);
    if (data == NULL)
        return NULL;
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
    /* Every key ends with a dot, so only the prefixes that end with one can be keys. */
    for (Py_ssize_t i = 0; i < len; i++) {
        if (data[i] != '.' ||
            table_find(&self->table, (const unsigned char *)data, (size_t)i + 1) < 0)
            continue;
        PyObject *prefix = PyUnicode_DecodeUTF8(data, i + 1, NULL);
        if (prefix == NULL || PyList_Append(found, prefix) < 0) {
            Py_XDECREF(prefix);
            Py_DECREF(found);
            return NULL;
        }
        Py_DECREF(prefix);
    }
    return found;
}

static PyObject *
KeyTable_ids(KeyTableObject *self, PyObject *arg)
{
    /* ids(keys) -> list[int]: the id of each newline-terminated key (KeyError if one is
     * not held): what the compiler asks for every rule of a policy with several codes. */
    Py_buffer blob;
    if (self->view.obj == NULL) {
        PyErr_SetString(PyExc_ValueError, "KeyTable is not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &blob, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    const unsigned char *p = blob.buf, *end = p + blob.len;
    while (out != NULL && p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        Py_ssize_t id = table_find(&self->table, p, (size_t)(nl - p));
        PyObject *value = id < 0 ? NULL : PyLong_FromSsize_t(id);
        if (id < 0) {
            PyObject *missing = PyUnicode_DecodeUTF8((const char *)p, nl - p, "replace");
            if (missing != NULL) {
                PyErr_SetObject(PyExc_KeyError, missing);
                Py_DECREF(missing);
            }
        }
        if (value == NULL || PyList_Append(out, value) < 0) {
            Py_XDECREF(value);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(value);
        p = nl + 1;
    }
    PyBuffer_Release(&blob);
    return out;
}

static PyObject *
KeyTable_keys(KeyTableObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->view.obj == NULL) {
        PyErr_SetString(PyExc_ValueError, "KeyTable is not initialised");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)self->table.keys,
                                     (Py_ssize_t)self->table.size);
}

static Py_ssize_t
KeyTable_len(KeyTableObject *self)
{
    return (Py_ssize_t)self->table.n;
}

static int
KeyTable_contains(KeyTableObject *self, PyObject *key)
{
    Py_ssize_t len;
    if (!PyUnicode_Check(key))
        return 0;
    const char *data = key_bytes(self, key, &len);
    if (data == NULL)
        return -1;
    return table_find(&self->table, (const unsigned char *)data, (size_t)len) >= 0;
}

static PyMethodDef KeyTable_methods[] = {
    {"key_id", (PyCFunction)KeyTable_key_id, METH_O,
     "key_id(key) -> int: the id of key (KeyError when it is not held)."},
    {"prefixes", (PyCFunction)KeyTable_prefixes, METH_O,
     "prefixes(key) -> list[str]: the held keys that are prefixes of key, shortest first."},
    {"ids", (PyCFunction)KeyTable_ids, METH_O,
     "ids(keys) -> list[int]: the id of each newline-terminated key."},
    {"keys", (PyCFunction)KeyTable_keys, METH_NOARGS,
     "keys() -> bytes: the held keys in id order, each followed by a newline."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods KeyTable_as_sequence = {
    .sq_length = (lenfunc)KeyTable_len,
    .sq_contains = (objobjproc)KeyTable_contains,
};

static PyTypeObject KeyTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clearwall.policy._keytable.KeyTable",
    .tp_basicsize = sizeof(KeyTableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("KeyTable(image)\n--\n\nThe key table in image, searched in place."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)KeyTable_init,
    .tp_dealloc = (destructor)KeyTable_dealloc,
    .tp_methods = KeyTable_methods,
    .tp_as_sequence = &KeyTable_as_sequence,
};

static PyMethodDef module_methods[] = {
    {"build", (PyCFunction)(void (*)(void))keytable_build, METH_FASTCALL,
     "build(keys, key) -> bytes: the image of the newline-terminated keys, hashed with "
     "the 16-byte key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_keytable", "Listed names as an open-addressing hash table.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__keytable(void)
{
    if (PyType_Ready(&KeyTableType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&KeyTableType);
    if (PyModule_AddObject(m, "KeyTable", (PyObject *)&KeyTableType) < 0 ||
        PyModule_AddIntConstant(m, "KEY_SIZE", KEY_SIZE) < 0) {
        Py_DECREF(&KeyTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
