/* Batched UDP I/O for the DNS listener: recvmmsg(2) in, sendmmsg(2) out.
 *
 * Why C: on this hot path the kernel costs ~4.5 us per datagram with batches of 32,
 * and the same loop written in Python (ctypes calls, memoryview slicing, per-slot
 * bookkeeping) added ~3 us on top (bench/dns.py, tests in tests/dnsserver). This module
 * does only the I/O and the bookkeeping; every decision is the chain's: each datagram
 * is handed to the chain's fast path, then to its fused miss path (_forward.c), and to
 * the general path when both decline. tests/dnsserver/test_udp_batch.py holds it byte-for-byte to the plain
 * datagram transport.
 *
 * Replies are sent from the reply bytes objects themselves (no copy): the iovec points
 * into each object, which is kept referenced until sendmmsg returns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* recvmmsg, sendmmsg */
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef __linux__
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define SLOT 65536          /* no UDP payload is larger: nothing is ever truncated */
#define ROUNDS 4            /* batches per wake-up before yielding to the event loop */
#define HOST_MEMO_MAX 65536 /* client address -> host text entries before a reset */

typedef struct {
    PyObject_HEAD
    int fd;
    int batch;
    int v6;
    socklen_t namesize;
    char *rx;                      /* batch * SLOT bytes, anonymous mapping */
    struct sockaddr_storage *names; /* one per slot */
    struct iovec *rx_iov;
    struct mmsghdr *rx_hdr;
    struct iovec *tx_iov;
    struct mmsghdr *tx_hdr;
    PyObject **tx_keep;            /* reply objects referenced until sent */
    PyObject *hosts;               /* dict: raw address bytes -> host str */
} Batch;

static void
batch_free_buffers(Batch *self)
{
    if (self->rx != NULL && self->rx != MAP_FAILED)
        munmap(self->rx, (size_t)self->batch * SLOT);
    self->rx = NULL;
    PyMem_Free(self->names);
    PyMem_Free(self->rx_iov);
    PyMem_Free(self->rx_hdr);
    PyMem_Free(self->tx_iov);
    PyMem_Free(self->tx_hdr);
    PyMem_Free(self->tx_keep);
    self->names = NULL;
    self->rx_iov = self->tx_iov = NULL;
    self->rx_hdr = self->tx_hdr = NULL;
    self->tx_keep = NULL;
}

static void
batch_dealloc(Batch *self)
{
    batch_free_buffers(self);
    Py_CLEAR(self->hosts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
batch_init(Batch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "batch", "v6", NULL};
    int fd, batch, v6;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iip", kwlist, &fd, &batch, &v6))
        return -1;
    if (fd < 0 || batch < 1 || batch > 1024) {
        PyErr_SetString(PyExc_ValueError, "need fd >= 0 and 1 <= batch <= 1024");
        return -1;
    }
    batch_free_buffers(self);
    self->fd = fd;
    self->batch = batch;
    self->v6 = v6;
    self->namesize = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    self->rx = mmap(NULL, (size_t)batch * SLOT, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    self->names = PyMem_Calloc(batch, sizeof(struct sockaddr_storage));
    self->rx_iov = PyMem_Calloc(batch, sizeof(struct iovec));
    self->rx_hdr = PyMem_Calloc(batch, sizeof(struct mmsghdr));
    self->tx_iov = PyMem_Calloc(batch, sizeof(struct iovec));
    self->tx_hdr = PyMem_Calloc(batch, sizeof(struct mmsghdr));
    self->tx_keep = PyMem_Calloc(batch, sizeof(PyObject *));
    if (self->rx == MAP_FAILED || !self->names || !self->rx_iov || !self->rx_hdr ||
        !self->tx_iov || !self->tx_hdr || !self->tx_keep) {
        batch_free_buffers(self);
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < batch; i++) {
        self->rx_iov[i].iov_base = self->rx + (size_t)i * SLOT;
        self->rx_iov[i].iov_len = SLOT;
        self->rx_hdr[i].msg_hdr.msg_iov = &self->rx_iov[i];
        self->rx_hdr[i].msg_hdr.msg_iovlen = 1;
        self->tx_hdr[i].msg_hdr.msg_iov = &self->tx_iov[i];
        self->tx_hdr[i].msg_hdr.msg_iovlen = 1;
    }
    Py_XSETREF(self->hosts, PyDict_New());
    return self->hosts == NULL ? -1 : 0;
}

/* The client's address as the text the datagram transport gives ("192.0.2.1", "2001:db8::1",
 * "fe80::1%eth0" for a scoped address), memoized per raw address. New reference. */
static PyObject *
host_of(Batch *self, const struct sockaddr_storage *name)
{
    const char *raw;
    Py_ssize_t rawlen;
    if (self->v6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
        raw = (const char *)&a->sin6_addr; /* address and the scope id that follows it */
        rawlen = (Py_ssize_t)(sizeof a->sin6_addr);
        if (a->sin6_scope_id)
            rawlen = (Py_ssize_t)((const char *)(&a->sin6_scope_id + 1) - raw);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)name;
        raw = (const char *)&a->sin_addr;
        rawlen = (Py_ssize_t)sizeof a->sin_addr;
    }
    PyObject *key = PyBytes_FromStringAndSize(raw, rawlen);
    if (key == NULL)
        return NULL;
    PyObject *host = PyDict_GetItemWithError(self->hosts, key);
    if (host != NULL) {
        Py_DECREF(key);
        Py_INCREF(host);
        return host;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    char text[NI_MAXHOST];
    if (self->v6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
        if (a->sin6_scope_id) {
            struct sockaddr_in6 copy = *a;
            copy.sin6_port = 0;
            if (getnameinfo((struct sockaddr *)&copy, sizeof copy, text, sizeof text, NULL, 0,
                            NI_NUMERICHOST | NI_NUMERICSERV) != 0)
                inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        } else {
            inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        }
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)name)->sin_addr, text, sizeof text);
    }
    host = PyUnicode_FromString(text);
    if (host == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (PyDict_GET_SIZE(self->hosts) >= HOST_MEMO_MAX)
        PyDict_Clear(self->hosts);
    if (PyDict_SetItem(self->hosts, key, host) < 0) {
        Py_DECREF(key);
        Py_DECREF(host);
        return NULL;
    }
    Py_DECREF(key);
    return host;
}

