/* clearwall.dnsserver._lrustore: an exact-LRU map of bytes keys to bytes values that
 * keeps each entry as one C record (header, key bytes, value bytes) instead of Python
 * objects.
 *
 * Why this exists: the DNS answer cache holds 50k to 100k small entries (keys ~35 bytes,
 * wire answers ~80 to 200 bytes). As an OrderedDict of bytes to bytes each entry costs
 * ~360 bytes of RSS (two bytes objects with their headers, the dict slot and the ordered
 * dict's linked-list node); here it is one record of a 40-byte header plus the key and
 * the value, and one bucket pointer: ~210 bytes for a 35-byte key and a 120-byte value
 * (bench/cache_memory.py, tests/dnsserver/test_lrustore.py).
 *
 * Layout: a chained hash table of record pointers (a power of two of buckets, doubled
 * when the entries outnumber the buckets, so it never outgrows max_entries) and a
 * doubly-linked list through the records in recency order, least recent first, whose
 * ends meet at a sentinel node in the store object.
 *
 * Keys come from remote clients, so buckets are chosen by PyObject_Hash: CPython's
 * per-process keyed SipHash, which an attacker cannot aim at one bucket. Keys and values
 * must be exactly bytes, whose hash and equality run no Python code, so nothing can
 * re-enter the store in the middle of an operation.
 *
 * Records and the table come from PyMem_Malloc: records of up to 512 bytes (most of
 * them) go to pymalloc, which keeps no per-block header, and tracemalloc, which the
 * cache benchmark reads, sees every byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_KEY 65535          /* longest key accepted, in bytes */
#define MAX_VALUE (1 << 20)    /* longest value accepted, in bytes */
#define MIN_BUCKETS 8

typedef struct Node {
    struct Node *prev, *next; /* recency list: prev is less recent */
} Node;

typedef struct Record {
    Node lru; /* first, so that a Node * from the list is the record itself */
    struct Record *hnext;
    Py_hash_t hash;
    uint32_t klen, vlen;
    char data[]; /* klen key bytes, then vlen value bytes */
} Record;

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_entries;
    Py_ssize_t count;
    Record **table;
    size_t mask;   /* buckets - 1 */
    size_t rbytes; /* bytes of all records, as requested from PyMem_Malloc */
    Node lru;      /* sentinel: lru.next is the least recent record, lru.prev the most */
} LRUStore;

static size_t
record_size(const Record *r)
{
    return offsetof(Record, data) + r->klen + r->vlen;
}

static void
list_unlink(Record *r)
{
    r->lru.prev->next = r->lru.next;
    r->lru.next->prev = r->lru.prev;
}

static void
list_append(LRUStore *self, Record *r)
{
    r->lru.prev = self->lru.prev;
    r->lru.next = &self->lru;
    self->lru.prev->next = &r->lru;
    self->lru.prev = &r->lru;
}

/* The link that points at the record holding key, or the NULL that ends its chain. */
static Record **
find_slot(LRUStore *self, Py_hash_t hash, const char *key, uint32_t klen)
{
    Record **slot = &self->table[(size_t)hash & self->mask];
    for (; *slot != NULL; slot = &(*slot)->hnext) {
        Record *r = *slot;
        if (r->hash == hash && r->klen == klen && memcmp(r->data, key, klen) == 0)
            break;
    }
    return slot;
}

static void
unhash(LRUStore *self, Record *r)
{
    Record **slot = &self->table[(size_t)r->hash & self->mask];
    while (*slot != r)
        slot = &(*slot)->hnext;
    *slot = r->hnext;
}

static void
discard(LRUStore *self, Record *r)
{
    unhash(self, r);
    list_unlink(r);
    self->count--;
    self->rbytes -= record_size(r);
    PyMem_Free(r);
}

/* Doubles the table. On allocation failure the old table stays: chains only get longer,
 * and the next insertion tries again, so a put never fails for the table's sake. */
static void
grow(LRUStore *self)
{
    size_t buckets = (self->mask + 1) * 2;
    Record **table = PyMem_Calloc(buckets, sizeof(Record *));
    Node *n;
    if (table == NULL)
        return;
    for (n = self->lru.next; n != &self->lru; n = n->next) {
        Record *r = (Record *)n;
        size_t i = (size_t)r->hash & (buckets - 1);
        r->hnext = table[i];
        table[i] = r;
    }
    PyMem_Free(self->table);
    self->table = table;
    self->mask = buckets - 1;
}

static void
free_records(LRUStore *self)
{
    Node *n = self->lru.next;
    while (n != &self->lru) {
        Node *next = n->next;
        PyMem_Free(n);
        n = next;
    }
    self->lru.next = self->lru.prev = &self->lru;
    self->count = 0;
    self->rbytes = 0;
}

