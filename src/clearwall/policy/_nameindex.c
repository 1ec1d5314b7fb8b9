/* clearwall.policy._nameindex: the matcher's fast "is any listed name the query or one of
 * its ancestors?" test, over keyed 64-bit fingerprints kept as 32-bit remainders.
 *
 * Why this exists: marisa-trie's prefix search costs about 2 us per query from Python
 * (it builds a list of strings, and the query has to be reversed first), which held the
 * matcher to ~300k lookups/s. Here a lookup hashes the query and each of its parent
 * suffixes (no copy, no allocation) and looks each fingerprint up in a sorted array that
 * stays an mmap'd file, shared by every process that loads the snapshot.
 *
 * A fingerprint is SipHash-1-3 of the name's ASCII bytes under a 128-bit key chosen at
 * random when the policy is compiled, so a hostile list cannot choose names that pile up
 * in one part of the array (which would slow the search down) or that collide on
 * purpose. The index keeps only the top b + 32 bits of each (b: the directory bits,
 * below): there are no false negatives; a false positive is possible when a suffix's
 * fingerprint shares those bits with a listed name's, about (entries in its bucket) /
 * 2^32 per probe, 8 to 16 entries on average, so 2e-9 to 4e-9. The Python side never
 * trusts a match without the trie: see docs/matcher.md, "Layout and cost".
 *
 * Only ASCII names of at most MAX_NAME characters are indexed or looked up: that covers
 * every canonical name (policy.names). Other input raises ValueError and the caller takes
 * the authoritative path instead.
 *
 * The index image (built by build(), saved as one file, native byte order):
 *
 *   header   64 bytes: MAGIC, count n, directory bits b (0..32), then zeros
 *   rems     n uint32 remainders: bits 63-b .. 32-b of each fingerprint, that is the 32
 *            bits right below the b that pick its bucket ("quotienting": the bucket
 *            stores those top b bits once). Sorted within each bucket, buckets in order,
 *            so the whole array is sorted by fingerprint; equal remainders in a bucket
 *            are kept once (the index answers "maybe listed", not how many)
 *   dir      2^b + 1 uint32: dir[i] = how many remainders are in buckets < i
 *
 * Four bytes per name plus the directory (about n/8 to n/16 buckets, a quarter to half
 * a byte per name): half the pages of whole 64-bit fingerprints, which matters because a
 * busy server keeps the whole array resident. A lookup is one directory read, usually
 * cached, and an interpolation search inside one bucket of 8 to 16 remainders (they are
 * as evenly spread over 32 bits as fingerprints are over 64), which usually lands in the
 * right cache line. Simulated over a million random fingerprints (half hits, half
 * misses), plain interpolation search over the whole array touched 5.6 cache lines per
 * lookup, this search over 64-bit fingerprints 1.16 to 1.18, and over 32-bit remainders
 * 1.08 to 1.09 (more of a bucket fits in one 64-byte line).
 *
 * The module also holds the hot path of PolicySnapshot.match (NameMatcher, a base class
 * the snapshot extends) and the memos it reads (Memo): see their sections below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "structmember.h"

/* Longest name the index answers for: a canonical name has at most 253 characters. */
#define MAX_NAME 253
#define KEY_SIZE 16
/* CWNAMEX1 was the earlier layout of whole 64-bit fingerprints: rejected as "not a name
 * index image", and the snapshot's format number says to recompile. */
#define MAGIC "CWNAMEX2"
#define HEADER_SIZE 64
/* Bits of a fingerprint kept per entry, right below the directory bits: a uint32_t. */
#define REM_BITS 32
#define REM_SPAN 4294967296.0 /* 2^REM_BITS: the values a remainder spans */
_Static_assert(REM_BITS == 8 * sizeof(uint32_t), "remainders are stored as uint32_t");
/* Buckets hold 8 to 16 fingerprints on average (fewer buckets for small indexes). */
#define BUCKET_MIN 8
/* Bounds on the search inside a bucket, whatever the data: interpolation probes, then a
 * short linear walk once the guess is close, then bisection of what is left. */
#define INTERPOLATION_STEPS 3
#define WALK 4

#include "_siphash.h"

/* The two 64-bit key words of a 16-byte key; -1 with an exception set on a bad key. */
static int
parse_key(PyObject *key, uint64_t *k0, uint64_t *k1)
{
    Py_buffer view;
    if (PyObject_GetBuffer(key, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view.len != KEY_SIZE) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "fingerprint key must be %d bytes", KEY_SIZE);
        return -1;
    }
    *k0 = load_le64((const unsigned char *)view.buf);
    *k1 = load_le64((const unsigned char *)view.buf + 8);
    PyBuffer_Release(&view);
    return 0;
}

/* -- the index image and its search ------------------------------------------------- */

typedef struct {
    const uint32_t *rems;
    const uint32_t *dir;
    Py_ssize_t n;
    unsigned bits; /* directory bits, 0..32: bits + REM_BITS <= 64 */
} Image;

