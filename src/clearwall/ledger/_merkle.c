/* The Merkle Tree Hash (RFC 9162 section 2.1.1) of a list of entries, in C over
 * OpenSSL's SHA-256: the rules digest every compile checks against the log.
 *
 * merkle.merkle_root in Python spends most of its time building a bytes object per leaf
 * and per node (about 0.6 s over a million rule lines); this computes the same root
 * level by level in one buffer of 32-byte hashes, without the GIL once the leaves are
 * hashed. merkle.merkle_root stays the reference (tests/ledger/test_merkle_c.py).
 *
 * text_root does the same over the lines of one text (an order's values as the store
 * reads them, one a line) with a prefix and a suffix common to every line: no bytes
 * object per line at all. merkle.text_root_reference is what it equals.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* The low-level SHA-256 calls (deprecated in OpenSSL 3 in favour of EVP): EVP's
 * per-digest set-up costs more than hashing a 40-byte rule line, about 270 ns a hash
 * against 60 here. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>

#define HASH 32

static void digest(unsigned char prefix, const void *a, size_t alen, const void *b,
                   size_t blen, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &prefix, 1);
    SHA256_Update(&ctx, a, alen);
    if (blen)
        SHA256_Update(&ctx, b, blen);
    SHA256_Final(out, &ctx);
}

/* The tree's root over the 32-byte leaf hashes in level[0..n) (n >= 1), in place. */
static void reduce_levels(unsigned char *level, size_t n) {
    /* Adjacent pairs hashed, an odd last node carried up as it is: the RFC's split at
     * the largest power of two below n, as merkle.merkle_root computes it. Node i of the
     * next level overwrites node i of this one only after nodes 2i and 2i+1 were read. */
    for (size_t width = n; width > 1; width = (width + 1) / 2) {
        size_t pairs = width / 2;
        unsigned char node[HASH];
        for (size_t i = 0; i < pairs; i++) {
            digest(1, level + 2 * i * HASH, HASH, level + (2 * i + 1) * HASH, HASH, node);
            memcpy(level + i * HASH, node, HASH);
        }
        if (width & 1)
            memmove(level + pairs * HASH, level + (width - 1) * HASH, HASH);
    }
}

/* root(entries: list[bytes] | tuple[bytes, ...]) -> bytes: the tree's 32-byte root. */
static PyObject *merkle_root(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "entries must be a list or tuple of bytes");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    unsigned char *level = PyMem_RawMalloc((size_t)(n > 0 ? n : 1) * HASH);
    PyObject *result = NULL;
    if (level == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (n == 0) {
        /* The empty tree's hash is SHA-256 of nothing, without a prefix byte. */
        SHA256((const unsigned char *)"", 0, level);
        result = PyBytes_FromStringAndSize((const char *)level, HASH);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "entry %zd is not bytes", i);
            goto done;
        }
        digest(0, PyBytes_AS_STRING(items[i]), (size_t)PyBytes_GET_SIZE(items[i]), NULL, 0,
               level + (size_t)i * HASH);
    }
    Py_BEGIN_ALLOW_THREADS
    reduce_levels(level, (size_t)n);
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)level, HASH);
done:
    PyMem_RawFree(level);
    Py_DECREF(seq);
    return result;
}

/* Bytewise order of the lines a+suffix and b+suffix (the common prefix left out):
 * negative, zero or positive as memcmp. A value may hold bytes that sort below the
 * suffix's (a space), so the values alone do not give the lines' order. */
static int line_cmp(const char *a, size_t alen, const char *b, size_t blen, const char *suffix,
                    size_t slen) {
    size_t common = alen < blen ? alen : blen;
    int c = memcmp(a, b, common);
    if (c != 0 || alen == blen)
        return c;
    /* One value is a prefix of the other: the shorter one's line goes on with the
     * suffix, the longer one's with the rest of its value, then the suffix. */
    const char *longer = alen > blen ? a : b;
    size_t rest = (alen > blen ? alen : blen) - common;
    const char *tail = longer + common;
    /* Compare suffix (shorter line) against tail + suffix (longer line), byte by byte
     * over the virtual concatenation: lines are short (a name is at most 255 octets). */
    size_t total_long = rest + slen;
    size_t i = 0;
    for (; i < slen && i < total_long; i++) {
        unsigned char x = (unsigned char)suffix[i];
        unsigned char y = (unsigned char)(i < rest ? tail[i] : suffix[i - rest]);
        if (x != y) {
            c = (int)x - (int)y;
            break;
        }
    }
    if (c == 0) /* the shorter line is a prefix of the longer one: it sorts first */
        c = slen < total_long ? -1 : (slen > total_long ? 1 : 0);
    return alen < blen ? c : -c;
}

/* text_root(text: str, prefix: bytes, suffix: bytes) -> bytes | None: the Merkle Tree
 * Hash over the lines prefix + value + suffix, one per newline-separated value of text,
 * or None when text is not ASCII or its lines are not in strictly ascending bytewise
 * order (the caller then sorts and de-duplicates them itself). */
static PyObject *text_root(PyObject *self, PyObject *args) {
    PyObject *text;
    Py_buffer prefix, suffix;
    if (!PyArg_ParseTuple(args, "Uy*y*", &text, &prefix, &suffix))
        return NULL;
    PyObject *result = NULL;
    unsigned char *level = NULL;
    if (!PyUnicode_IS_ASCII(text)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    const char *data = (const char *)PyUnicode_DATA(text);
    size_t size = (size_t)PyUnicode_GET_LENGTH(text);
    size_t n = 1;
    for (const char *p = data; (p = memchr(p, '\n', size - (size_t)(p - data))) != NULL; p++)
        n++;
    level = PyMem_RawMalloc(n * HASH);
    if (level == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const char *pre = prefix.buf, *suf = suffix.buf;
    size_t plen = (size_t)prefix.len, slen = (size_t)suffix.len;
    int ordered = 1;
    Py_BEGIN_ALLOW_THREADS
    const char *start = data, *end = data + size, *last = NULL;
    size_t last_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *nl = memchr(start, '\n', (size_t)(end - start));
        size_t len = (size_t)((nl ? nl : end) - start);
        if (last != NULL && line_cmp(last, last_len, start, len, suf, slen) >= 0) {
            ordered = 0;
            break;
        }
        SHA256_CTX ctx;
        unsigned char zero = 0;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &zero, 1);
        SHA256_Update(&ctx, pre, plen);
        SHA256_Update(&ctx, start, len);
        SHA256_Update(&ctx, suf, slen);
        SHA256_Final(level + i * HASH, &ctx);
        last = start;
        last_len = len;
        start = nl ? nl + 1 : end;
    }
    if (ordered)
        reduce_levels(level, n);
    Py_END_ALLOW_THREADS
    if (ordered)
        result = PyBytes_FromStringAndSize((const char *)level, HASH);
    else
        result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(level);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&suffix);
    return result;
}

static PyMethodDef methods[] = {
    {"merkle_root", merkle_root, METH_O,
     "merkle_root(entries) -> bytes: the RFC 9162 Merkle Tree Hash of a list of bytes."},
    {"text_root", text_root, METH_VARARGS,
     "text_root(text, prefix, suffix) -> bytes | None: the Merkle Tree Hash over the lines "
     "prefix + value + suffix of text's newline-separated values; None when text is not "
     "ASCII or its lines are not strictly ascending."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_merkle", "RFC 9162 Merkle Tree Hash over OpenSSL's SHA-256.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__merkle(void) { return PyModule_Create(&module); }