static int
check_bytes(PyObject *obj, const char *what, Py_ssize_t limit)
{
    if (!PyBytes_CheckExact(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyBytes_GET_SIZE(obj) > limit) {
        PyErr_Format(PyExc_ValueError, "%s of %zd bytes is longer than %zd", what,
                     PyBytes_GET_SIZE(obj), limit);
        return -1;
    }
    return 0;
}

/* The record stored under key (which must be exact bytes), or NULL with no error set;
 * NULL with an error set when hashing fails. */
static Record *
lookup(LRUStore *self, PyObject *key, int *error)
{
    Py_hash_t hash;
    *error = 0;
    if (PyBytes_GET_SIZE(key) > MAX_KEY) /* never stored */
        return NULL;
    hash = PyObject_Hash(key);
    if (hash == -1) {
        *error = 1;
        return NULL;
    }
    return *find_slot(self, hash, PyBytes_AS_STRING(key), (uint32_t)PyBytes_GET_SIZE(key));
}

static PyObject *
LRUStore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_entries", NULL};
    Py_ssize_t max_entries;
    LRUStore *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:LRUStore", kwlist, &max_entries))
        return NULL;
    if (max_entries < 1) {
        PyErr_Format(PyExc_ValueError, "max_entries must be at least 1, not %zd",
                     max_entries);
        return NULL;
    }
    self = (LRUStore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->max_entries = max_entries;
    self->lru.next = self->lru.prev = &self->lru;
    self->table = PyMem_Calloc(MIN_BUCKETS, sizeof(Record *));
    if (self->table == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->mask = MIN_BUCKETS - 1;
    return (PyObject *)self;
}

static void
LRUStore_dealloc(LRUStore *self)
{
    free_records(self);
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
LRUStore_get(LRUStore *self, PyObject *key)
{
    int error;
    Record *r;
    if (check_bytes(key, "key", PY_SSIZE_T_MAX) < 0)
        return NULL;
    r = lookup(self, key, &error);
    if (r == NULL) {
        if (error)
            return NULL;
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize(r->data + r->klen, r->vlen);
}

static PyObject *
LRUStore_touch(LRUStore *self, PyObject *key)
{
    int error;
    Record *r;
    if (check_bytes(key, "key", PY_SSIZE_T_MAX) < 0)
        return NULL;
    r = lookup(self, key, &error);
    if (r == NULL) {
        if (error)
            return NULL;
        Py_RETURN_FALSE;
    }
    list_unlink(r);
    list_append(self, r);
    Py_RETURN_TRUE;
}

static PyObject *
LRUStore_put(LRUStore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *key, *value;
    Py_hash_t hash;
    uint32_t klen, vlen;
    size_t size;
    Record *r, **slot;
    Py_ssize_t evicted = 0;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    key = args[0];
    value = args[1];
    if (check_bytes(key, "key", MAX_KEY) < 0 || check_bytes(value, "value", MAX_VALUE) < 0)
        return NULL;
    hash = PyObject_Hash(key);
    if (hash == -1)
        return NULL;
    klen = (uint32_t)PyBytes_GET_SIZE(key);
    vlen = (uint32_t)PyBytes_GET_SIZE(value);
    size = offsetof(Record, data) + klen + vlen;
    /* The new record is allocated before anything changes, so a MemoryError leaves the
     * store (and any old value under key) as it was. */
    r = PyMem_Malloc(size);
    if (r == NULL)
        return PyErr_NoMemory();
    r->hash = hash;
    r->klen = klen;
    r->vlen = vlen;
    memcpy(r->data, PyBytes_AS_STRING(key), klen);
    memcpy(r->data + klen, PyBytes_AS_STRING(value), vlen);

    slot = find_slot(self, hash, r->data, klen);
    if (*slot != NULL) {
        Record *old = *slot;
        r->hnext = old->hnext;
        *slot = r;
        list_unlink(old);
        self->rbytes -= record_size(old);
        PyMem_Free(old);
    }
    else {
        r->hnext = NULL;
        *slot = r;
        self->count++;
    }
    list_append(self, r);
    self->rbytes += size;
    /* The new record is the most recent and max_entries >= 1, so it is never evicted. */
    while (self->count > self->max_entries) {
        discard(self, (Record *)self->lru.next);
        evicted++;
    }
    if ((size_t)self->count > self->mask + 1)
        grow(self);
    return PyLong_FromSsize_t(evicted);
}

static PyObject *
LRUStore_pop(LRUStore *self, PyObject *key)
{
    int error;
    Record *r;
    PyObject *value;
    if (check_bytes(key, "key", PY_SSIZE_T_MAX) < 0)
        return NULL;
    r = lookup(self, key, &error);
    if (r == NULL) {
        if (error)
            return NULL;
        Py_RETURN_NONE;
    }
    /* Copy first: if that fails, the entry stays. */
    value = PyBytes_FromStringAndSize(r->data + r->klen, r->vlen);
    if (value != NULL)
        discard(self, r);
    return value;
}

static PyObject *
LRUStore_clear(LRUStore *self, PyObject *unused)
{
    free_records(self);
    if (self->mask + 1 > MIN_BUCKETS) {
        Record **table = PyMem_Calloc(MIN_BUCKETS, sizeof(Record *));
        if (table != NULL) {
            PyMem_Free(self->table);
            self->table = table;
            self->mask = MIN_BUCKETS - 1;
            Py_RETURN_NONE;
        }
    }
    /* Still the small table, or no memory for a new one: keep this one, emptied. */
    memset(self->table, 0, (self->mask + 1) * sizeof(Record *));
    Py_RETURN_NONE;
}

static PyObject *
LRUStore_keys(LRUStore *self, PyObject *unused)
{
    PyObject *keys = PyList_New(0);
    Node *n;
    if (keys == NULL)
        return NULL;
    /* Neither call below can run Python code (bytes and list growth allocate no
     * GC-tracked object), so the list cannot change under the walk. */
    for (n = self->lru.next; n != &self->lru; n = n->next) {
        Record *r = (Record *)n;
        PyObject *key = PyBytes_FromStringAndSize(r->data, r->klen);
        if (key == NULL || PyList_Append(keys, key) < 0) {
            Py_XDECREF(key);
            Py_DECREF(keys);
            return NULL;
        }
        Py_DECREF(key);
    }
    return keys;
}

static Py_ssize_t
LRUStore_len(LRUStore *self)
{
    return self->count;
}

static int
LRUStore_contains(LRUStore *self, PyObject *key)
{
    int error;
    Record *r;
    if (!PyBytes_CheckExact(key))
        return 0;
    r = lookup(self, key, &error);
    return error ? -1 : r != NULL;
}

static PyObject *
LRUStore_get_max_entries(LRUStore *self, void *closure)
{
    return PyLong_FromSsize_t(self->max_entries);
}

static PyObject *
LRUStore_get_nbytes(LRUStore *self, void *closure)
{
    return PyLong_FromSize_t(self->rbytes + (self->mask + 1) * sizeof(Record *));
}

static PyMethodDef LRUStore_methods[] = {
    {"get", (PyCFunction)LRUStore_get, METH_O,
     "get($self, key, /)\n--\n\n"
     "A copy of the value stored under key, or None. Does not change recency."},
    {"touch", (PyCFunction)LRUStore_touch, METH_O,
     "touch($self, key, /)\n--\n\n"
     "Make key the most recent entry; False if it is absent."},
    {"put", (PyCFunction)(void (*)(void))LRUStore_put, METH_FASTCALL,
     "put($self, key, value, /)\n--\n\n"
     "Store value under key as the most recent entry, replacing any old value, then\n"
     "evict least recent entries while there are more than max_entries. Returns how\n"
     "many were evicted. On MemoryError the store is unchanged."},
    {"pop", (PyCFunction)LRUStore_pop, METH_O,
     "pop($self, key, /)\n--\n\n"
     "Remove key and return its value, or None if it is absent."},
    {"clear", (PyCFunction)LRUStore_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nRemove every entry and free its memory."},
    {"keys", (PyCFunction)LRUStore_keys, METH_NOARGS,
     "keys($self, /)\n--\n\nThe keys as a new list, least recent first."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef LRUStore_getset[] = {
    {"max_entries", (getter)LRUStore_get_max_entries, NULL,
     "The most entries the store keeps; put evicts beyond it.", NULL},
    {"nbytes", (getter)LRUStore_get_nbytes, NULL,
     "Bytes of C memory held: every record's size as requested from the allocator\n"
     "(40-byte header + key + value) plus the bucket table (8 bytes per bucket).\n"
     "Not counted: the allocator's rounding and this object itself.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods LRUStore_as_sequence = {
    .sq_length = (lenfunc)LRUStore_len,
    .sq_contains = (objobjproc)LRUStore_contains,
};

static PyTypeObject LRUStoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.dnsserver._lrustore.LRUStore",
    .tp_doc = PyDoc_STR(
        "LRUStore(max_entries)\n--\n\n"
        "Exact-LRU map of bytes keys to bytes values, one C record per entry.\n\n"
        "Keys (up to 65535 bytes) and values (up to 1 MiB) must be exactly bytes."),
    .tp_basicsize = sizeof(LRUStore),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = LRUStore_new,
    .tp_dealloc = (destructor)LRUStore_dealloc,
    .tp_methods = LRUStore_methods,
    .tp_getset = LRUStore_getset,
    .tp_as_sequence = &LRUStore_as_sequence,
};

static struct PyModuleDef lrustore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clearwall.dnsserver._lrustore",
    .m_doc = "Exact-LRU bytes-to-bytes store for the DNS answer cache (C extension).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__lrustore(void)
{
    PyObject *m = PyModule_Create(&lrustore_module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&LRUStoreType) < 0 || PyModule_AddType(m, &LRUStoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