/* Parse and check an image of len bytes; -1 with ValueError set if it is not one. Only
 * the header and the total length are read: loading stays O(1). The directory is not
 * checked (that would read all of it): searches clamp what it says to [0, n). */
static int
parse_image(const unsigned char *buf, Py_ssize_t len, Image *image)
{
    uint64_t n, bits;
    if (((uintptr_t)buf & 7) != 0 || len < HEADER_SIZE || memcmp(buf, MAGIC, 8) != 0) {
        PyErr_SetString(PyExc_ValueError, "not a name index image");
        return -1;
    }
    memcpy(&n, buf + 8, 8);
    memcpy(&bits, buf + 16, 8);
    if (bits > 64 - REM_BITS || n > UINT32_MAX ||
        (uint64_t)len != HEADER_SIZE + 4 * n + 4 * (((uint64_t)1 << bits) + 1)) {
        PyErr_SetString(PyExc_ValueError, "name index image has a bad size");
        return -1;
    }
    image->rems = (const uint32_t *)(buf + HEADER_SIZE);
    image->dir = (const uint32_t *)(buf + HEADER_SIZE + 4 * n);
    image->n = (Py_ssize_t)n;
    image->bits = (unsigned)bits;
    return 0;
}

/* The bucket of a fingerprint: its top bits bits (bits is at most 32). */
static inline size_t
bucket_index(unsigned bits, uint64_t fp)
{
    return bits ? (size_t)(fp >> (64 - bits)) : 0;
}

/* What the image keeps of a fingerprint: the REM_BITS bits below its top bits bits. */
static inline uint32_t
remainder_of(unsigned bits, uint64_t fp)
{
    return (uint32_t)((fp << bits) >> (64 - REM_BITS));
}

/* A search for one fingerprint, in two halves so that a caller can start the searches
 * of all of a name's suffixes (and have their memory fetched in parallel) before it
 * finishes any: start reads the directory and guesses a position, finish searches. */
typedef struct {
    uint64_t fp;       /* the fingerprint looked up */
    uint32_t x;        /* its remainder, looked for in rems[lo..hi] */
    Py_ssize_t lo, hi; /* if x is present, it is in rems[lo..hi] (x's bucket) */
    Py_ssize_t p;      /* the next position to probe */
    double density;    /* remainders per unit of value in x's bucket */
} Search;

#if defined(__GNUC__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)(address))
#endif

static inline const uint32_t *
bucket_of(const Image *image, uint64_t fp)
{
    return image->dir + bucket_index(image->bits, fp);
}

static void
search_start(const Image *image, uint64_t fp, Search *search)
{
    const uint32_t *bucket = bucket_of(image, fp);
    Py_ssize_t lo = bucket[0], hi = (Py_ssize_t)bucket[1] - 1;
    uint32_t x = remainder_of(image->bits, fp);

    if (hi >= image->n)
        hi = image->n - 1;
    search->fp = fp;
    search->x = x;
    search->lo = lo;
    search->hi = hi;
    if (lo > hi) { /* an empty bucket: finish has nothing to do */
        search->p = 0;
        search->density = 0;
        return;
    }
    /* remainders span 2^32: guess as if the bucket's were evenly spread */
    search->density = (double)(hi - lo + 1) / REM_SPAN;
    search->p = lo + (Py_ssize_t)((double)x * search->density);
    if (search->p > hi)
        search->p = hi;
}

/* 1 when the search's remainder is in its bucket, else 0. Bounded and memory-safe even
 * on damaged data: it reads only rems[lo..hi] within rems[0..n), at most
 * INTERPOLATION_STEPS + 2 * WALK + log2(n) of them. */