static int
client_port(Batch *self, const struct sockaddr_storage *name)
{
    if (self->v6)
        return ntohs(((const struct sockaddr_in6 *)name)->sin6_port);
    return ntohs(((const struct sockaddr_in *)name)->sin_port);
}

/* Hand the current exception to on_error(exc, where); an error there is printed. */
static void
report(PyObject *on_error, const char *where)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    if (type == NULL)
        return;
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL)
        PyException_SetTraceback(exc, tb);
    PyObject *res = PyObject_CallFunction(on_error, "Os", exc ? exc : Py_None, where);
    if (res == NULL)
        PyErr_Print();
    Py_XDECREF(res);
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
}

/* Send tx slots 0..k-1: sendmmsg while it takes them, then one sendto each for the rest
 * (EAGAIN or an error part-way); a reply that cannot go is dropped, as UDP may be. */
static void
flush(Batch *self, int k)
{
    int sent = 0;
    while (sent < k) {
        int m = sendmmsg(self->fd, self->tx_hdr + sent, (unsigned)(k - sent), MSG_DONTWAIT);
        if (m <= 0)
            break;
        sent += m;
    }
    for (int j = sent; j < k; j++) {
        struct msghdr *h = &self->tx_hdr[j].msg_hdr;
        (void)sendto(self->fd, h->msg_iov->iov_base, h->msg_iov->iov_len, MSG_DONTWAIT,
                     (struct sockaddr *)h->msg_name, h->msg_namelen);
    }
    for (int j = 0; j < k; j++)
        Py_CLEAR(self->tx_keep[j]);
}

