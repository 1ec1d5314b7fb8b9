/* The DoH listener's HTTP/2 server side over libnghttp2 (the library Unbound's
 * https-port uses): frames, HPACK and flow control in C, one Python call per request.
 *
 * Session(on_request) is a sans-I/O HTTP/2 server connection. receive(data) feeds bytes
 * from the client; for every request that is complete (its END_STREAM seen) it calls
 * on_request(stream_id, method, path, content_type, body, too_long), with body None when
 * the request had no DATA and too_long true when the body passed 65535 octets (the rest
 * is dropped as it arrives) or the :path MAX_PATH (it is not kept). A stream's state is
 * thus at most a 90 KB path and a 64 KiB body, for at most MAX_STREAMS streams. respond(stream_id, status, body, max_age) queues a
 * response: :status, then for 200 content-type application/dns-message,
 * content-length and cache-control max-age, else content-length only. output() returns
 * the bytes nghttp2 has to send (frames, SETTINGS, WINDOW_UPDATE, GOAWAY) as one bytes
 * object. receive() raises ValueError on a protocol error, after queuing the GOAWAY.
 *
 * nghttp2 enforces HTTP/2 messaging (pseudo-headers, header validity, stream states,
 * flow control, SETTINGS_MAX_CONCURRENT_STREAMS); the Python side (dnsserver/doh.py)
 * decides what the request means, exactly as for the pure-Python h2 path it stands in
 * for, and tests/dnsserver/test_doh.py runs its whole battery against both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <nghttp2/nghttp2.h>
#include <string.h>

#define MAX_BODY 65535
#define MAX_STREAMS 100
/* The longest :path kept: /dns-query?dns= and a 65535-octet message in base64url
 * (87380 characters). A longer one is not copied: the request is answered 413. */
#define MAX_PATH 90000

typedef struct Stream {
    struct Stream *prev, *next; /* the session's open request streams */
    char *method;
    size_t method_len;
    char *path;
    size_t path_len;
    char *ctype;
    size_t ctype_len;
    int has_ctype;
    char *body;
    size_t body_len;
    int has_body;
    int too_long;
    PyObject *response; /* bytes being sent (kept alive until the stream closes) */
    size_t sent;
} Stream;

typedef struct {
    PyObject_HEAD
    nghttp2_session *session;
    Stream *streams; /* freed by on_stream_close, or at dealloc (nghttp2 does not call it) */
    PyObject *on_request;
    PyObject *error; /* an exception raised by on_request inside a callback */
} Session;

static void stream_free(Stream *s) {
    if (s == NULL)
        return;
    free(s->method);
    free(s->path);
    free(s->ctype);
    free(s->body);
    Py_XDECREF(s->response);
    free(s);
}

static int copy_value(char **dst, size_t *len, const uint8_t *value, size_t valuelen) {
    char *copy = malloc(valuelen ? valuelen : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, value, valuelen);
    free(*dst);
    *dst = copy;
    *len = valuelen;
    return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    Session *self = (Session *)user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    Stream *s = calloc(1, sizeof(Stream));
    if (s == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->next = self->streams;
    if (self->streams != NULL)
        self->streams->prev = s;
    self->streams = s;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
}

static void unlink_stream(Session *self, Stream *s) {
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        self->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    Stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    int rc = 0;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0)
        rc = copy_value(&s->method, &s->method_len, value, valuelen);
    else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        if (valuelen > MAX_PATH)
            s->too_long = 1;
        else
            rc = copy_value(&s->path, &s->path_len, value, valuelen);
    }
    else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        rc = copy_value(&s->ctype, &s->ctype_len, value, valuelen);
        s->has_ctype = 1;
    }
    return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user) {
    Stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL)
        return 0;
    s->has_body = 1;
    if (s->too_long)
        return 0;
    if (s->body_len + len > MAX_BODY) {
        s->too_long = 1;
        free(s->body);
        s->body = NULL;
        s->body_len = 0;
        return 0;
    }
    char *grown = realloc(s->body, s->body_len + len + 1);
    if (grown == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(grown + s->body_len, data, len);
    s->body = grown;
    s->body_len += len;
    return 0;
}