static int
search_finish(const Image *image, Search *search)
{
    const uint32_t *a = image->rems;
    uint32_t x = search->x;
    Py_ssize_t lo = search->lo, hi = search->hi, p = search->p;
    double density = search->density;
    int step;

    if (lo > hi)
        return 0;
    for (step = 0; step < INTERPOLATION_STEPS; step++) {
        uint32_t v = a[p];
        double gap;
        if (v == x)
            return 1;
        if (v < x) {
            lo = p + 1;
            gap = (double)(x - v) * density;
        } else {
            hi = p - 1;
            gap = -(double)(v - x) * density;
        }
        if (lo > hi)
            return 0;
        if (gap > -WALK && gap < WALK) { /* close: walk towards x */
            int walked;
            if (v < x) {
                for (walked = 0; walked < 2 * WALK && lo <= hi; walked++, lo++)
                    if (a[lo] >= x)
                        return a[lo] == x;
            } else {
                for (walked = 0; walked < 2 * WALK && lo <= hi; walked++, hi--)
                    if (a[hi] <= x)
                        return a[hi] == x;
            }
            break;
        }
        /* jump by the expected distance, staying inside [lo, hi] (in floating point, so
         * that even a wild gap cannot overflow) */
        gap += (double)p;
        p = gap <= (double)lo ? lo : gap >= (double)hi ? hi : (Py_ssize_t)gap;
    }
    while (lo <= hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        uint32_t v = a[mid];
        if (v == x)
            return 1;
        if (v < x)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

/* -- the NameIndex type --------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_buffer view; /* the image; holding the export keeps an mmap alive and open */
    int has_view;
    Image image;
    uint64_t k0, k1;
} NameIndex;

static void
NameIndex_dealloc(NameIndex *self)
{
    if (self->has_view)
        PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
NameIndex_init(NameIndex *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"image", "key", NULL};
    PyObject *buffer, *key;
    Py_buffer view;
    Image image;
    uint64_t k0, k1;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:NameIndex", kwlist, &buffer, &key))
        return -1;
    if (parse_key(key, &k0, &k1) < 0)
        return -1;
    if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (parse_image((const unsigned char *)view.buf, view.len, &image) < 0) {
        PyBuffer_Release(&view);
        return -1;
    }
    if (self->has_view) /* __init__ called again */
        PyBuffer_Release(&self->view);
    self->view = view;
    self->has_view = 1;
    self->image = image;
    self->k0 = k0;
    self->k1 = k1;
    return 0;
}

/* The offset of the deepest indexed suffix of an ASCII name, -1 if none. Suffixes are
 * taken in batches, deepest first: the directory entries and first probes of a batch are
 * prefetched together, so a miss or a subdomain hit waits for memory about once, not
 * once per suffix. */
#define BATCH 16

static Py_ssize_t
deepest_offset(const NameIndex *self, const unsigned char *data, Py_ssize_t len,
               uint64_t *matched)
{
    const Image *image = &self->image;
    Search searches[BATCH];
    Py_ssize_t starts[BATCH];
    Py_ssize_t start = 0; /* the next suffix to look up; -1 once the last one was taken */
    int count, i;

    if (image->n == 0)
        return -1;
    while (start >= 0) {
        for (count = 0; count < BATCH && start >= 0; count++) {
            uint64_t fp = siphash13(self->k0, self->k1, data + start, (size_t)(len - start));
            const unsigned char *dot = memchr(data + start, '.', (size_t)(len - start));
            PREFETCH(bucket_of(image, fp));
            starts[count] = start;
            searches[count].fp = fp;
            start = dot == NULL ? -1 : dot - data + 1;
        }
        for (i = 0; i < count; i++) {
            search_start(image, searches[i].fp, &searches[i]);
            PREFETCH(&image->rems[searches[i].p]);
        }
        for (i = 0; i < count; i++)
            if (search_finish(image, &searches[i])) {
                *matched = searches[i].fp;
                return starts[i];
            }
    }
    return -1;
}

/* The ASCII bytes of a str argument, or NULL with TypeError/ValueError set. */
static const unsigned char *
ascii_name(PyObject *name, Py_ssize_t *len)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(name) < 0)
        return NULL;
#endif
    if (!PyUnicode_IS_ASCII(name)) {
        PyErr_SetString(PyExc_ValueError, "name is not ASCII");
        return NULL;
    }
    *len = PyUnicode_GET_LENGTH(name);
    if (*len > MAX_NAME) {
        PyErr_Format(PyExc_ValueError, "name longer than %d characters", MAX_NAME);
        return NULL;
    }
    return PyUnicode_1BYTE_DATA(name);
}

static PyObject *
NameIndex_deepest(NameIndex *self, PyObject *name)
{
    Py_ssize_t len;
    uint64_t matched;
    const unsigned char *data = ascii_name(name, &len);
    if (data == NULL)
        return NULL;
    return PyLong_FromSsize_t(deepest_offset(self, data, len, &matched));
}

static Py_ssize_t
NameIndex_len(NameIndex *self)
{
    return self->image.n;
}

static PyMethodDef NameIndex_methods[] = {
    {"deepest", (PyCFunction)NameIndex_deepest, METH_O,
     "deepest(name, /)\n--\n\n"
     "The offset in name of its deepest suffix whose fingerprint is indexed (0: the whole\n"
     "name), or -1. Suffixes are the name and what follows each of its dots."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods NameIndex_as_sequence = {
    .sq_length = (lenfunc)NameIndex_len,
};

static PyTypeObject NameIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.policy._nameindex.NameIndex",
    .tp_doc = PyDoc_STR(
        "NameIndex(image, key)\n--\n\n"
        "The index in image (any buffer, e.g. an mmap: kept exported, never copied),\n"
        "whose fingerprints were made with the 16-byte key."),
    .tp_basicsize = sizeof(NameIndex),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)NameIndex_init,
    .tp_dealloc = (destructor)NameIndex_dealloc,
    .tp_methods = NameIndex_methods,
    .tp_as_sequence = &NameIndex_as_sequence,
};

/* -- Memo: verdicts keyed by listed names -------------------------------------------
 *
 * A str -> object map for the matcher's memos. A dict would do, but on the hot path it
 * costs a substring allocation, a str hash and a probe of its index array before the
 * entry; here the slot comes from the fingerprint deepest() has just computed, and the
 * entry is then checked against the real name, byte for byte. Keys are compared as
 * strings, never as fingerprints: an entry is only found for the very name it was
 * stored under. Linear probing, at most half full, no deletion but clear().
 */