static PyObject *
batch_serve(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "serve(fast, miss, general, on_error) takes 4 arguments");
        return NULL;
    }
    PyObject *fast = args[0], *miss = args[1], *general = args[2], *on_error = args[3];
    if (self->rx == NULL) {
        PyErr_SetString(PyExc_ValueError, "Batch is not initialised");
        return NULL;
    }
    long total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < self->batch; i++) {
            struct msghdr *h = &self->rx_hdr[i].msg_hdr;
            h->msg_name = &self->names[i];
            h->msg_namelen = self->namesize;
            h->msg_control = NULL;
            h->msg_controllen = 0;
            h->msg_flags = 0;
        }
        int n = recvmmsg(self->fd, self->rx_hdr, (unsigned)self->batch, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                continue; /* e.g. ECONNREFUSED queued by ICMP for an earlier reply */
            break;
        }
        total += n;
        int k = 0;
        for (int i = 0; i < n; i++) {
            const struct sockaddr_storage *name = &self->names[i];
            PyObject *query = PyBytes_FromStringAndSize(self->rx_iov[i].iov_base,
                                                        (Py_ssize_t)self->rx_hdr[i].msg_len);
            if (query == NULL) {
                report(on_error, "datagram");
                continue;
            }
            PyObject *host = host_of(self, name);
            if (host == NULL) {
                Py_DECREF(query);
                report(on_error, "client address");
                continue;
            }
            PyObject *out = NULL;
            if (fast != Py_None) {
                PyObject *call[2] = {query, host};
                out = PyObject_Vectorcall(fast, call, 2, NULL);
                if (out == NULL)
                    report(on_error, "fast path");
            }
            if (out == NULL || out == Py_None) {
                Py_XDECREF(out);
                out = NULL;
                PyObject *raw = PyBytes_FromStringAndSize((const char *)name,
                                                          (Py_ssize_t)self->namesize);
                int taken = 0;
                if (raw != NULL && miss != Py_None) {
                    /* The fused miss path: True when it took the query (its reply is
                     * sent from this socket later), None when the chain must answer. */
                    PyObject *fd = PyLong_FromLong(self->fd);
                    PyObject *result = NULL;
                    if (fd != NULL) {
                        PyObject *call[4] = {query, host, raw, fd};
                        result = PyObject_Vectorcall(miss, call, 4, NULL);
                    }
                    Py_XDECREF(fd);
                    if (result == NULL)
                        report(on_error, "miss path");
                    taken = result == Py_True;
                    Py_XDECREF(result);
                }
                if (!taken) {
                    PyObject *port = PyLong_FromLong(client_port(self, name));
                    if (port != NULL && raw != NULL) {
                        PyObject *call[4] = {query, host, port, raw};
                        out = PyObject_Vectorcall(general, call, 4, NULL);
                    }
                    Py_XDECREF(port);
                    if (out == NULL)
                        report(on_error, "general path");
                }
                else
                    out = Py_NewRef(Py_None);
                Py_XDECREF(raw);
            }
            Py_DECREF(query);
            Py_DECREF(host);
            if (out == NULL || out == Py_None) {
                Py_XDECREF(out);
                continue;
            }
            if (!PyBytes_Check(out)) {
                Py_DECREF(out);
                PyErr_SetString(PyExc_TypeError, "a reply must be bytes");
                report(on_error, "reply");
                continue;
            }
            self->tx_keep[k] = out; /* owned until flush() */
            self->tx_iov[k].iov_base = PyBytes_AS_STRING(out);
            self->tx_iov[k].iov_len = (size_t)PyBytes_GET_SIZE(out);
            struct msghdr *t = &self->tx_hdr[k].msg_hdr;
            t->msg_name = &self->names[i];
            t->msg_namelen = self->rx_hdr[i].msg_hdr.msg_namelen;
            t->msg_control = NULL;
            t->msg_controllen = 0;
            t->msg_flags = 0;
            k++;
        }
        if (k)
            flush(self, k);
        if (n < self->batch)
            break;
    }
    return PyLong_FromLong(total);
}

static PyMethodDef batch_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))batch_serve, METH_FASTCALL,
     "serve(fast, miss, general, on_error) -> int\n\n"
     "Drain up to four batches of datagrams. Each goes to fast(query, host); when that\n"
     "returns None (or raises), to miss(query, host, sockaddr, fd), which returns True\n"
     "when it took the query (it replies later itself); otherwise (None, or miss is\n"
     "None) to general(query, host, port, sockaddr). Replies (bytes) go back with one\n"
     "sendmmsg per batch. Exceptions go to on_error(exc, where). Returns the number of\n"
     "datagrams read."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clearwall.dnsserver._udpbatch.Batch",
    .tp_doc = "recvmmsg/sendmmsg buffers for one non-blocking UDP socket.",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)batch_init,
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_methods = batch_methods,
};
#endif /* __linux__ */

static struct PyModuleDef udpbatch_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "clearwall.dnsserver._udpbatch",
    .m_doc = "Batched UDP I/O (recvmmsg/sendmmsg) for the DNS listener; Linux only.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__udpbatch(void)
{
    PyObject *m = PyModule_Create(&udpbatch_module);
    if (m == NULL)
        return NULL;
#ifdef __linux__
    if (PyType_Ready(&BatchType) < 0 || PyModule_AddType(m, &BatchType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "AVAILABLE", 1) < 0) {
#else
    if (PyModule_AddIntConstant(m, "AVAILABLE", 0) < 0) {
#endif
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