static int dispatch(Session *self, int32_t stream_id, Stream *s) {
    PyObject *method = PyBytes_FromStringAndSize(s->method ? s->method : "", s->method_len);
    PyObject *path = PyBytes_FromStringAndSize(s->path ? s->path : "", s->path_len);
    PyObject *ctype = s->has_ctype ? PyBytes_FromStringAndSize(s->ctype, s->ctype_len)
                                   : (Py_INCREF(Py_None), Py_None);
    PyObject *body = (s->has_body && !s->too_long)
                         ? PyBytes_FromStringAndSize(s->body ? s->body : "", s->body_len)
                         : (Py_INCREF(Py_None), Py_None);
    PyObject *result = NULL;
    if (self->on_request == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session closed");
    } else if (method && path && ctype && body) {
        result = PyObject_CallFunction(self->on_request, "iOOOOO", (int)stream_id, method, path,
                                       ctype, body, s->too_long ? Py_True : Py_False);
    }
    Py_XDECREF(method);
    Py_XDECREF(path);
    Py_XDECREF(ctype);
    Py_XDECREF(body);
    if (result == NULL) {
        if (self->error == NULL) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (tb != NULL)
                PyException_SetTraceback(value, tb);
            self->error = value ? value : (Py_XINCREF(type), type);
            Py_XDECREF(type);
            Py_XDECREF(tb);
        }
        PyErr_Clear();
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    Py_DECREF(result);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    Session *self = (Session *)user;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        Stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (s != NULL && s->response == NULL && s->method != NULL)
            return dispatch(self, frame->hd.stream_id, s);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user) {
    Stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s != NULL) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        unlink_stream((Session *)user, s);
        stream_free(s);
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                         void *user) {
    Stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL || s->response == NULL) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t total = (size_t)PyBytes_GET_SIZE(s->response);
    size_t n = total - s->sent;
    if (n > length)
        n = length;
    memcpy(buf, PyBytes_AS_STRING(s->response) + s->sent, n);
    s->sent += n;
    if (s->sent == total)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int Session_init(Session *self, PyObject *args, PyObject *kwds) {
    PyObject *on_request;
    if (!PyArg_ParseTuple(args, "O", &on_request))
        return -1;
    if (!PyCallable_Check(on_request)) {
        PyErr_SetString(PyExc_TypeError, "on_request must be callable");
        return -1;
    }
    if (self->session != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session already initialised");
        return -1;
    }
    Py_INCREF(on_request);
    self->on_request = on_request;
    nghttp2_session_callbacks *callbacks;
    if (nghttp2_session_callbacks_new(&callbacks) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    int rc = nghttp2_session_server_new(&self->session, callbacks, self);
    nghttp2_session_callbacks_del(callbacks);
    if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError, "nghttp2_session_server_new: %s", nghttp2_strerror(rc));
        return -1;
    }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_PATH + 8192},
    };
    rc = nghttp2_submit_settings(self->session, NGHTTP2_FLAG_NONE, settings, 2);
    if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError, "nghttp2_submit_settings: %s", nghttp2_strerror(rc));
        return -1;
    }
    return 0;
}

static int Session_traverse(Session *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_request);
    Py_VISIT(self->error);
    return 0;
}

static int Session_clear(Session *self) {
    /* on_request is usually a bound method of the connection that holds this session:
     * a cycle the collector must be able to break. */
    Py_CLEAR(self->on_request);
    Py_CLEAR(self->error);
    return 0;
}