typedef struct {
    uint64_t fp;     /* fingerprint of the key's UTF-8 bytes under the index key */
    PyObject *key;   /* str; NULL: an empty slot */
    PyObject *value;
} MemoEntry;

typedef struct {
    PyObject_HEAD
    MemoEntry *table;
    size_t mask; /* capacity - 1; capacity is a power of two */
    Py_ssize_t used;
    uint64_t k0, k1;
} Memo;

#define MEMO_MIN_CAPACITY 8

static PyTypeObject MemoType;

/* The entry stored under the name whose UTF-8 bytes are data[0..len) and fingerprint fp
 * (same, an object that may be that very str, skips the comparison), or NULL. */
static inline MemoEntry *
memo_find(const Memo *memo, uint64_t fp, const char *data, Py_ssize_t len, PyObject *same)
{
    size_t i = (size_t)fp & memo->mask;
    for (;;) {
        MemoEntry *entry = &memo->table[i];
        if (entry->key == NULL)
            return NULL;
        if (entry->fp == fp) {
            if (entry->key == same)
                return entry;
            /* Keys are stored only if their UTF-8 form exists, and it is cached: for an
             * ASCII str it is the str's own data. */
            if (PyUnicode_IS_COMPACT_ASCII(entry->key)) {
                if (PyUnicode_GET_LENGTH(entry->key) == len &&
                    memcmp(PyUnicode_1BYTE_DATA(entry->key), data, (size_t)len) == 0)
                    return entry;
            } else {
                Py_ssize_t size;
                const char *utf8 = PyUnicode_AsUTF8AndSize(entry->key, &size);
                if (utf8 != NULL && size == len && memcmp(utf8, data, (size_t)len) == 0)
                    return entry;
            }
        }
        i = (i + 1) & memo->mask;
    }
}

static int
memo_alloc(Memo *memo, size_t capacity)
{
    MemoEntry *table = PyMem_Calloc(capacity, sizeof(MemoEntry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memo->table = table;
    memo->mask = capacity - 1;
    memo->used = 0;
    return 0;
}

static void
memo_release(Memo *memo)
{
    MemoEntry *table = memo->table;
    size_t i, capacity = memo->mask + 1;
    memo->table = NULL;
    memo->used = 0;
    if (table == NULL)
        return;
    for (i = 0; i < capacity; i++) {
        Py_XDECREF(table[i].key);
        Py_XDECREF(table[i].value);
    }
    PyMem_Free(table);
}

static PyObject *
Memo_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"index", NULL};
    PyObject *index;
    Memo *memo;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:Memo", kwlist, &NameIndexType, &index))
        return NULL;
    memo = (Memo *)type->tp_alloc(type, 0);
    if (memo == NULL)
        return NULL;
    memo->k0 = ((NameIndex *)index)->k0;
    memo->k1 = ((NameIndex *)index)->k1;
    if (memo_alloc(memo, MEMO_MIN_CAPACITY) < 0) {
        Py_DECREF(memo);
        return NULL;
    }
    return (PyObject *)memo;
}

static int
Memo_traverse(Memo *memo, visitproc visit, void *arg)
{
    size_t i;
    for (i = 0; memo->table != NULL && i <= memo->mask; i++) {
        Py_VISIT(memo->table[i].key);
        Py_VISIT(memo->table[i].value);
    }
    return 0;
}

static int
Memo_clear_refs(Memo *memo)
{
    memo_release(memo);
    return 0;
}

static void
Memo_dealloc(Memo *memo)
{
    PyObject_GC_UnTrack(memo);
    memo_release(memo);
    Py_TYPE(memo)->tp_free((PyObject *)memo);
}

/* The UTF-8 bytes and fingerprint of a str key, or NULL with an exception set. */
static const char *
memo_key(const Memo *memo, PyObject *key, Py_ssize_t *len, uint64_t *fp)
{
    const char *data;
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "memo keys are str, not %.100s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    data = PyUnicode_AsUTF8AndSize(key, len);
    if (data != NULL)
        *fp = siphash13(memo->k0, memo->k1, (const unsigned char *)data, (size_t)*len);
    return data;
}

/* Find ``key``'s entry (NULL when absent); -1 with an exception for a key that is not str. */
static int
memo_lookup(Memo *memo, PyObject *key, MemoEntry **entry)
{
    Py_ssize_t len;
    uint64_t fp;
    const char *data = memo_key(memo, key, &len, &fp);
    if (data == NULL)
        return -1;
    *entry = memo_find(memo, fp, data, len, key);
    return 0;
}

static PyObject *
Memo_get(Memo *memo, PyObject *key)
{
    MemoEntry *entry;
    if (memo_lookup(memo, key, &entry) < 0)
        return NULL;
    return Py_NewRef(entry != NULL ? entry->value : Py_None);
}

static int
memo_grow(Memo *memo)
{
    MemoEntry *old = memo->table;
    size_t i, capacity = memo->mask + 1;
    if (memo_alloc(memo, capacity * 2) < 0) {
        memo->table = old;
        return -1;
    }
    for (i = 0; i < capacity; i++) {
        if (old[i].key != NULL) {
            size_t j = (size_t)old[i].fp & memo->mask;
            while (memo->table[j].key != NULL)
                j = (j + 1) & memo->mask;
            memo->table[j] = old[i];
            memo->used++;
        }
    }
    PyMem_Free(old);
    return 0;
}

static int
Memo_ass_subscript(Memo *memo, PyObject *key, PyObject *value)
{
    Py_ssize_t len;
    uint64_t fp;
    size_t i;
    MemoEntry *entry;
    const char *data;

    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "memo entries cannot be deleted, only cleared");
        return -1;
    }
    data = memo_key(memo, key, &len, &fp);
    if (data == NULL)
        return -1;
    if (memo->table == NULL && memo_alloc(memo, MEMO_MIN_CAPACITY) < 0)
        return -1;
    entry = memo_find(memo, fp, data, len, key);
    if (entry != NULL) {
        Py_SETREF(entry->value, Py_NewRef(value));
        return 0;
    }
    if ((size_t)(memo->used + 1) * 2 > memo->mask + 1 && memo_grow(memo) < 0)
        return -1;
    i = (size_t)fp & memo->mask;
    while (memo->table[i].key != NULL)
        i = (i + 1) & memo->mask;
    memo->table[i].fp = fp;
    memo->table[i].key = Py_NewRef(key);
    memo->table[i].value = Py_NewRef(value);
    memo->used++;
    return 0;
}

static PyObject *
Memo_subscript(Memo *memo, PyObject *key)
{
    MemoEntry *entry;
    if (memo_lookup(memo, key, &entry) < 0)
        return NULL;
    if (entry == NULL) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return Py_NewRef(entry->value);
}

static Py_ssize_t
Memo_len(Memo *memo)
{
    return memo->used;
}

static PyObject *
Memo_clear(Memo *memo, PyObject *unused)
{
    memo_release(memo);
    if (memo_alloc(memo, MEMO_MIN_CAPACITY) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Memo_keys(Memo *memo, PyObject *unused)
{
    PyObject *keys = PyList_New(0);
    size_t i;
    if (keys == NULL)
        return NULL;
    for (i = 0; memo->table != NULL && i <= memo->mask; i++) {
        if (memo->table[i].key != NULL && PyList_Append(keys, memo->table[i].key) < 0) {
            Py_DECREF(keys);
            return NULL;
        }
    }
    return keys;
}

static PyObject *
Memo_iter(Memo *memo)
{
    PyObject *keys = Memo_keys(memo, NULL), *iterator;
    if (keys == NULL)
        return NULL;
    iterator = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return iterator;
}

static PyMethodDef Memo_methods[] = {
    {"get", (PyCFunction)Memo_get, METH_O,
     "get(name, /)\n--\n\nThe value stored under name, or None."},
    {"clear", (PyCFunction)Memo_clear, METH_NOARGS, "clear($self, /)\n--\n\nForget every entry."},
    {"keys", (PyCFunction)Memo_keys, METH_NOARGS,
     "keys($self, /)\n--\n\nThe names stored, as a list."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods Memo_as_mapping = {
    .mp_length = (lenfunc)Memo_len,
    .mp_subscript = (binaryfunc)Memo_subscript,
    .mp_ass_subscript = (objobjargproc)Memo_ass_subscript,
};

static PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.policy._nameindex.Memo",
    .tp_doc = PyDoc_STR(
        "Memo(index)\n--\n\n"
        "A map from names (str) to values, slotted by the index's fingerprints: what\n"
        "NameMatcher.match reads without allocating. memo[name] = value, get, len, clear."),
    .tp_basicsize = sizeof(Memo),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Memo_new,
    .tp_dealloc = (destructor)Memo_dealloc,
    .tp_traverse = (traverseproc)Memo_traverse,
    .tp_clear = (inquiry)Memo_clear_refs,
    .tp_as_mapping = &Memo_as_mapping,
    .tp_iter = (getiterfunc)Memo_iter,
    .tp_methods = Memo_methods,
};

/* -- NameMatcher: the hot path of PolicySnapshot.match --------------------------------
 *
 * A base class that PolicySnapshot (Python) extends, so that match() is a C method of the
 * snapshot itself: a Python frame per query costs about as much as the whole lookup on
 * this path. It answers only from what it can prove: a name no index entry matches is
 * allowed, and a verdict an earlier authoritative resolution memoized under the real
 * suffix string is returned. Everything else (a memo miss, the clock outside the current
 * interval of applicable orders, a name the index does not cover) goes to the
 * subclass's _match_slow(name, jurisdiction, now), which asks the trie.
 */

typedef struct {
    PyObject_HEAD
    NameIndex *index;
    PyObject *memos;   /* dict: jurisdiction code -> (exact memo, below memo) */
    PyObject *star;    /* (exact memo, below memo) of clients of other jurisdictions */
    PyObject *allowed; /* the shared verdict for names no rule touches */
    double lo, hi;     /* the memos are valid while lo <= now < hi */
} NameMatcher;

static PyObject *str_match_slow; /* "_match_slow", interned */

static int
NameMatcher_traverse(NameMatcher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->index);
    Py_VISIT(self->memos);
    Py_VISIT(self->star);
    Py_VISIT(self->allowed);
    return 0;
}

static int
NameMatcher_clear(NameMatcher *self)
{
    Py_CLEAR(self->index);
    Py_CLEAR(self->memos);
    Py_CLEAR(self->star);
    Py_CLEAR(self->allowed);
    return 0;
}

static void
NameMatcher_dealloc(NameMatcher *self)
{
    PyObject_GC_UnTrack(self);
    NameMatcher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
is_memo_pair(PyObject *pair)
{
    return PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2 &&
           Py_IS_TYPE(PyTuple_GET_ITEM(pair, 0), &MemoType) &&
           Py_IS_TYPE(PyTuple_GET_ITEM(pair, 1), &MemoType);
}

static int
NameMatcher_init(NameMatcher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"index", "memos", "star", "allowed", NULL};
    PyObject *index, *memos, *star, *allowed;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OO:NameMatcher", kwlist, &NameIndexType,
                                     &index, &PyDict_Type, &memos, &star, &allowed))
        return -1;
    if (!is_memo_pair(star)) {
        PyErr_SetString(PyExc_TypeError, "star must be a tuple of two Memo");
        return -1;
    }
    Py_XSETREF(self->index, (NameIndex *)Py_NewRef(index));
    Py_XSETREF(self->memos, Py_NewRef(memos));
    Py_XSETREF(self->star, Py_NewRef(star));
    Py_XSETREF(self->allowed, Py_NewRef(allowed));
    self->lo = Py_HUGE_VAL; /* empty interval: the first query lets the subclass set it */
    self->hi = -Py_HUGE_VAL;
    return 0;
}