static void Session_dealloc(Session *self) {
    PyObject_GC_UnTrack(self);
    if (self->session != NULL) {
        nghttp2_session_del(self->session);
        self->session = NULL;
    }
    while (self->streams != NULL) {
        Stream *s = self->streams;
        self->streams = s->next;
        stream_free(s);
    }
    Session_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Session_receive(Session *self, PyObject *arg) {
    Py_buffer view;
    if (self->session == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    ssize_t rc = nghttp2_session_mem_recv(self->session, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (self->error != NULL) {
        PyObject *error = self->error;
        self->error = NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
        return NULL;
    }
    if (rc < 0) {
        if (rc != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            nghttp2_session_terminate_session(self->session, NGHTTP2_PROTOCOL_ERROR);
        PyErr_Format(PyExc_ValueError, "HTTP/2: %s", nghttp2_strerror((int)rc));
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Session_respond(Session *self, PyObject *args) {
    int stream_id, status, max_age;
    PyObject *body;
    if (!PyArg_ParseTuple(args, "iiSi", &stream_id, &status, &body, &max_age))
        return NULL;
    if (self->session == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session not initialised");
        return NULL;
    }
    Stream *s = nghttp2_session_get_stream_user_data(self->session, stream_id);
    if (s == NULL || s->response != NULL)
        Py_RETURN_FALSE; /* the client reset or closed the stream meanwhile */
    char status_text[8], length_text[24], age_text[32];
    snprintf(status_text, sizeof status_text, "%d", status);
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    snprintf(length_text, sizeof length_text, "%zd", size);
    snprintf(age_text, sizeof age_text, "max-age=%d", max_age < 0 ? 0 : max_age);
#define NV(NAME, VALUE)                                                                       \
    {(uint8_t *)NAME, (uint8_t *)VALUE, sizeof(NAME) - 1, strlen(VALUE), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv ok[] = {
        NV(":status", status_text),
        NV("content-type", "application/dns-message"),
        NV("content-length", length_text),
        NV("cache-control", age_text),
    };
    nghttp2_nv other[] = {NV(":status", status_text), NV("content-length", length_text)};
#undef NV
    Py_INCREF(body);
    s->response = body;
    s->sent = 0;
    nghttp2_data_provider provider;
    provider.source.ptr = NULL;
    provider.read_callback = read_body;
    int rc = status == 200 ? nghttp2_submit_response(self->session, stream_id, ok, 4,
                                                     size ? &provider : NULL)
                           : nghttp2_submit_response(self->session, stream_id, other, 2,
                                                     size ? &provider : NULL);
    if (rc != 0)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *Session_output(Session *self, PyObject *unused) {
    if (self->session == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session not initialised");
        return NULL;
    }
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(self->session, &data);
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "HTTP/2: %s", nghttp2_strerror((int)n));
        return NULL;
    }
    if (n == 0)
        return PyBytes_FromStringAndSize(NULL, 0);
    /* Usually everything comes in one call; gather the rest when it does not. */
    PyObject *out = PyBytes_FromStringAndSize((const char *)data, n);
    if (out == NULL)
        return NULL;
    for (;;) {
        n = nghttp2_session_mem_send(self->session, &data);
        if (n < 0) {
            Py_DECREF(out);
            PyErr_Format(PyExc_ValueError, "HTTP/2: %s", nghttp2_strerror((int)n));
            return NULL;
        }
        if (n == 0)
            return out;
        PyObject *more = PyBytes_FromStringAndSize((const char *)data, n);
        if (more == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyBytes_ConcatAndDel(&out, more);
        if (out == NULL)
            return NULL;
    }
}

static PyObject *Session_wants(Session *self, PyObject *unused) {
    if (self->session == NULL)
        Py_RETURN_FALSE;
    return PyBool_FromLong(nghttp2_session_want_read(self->session) ||
                           nghttp2_session_want_write(self->session));
}

static PyMethodDef Session_methods[] = {
    {"receive", (PyCFunction)Session_receive, METH_O,
     "Feed bytes from the client; on_request is called for each complete request."},
    {"respond", (PyCFunction)Session_respond, METH_VARARGS,
     "respond(stream_id, status, body, max_age) -> False when the stream is gone."},
    {"output", (PyCFunction)Session_output, METH_NOARGS, "The bytes to send now."},
    {"wants", (PyCFunction)Session_wants, METH_NOARGS,
     "False once the session is over (GOAWAY sent and nothing left to send)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clearwall.dnsserver._doh2.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Session_traverse,
    .tp_clear = (inquiry)Session_clear,
    .tp_doc = "A sans-I/O HTTP/2 server connection for DoH, over libnghttp2.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_doh2", "HTTP/2 for the DoH listener, over libnghttp2.", -1, NULL,
};

PyMODINIT_FUNC PyInit__doh2(void) {
    if (PyType_Ready(&SessionType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SessionType);
    if (PyModule_AddObject(m, "Session", (PyObject *)&SessionType) < 0) {
        Py_DECREF(&SessionType);
        Py_DECREF(m);
        return NULL;
    }
    nghttp2_info *info = nghttp2_version(0);
    PyModule_AddStringConstant(m, "NGHTTP2_VERSION", info->version_str);
    return m;
}