/* time.time(): the same clock (CLOCK_REALTIME), without a Python call */
static double
wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static PyObject *
match_slow(NameMatcher *self, PyObject *name, PyObject *jurisdiction, PyObject *now)
{
    PyObject *args[4] = {(PyObject *)self, name, jurisdiction, now};
    return PyObject_VectorcallMethod(str_match_slow, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

static PyObject *
NameMatcher_match(NameMatcher *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"name", "jurisdiction", "now"};
    PyObject *given[3] = {NULL, NULL, NULL};
    PyObject *name, *jurisdiction, *now, *memos;
    MemoEntry *entry;
    const unsigned char *data;
    Py_ssize_t len, cut, i, k;
    uint64_t fp;
    double t;

    /* match(name, jurisdiction, now=None), positionally or by keyword */
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "match() takes at most 3 arguments (%zd given)", nargs);
        return NULL;
    }
    for (i = 0; i < nargs; i++)
        given[i] = args[i];
    for (i = 0; kwnames != NULL && i < PyTuple_GET_SIZE(kwnames); i++) {
        PyObject *keyword = PyTuple_GET_ITEM(kwnames, i);
        for (k = 0; k < 3; k++)
            if (PyUnicode_CompareWithASCIIString(keyword, names[k]) == 0)
                break;
        if (k == 3) {
            PyErr_Format(PyExc_TypeError, "match() got an unexpected keyword argument '%U'",
                         keyword);
            return NULL;
        }
        if (given[k] != NULL) {
            PyErr_Format(PyExc_TypeError, "match() got multiple values for argument '%s'",
                         names[k]);
            return NULL;
        }
        given[k] = args[nargs + i];
    }
    name = given[0];
    jurisdiction = given[1];
    now = given[2] != NULL ? given[2] : Py_None;
    if (name == NULL || jurisdiction == NULL) {
        PyErr_SetString(PyExc_TypeError, "match() missing a required argument: "
                                         "'name' or 'jurisdiction'");
        return NULL;
    }
    if (self->index == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NameMatcher.__init__ was not called");
        return NULL;
    }

    data = ascii_name(name, &len);
    if (data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            return NULL; /* not a str */
        PyErr_Clear();   /* not ASCII or too long: not indexed, ask the trie */
        return match_slow(self, name, jurisdiction, now);
    }
    cut = deepest_offset(self->index, data, len, &fp);
    if (cut < 0) /* no false negatives: nothing listed is this name or above it */
        return Py_NewRef(self->allowed);

    if (now == Py_None) {
        t = wall_clock();
    } else {
        t = PyFloat_AsDouble(now);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (!(self->lo <= t && t < self->hi)) { /* the applicable orders must be recomputed */
        PyObject *moment = now == Py_None ? PyFloat_FromDouble(t) : Py_NewRef(now);
        PyObject *result;
        if (moment == NULL)
            return NULL;
        result = match_slow(self, name, jurisdiction, moment);
        Py_DECREF(moment);
        return result;
    }

    memos = PyDict_GetItemWithError(self->memos, jurisdiction);
    if (memos == NULL) {
        if (PyErr_Occurred())
            return NULL;
        memos = self->star;
    }
    if (!is_memo_pair(memos)) {
        PyErr_SetString(PyExc_TypeError, "memos values must be tuples of two Memo");
        return NULL;
    }
    /* Memo keys are real suffix strings that the trie confirmed, compared byte for byte:
     * a fingerprint collision may look one up here but can never find a wrong verdict. */
    entry = memo_find((Memo *)PyTuple_GET_ITEM(memos, cut ? 1 : 0), fp,
                      (const char *)data + cut, len - cut, cut ? NULL : name);
    if (entry != NULL)
        return Py_NewRef(entry->value);
    {
        PyObject *moment = now == Py_None ? PyFloat_FromDouble(t) : Py_NewRef(now);
        PyObject *result;
        if (moment == NULL)
            return NULL;
        result = match_slow(self, name, jurisdiction, moment);
        Py_DECREF(moment);
        return result;
    }
}

static PyMethodDef NameMatcher_methods[] = {
    {"match", (PyCFunction)(void (*)(void))NameMatcher_match, METH_FASTCALL | METH_KEYWORDS,
     "match($self, /, name, jurisdiction, now=None)\n--\n\n"
     "The verdict for a canonical query name (lowercase, no trailing dot) asked by a\n"
     "client of jurisdiction at now (epoch seconds, default: the clock).\n\n"
     "Names no rule touches return the shared ALLOWED without allocating a verdict; a hit\n"
     "returns the same memoized verdict object for the same matched rules."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef NameMatcher_members[] = {
    {"_lo", T_DOUBLE, offsetof(NameMatcher, lo), 0,
     "Start of the time interval the memos hold for (epoch seconds)."},
    {"_hi", T_DOUBLE, offsetof(NameMatcher, hi), 0,
     "End (excluded) of the time interval the memos hold for (epoch seconds)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject NameMatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clearwall.policy._nameindex.NameMatcher",
    .tp_doc = PyDoc_STR(
        "NameMatcher(index, memos, star, allowed)\n--\n\n"
        "The fast path of a matcher (a base class: the subclass provides _match_slow).\n"
        "memos maps a jurisdiction code to its (exact, below) verdict memos, Memo keyed\n"
        "by listed names; star is the pair for any other code."),
    .tp_basicsize = sizeof(NameMatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)NameMatcher_init,
    .tp_dealloc = (destructor)NameMatcher_dealloc,
    .tp_traverse = (traverseproc)NameMatcher_traverse,
    .tp_clear = (inquiry)NameMatcher_clear,
    .tp_methods = NameMatcher_methods,
    .tp_members = NameMatcher_members,
};

/* -- module functions ----------------------------------------------------------------- */

static PyObject *
fingerprint(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    uint64_t k0, k1, fp;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "fingerprint(data, key) takes 2 arguments");
        return NULL;
    }
    if (parse_key(args[1], &k0, &k1) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    fp = siphash13(k0, k1, (const unsigned char *)data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLongLong(fp);
}

static int
compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sort n fingerprints ascending: a least-significant-digit radix sort, eight passes of
 * one byte each through a scratch buffer (a million in about a fifth of qsort's time, a
 * tenth of a second of every whole compile); qsort when the buffer cannot be had. */
static void
sort_u64(uint64_t *a, size_t n)
{
    uint64_t *tmp = n > 1 ? malloc(n * sizeof(uint64_t)) : NULL;
    if (tmp == NULL) {
        qsort(a, n, sizeof(uint64_t), compare_u64);
        return;
    }
    uint64_t *src = a, *dst = tmp;
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[((src[i] >> shift) & 0xff) + 1]++;
        if (count[((src[0] >> shift) & 0xff) + 1] == n)
            continue; /* every key has the same byte here: nothing to move */
        for (unsigned b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 0xff]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof(uint64_t));
    free(tmp);
}

/* Fingerprints of the names in a blob of newline-terminated trie keys, into out (room for
 * one per line); returns how many. */
static Py_ssize_t
hash_keys(const unsigned char *p, const unsigned char *end, uint64_t k0, uint64_t k1,
          uint64_t *out)
{
    unsigned char name[MAX_NAME];
    Py_ssize_t count = 0;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        Py_ssize_t len, j;
        int ascii = 1;
        if (nl == NULL) /* an unterminated tail is not a key */
            break;
        /* A trie key is the name reversed after a dot: "moc.elpmaxe." for example.com. */
        len = nl - p - 1;
        if (len >= 0 && len <= MAX_NAME && p[len] == '.') {
            for (j = 0; j < len; j++) {
                unsigned char c = p[len - 1 - j];
                ascii &= c < 0x80;
                name[j] = c;
            }
            /* Names that are not ASCII or too long are never looked up here. */
            if (ascii)
                out[count++] = siphash13(k0, k1, name, (size_t)len);
        }
        p = nl + 1;
    }
    return count;
}

static PyObject *
build(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer blob;
    uint64_t k0, k1, *fps, header[HEADER_SIZE / 8] = {0};
    Py_ssize_t lines = 0, count, n, i;
    unsigned bits = 0, shift;
    uint32_t *rems, *dir;
    size_t buckets, next;
    PyObject *image;
    const unsigned char *p, *end;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "build(keys, key) takes 2 arguments");
        return NULL;
    }
    if (parse_key(args[1], &k0, &k1) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &blob, PyBUF_SIMPLE) < 0)
        return NULL;
    p = (const unsigned char *)blob.buf;
    end = p + blob.len;
    for (const unsigned char *q = p; q < end; q++)
        lines += *q == '\n';
    if ((uint64_t)lines > UINT32_MAX) {
        PyBuffer_Release(&blob);
        PyErr_SetString(PyExc_OverflowError, "too many names for one index");
        return NULL;
    }
    fps = PyMem_RawMalloc((size_t)(lines ? lines : 1) * sizeof(uint64_t));
    if (fps == NULL) {
        PyBuffer_Release(&blob);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    count = hash_keys(p, end, k0, k1, fps);
    sort_u64(fps, (size_t)count);
    for (i = 0, n = 0; i < count; i++)
        if (n == 0 || fps[i] != fps[n - 1])
            fps[n++] = fps[i];
    /* 8 to 16 distinct fingerprints per bucket. The directory bits and the remainder
     * must fit in a fingerprint: under 2^32 names want at most 29 bits, but should
     * they ever want more, the buckets just grow instead. */
    while (bits + REM_BITS < 64 && (n >> (bits + 1)) >= BUCKET_MIN)
        bits++;
    /* One entry per distinct bucket and remainder: fingerprints that agree on their top
     * bits + REM_BITS bits are one entry, the image cannot tell them apart anyway. */
    shift = 64 - bits - REM_BITS;
    for (i = 0, count = n, n = 0; i < count; i++)
        if (n == 0 || fps[i] >> shift != fps[n - 1] >> shift)
            fps[n++] = fps[i];
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&blob);

    buckets = (size_t)1 << bits;
    image = PyBytes_FromStringAndSize(
        NULL, HEADER_SIZE + n * (Py_ssize_t)sizeof(uint32_t) +
                  (Py_ssize_t)((buckets + 1) * sizeof(uint32_t)));
    if (image == NULL) {
        PyMem_RawFree(fps);
        return NULL;
    }
    memcpy(header, MAGIC, 8);
    header[1] = (uint64_t)n;
    header[2] = bits;
    memcpy(PyBytes_AS_STRING(image), header, HEADER_SIZE);
    rems = (uint32_t *)(PyBytes_AS_STRING(image) + HEADER_SIZE);
    dir = rems + n;
    for (i = 0, next = 0; i < n; i++) {
        size_t bucket = bucket_index(bits, fps[i]);
        rems[i] = remainder_of(bits, fps[i]);
        while (next <= bucket)
            dir[next++] = (uint32_t)i;
    }
    while (next <= buckets)
        dir[next++] = (uint32_t)n;
    PyMem_RawFree(fps);
    return image;
}

static PyMethodDef module_methods[] = {
    {"fingerprint", (PyCFunction)(void (*)(void))fingerprint, METH_FASTCALL,
     "fingerprint(data, key, /)\n--\n\n"
     "SipHash-1-3 of the bytes data under the 16-byte key, as an unsigned 64-bit int."},
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL,
     "build(keys, key, /)\n--\n\n"
     "The index image (bytes) of the names in keys: newline-terminated trie keys, each a\n"
     "name reversed after a dot, duplicates allowed. Names that are not ASCII or longer\n"
     "than MAX_NAME are left out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clearwall.policy._nameindex",
    .m_doc = "Keyed 64-bit fingerprints of names and the sorted index of them (32 bits kept per\n"
             "name) that the matcher asks first.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__nameindex(void)
{
    PyObject *module;
    if (PyType_Ready(&NameIndexType) < 0 || PyType_Ready(&MemoType) < 0 ||
        PyType_Ready(&NameMatcherType) < 0)
        return NULL;
    if (str_match_slow == NULL) {
        str_match_slow = PyUnicode_InternFromString("_match_slow");
        if (str_match_slow == NULL)
            return NULL;
    }
    module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "MAX_NAME", MAX_NAME) < 0 ||
        PyModule_AddIntConstant(module, "KEY_SIZE", KEY_SIZE) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "NameIndex", (PyObject *)&NameIndexType) < 0 ||
        PyModule_AddObjectRef(module, "Memo", (PyObject *)&MemoType) < 0 ||
        PyModule_AddObjectRef(module, "NameMatcher", (PyObject *)&NameMatcherType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
