/* OTLP trace requests read straight from the protobuf wire format into the Python objects that
 * `tracehub.collector.otlp` builds its records from: the same parts as its `_trace_parts` reads
 * from a parsed message, without a protobuf wrapper object per span, attribute and value (those
 * took about half of a decode worker's time).
 *
 * Only what protobuf encoders write is taken here. Anything else (a malformed body, text that is
 * not UTF-8, a nesting deeper than MAX_DEPTH, a singular message or a oneof member given twice, a
 * known field with an unexpected wire type) makes `trace_parts` return None, and the caller parses
 * the body with protobuf, whose answer (or error) stands.
 *
 * Field numbers: the .proto files of opentelemetry/proto/{collector/trace,trace,common,resource}/v1.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* In AnyValues; protobuf stops at 100 messages, about 47 arrays deep, so the reader never takes a
 * body that protobuf would refuse. */
#define MAX_DEPTH 32

enum { VARINT = 0, I64 = 1, LEN = 2, I32 = 5 };

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

typedef struct {
    uint32_t field;
    int wire;
    uint64_t num;      /* VARINT, I64, I32 */
    const uint8_t *at; /* LEN */
    Py_ssize_t len;
} Field;

static PyObject *b2a_base64; /* binascii.b2a_base64 */

/* Returns 1 with the next field in *f, 0 at the end, -1 on a malformed field. */
static int next_field(Reader *r, Field *f) {
    if (r->p >= r->end)
        return 0;
    uint64_t tag = 0, v = 0;
    for (int shift = 0;; shift += 7) {
        if (r->p >= r->end || shift > 28) /* a tag takes at most 5 bytes */
            return -1;
        uint8_t b = *r->p++;
        tag |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    if (tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
        return -1;
    f->field = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    switch (f->wire) {
    case VARINT:
    case LEN:
        for (int shift = 0;; shift += 7) {
            if (r->p >= r->end || shift > 63)
                return -1;
            uint8_t b = *r->p++;
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80))
                break;
        }
        if (f->wire == VARINT) {
            f->num = v;
            return 1;
        }
        if (v > (uint64_t)(r->end - r->p))
            return -1;
        f->at = r->p;
        f->len = (Py_ssize_t)v;
        r->p += v;
        return 1;
    case I64:
    case I32: {
        int n = f->wire == I64 ? 8 : 4;
        if (r->end - r->p < n)
            return -1;
        for (int i = n - 1; i >= 0; i--)
            v = v << 8 | r->p[i];
        f->num = v;
        r->p += n;
        return 1;
    }
    default: /* groups and the unassigned wire types */
        return -1;
    }
}

static Reader sub(const Field *f) {
    Reader r = {f->at, f->at + f->len};
    return r;
}

/* A new str of a LEN field, or NULL: with an exception only when out of memory (not UTF-8: no
 * exception, the caller falls back). */
static PyObject *text(const Field *f) {
    PyObject *s = PyUnicode_DecodeUTF8((const char *)f->at, f->len, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return s;
}

/* A string field that is not kept must still be UTF-8, as protobuf checks. */
static int valid_text(const Field *f) {
    PyObject *s = text(f);
    if (s == NULL)
        return 0;
    Py_DECREF(s);
    return 1;
}

static int replace(PyObject **slot, PyObject *value) {
    if (value == NULL)
        return 0;
    Py_XSETREF(*slot, value);
    return 1;
}

static PyObject *any_value(Reader r, int depth);

/* KeyValue into `dict`; a later duplicate key wins, as it does in a dict comprehension. */
static int key_value(Reader r, PyObject *dict, int depth) {
    PyObject *key = NULL, *value = NULL;
    int seen_value = 0, rc;
    Field f;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.field == 1) {
            if (f.wire != LEN || !replace(&key, text(&f)))
                goto fail;
        } else if (f.field == 2) {
            if (f.wire != LEN || seen_value)
                goto fail;
            seen_value = 1;
            if ((value = any_value(sub(&f), depth + 1)) == NULL)
                goto fail;
        }
    }
    if (rc < 0)
        goto fail;
    if (key == NULL && (key = PyUnicode_FromStringAndSize("", 0)) == NULL)
        goto fail;
    rc = PyDict_SetItem(dict, key, value != NULL ? value : Py_None);
    Py_DECREF(key);
    Py_XDECREF(value);
    return rc == 0;
fail:
    Py_XDECREF(key);
    Py_XDECREF(value);
    return 0;
}

/* A KeyValueList as a dict. */
static PyObject *kvlist(Reader r, int depth) {
    PyObject *dict = PyDict_New();
    Field f;
    int rc;
    if (dict == NULL)
        return NULL;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.field == 1 && (f.wire != LEN || !key_value(sub(&f), dict, depth)))
            break;
    }
    if (rc != 0)
        Py_CLEAR(dict);
    return dict;
}

static PyObject *base64_text(const Field *f) {
    PyObject *raw = PyBytes_FromStringAndSize((const char *)f->at, f->len);
    if (raw == NULL)
        return NULL;
    PyObject *kwargs = Py_BuildValue("{s:O}", "newline", Py_False);
    PyObject *args = kwargs != NULL ? PyTuple_Pack(1, raw) : NULL;
    PyObject *encoded = args != NULL ? PyObject_Call(b2a_base64, args, kwargs) : NULL;
    Py_DECREF(raw);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    if (encoded == NULL)
        return NULL;
    PyObject *out = PyUnicode_FromEncodedObject(encoded, "ascii", "strict");
    Py_DECREF(encoded);
    return out;
}

/* AnyValue as `otlp.any_value` gives it: str, bool, int, float, list, dict, base64 str or None. */
static PyObject *any_value(Reader r, int depth) {
    if (depth > MAX_DEPTH)
        return NULL;
    PyObject *out = NULL;
    Field f;
    int rc;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.field == 8) /* string_value_strindex: an index into a profile's strings, left to protobuf */
            goto fail;
        if (f.field < 1 || f.field > 7)
            continue;
        if (out != NULL) /* a second member of the oneof */
            goto fail;
        switch (f.field) {
        case 1:
            if (f.wire != LEN)
                goto fail;
            out = text(&f);
            break;
        case 2:
            if (f.wire != VARINT)
                goto fail;
            out = PyBool_FromLong(f.num != 0);
            break;
        case 3:
            if (f.wire != VARINT)
                goto fail;
            out = PyLong_FromLongLong((long long)(int64_t)f.num);
            break;
        case 4: {
            if (f.wire != I64)
                goto fail;
            double d;
            memcpy(&d, &f.num, sizeof d);
            out = PyFloat_FromDouble(d);
            break;
        }
        case 5: {
            if (f.wire != LEN || (out = PyList_New(0)) == NULL)
                goto fail;
            Reader items = sub(&f);
            Field item;
            int irc;
            while ((irc = next_field(&items, &item)) > 0) {
                if (item.field != 1)
                    continue;
                PyObject *v = item.wire == LEN ? any_value(sub(&item), depth + 1) : NULL;
                if (v == NULL || PyList_Append(out, v) < 0) {
                    Py_XDECREF(v);
                    goto fail;
                }
                Py_DECREF(v);
            }
            if (irc < 0)
                goto fail;
            break;
        }
        case 6:
            if (f.wire != LEN)
                goto fail;
            out = kvlist(sub(&f), depth + 1);
            break;
        case 7:
            if (f.wire != LEN)
                goto fail;
            out = base64_text(&f);
            break;
        }
        if (out == NULL)
            goto fail;
    }
    if (rc < 0)
        goto fail;
    if (out == NULL)
        Py_RETURN_NONE;
    return out;
fail:
    Py_XDECREF(out);
    return NULL;
}

static PyObject *empty_bytes, *empty_text;

/* (trace id, span id, attributes) of a Link, or (name, time, attributes) of an Event. */
static PyObject *span_link(Reader r) {
    PyObject *tid = Py_NewRef(empty_bytes), *sid = Py_NewRef(empty_bytes), *attrs = PyDict_New();
    Field f;
    int rc;
    if (attrs == NULL)
        goto fail;
    while ((rc = next_field(&r, &f)) > 0) {
        int ok = 1;
        switch (f.field) {
        case 1:
        case 2:
            ok = f.wire == LEN &&
                 replace(f.field == 1 ? &tid : &sid, PyBytes_FromStringAndSize((const char *)f.at, f.len));
            break;
        case 3:
            ok = f.wire == LEN && valid_text(&f);
            break;
        case 4:
            ok = f.wire == LEN && key_value(sub(&f), attrs, 0);
            break;
        case 5:
            ok = f.wire == VARINT;
            break;
        case 6:
            ok = f.wire == I32;
            break;
        }
        if (!ok)
            goto fail;
    }
    if (rc < 0)
        goto fail;
    return Py_BuildValue("(NNN)", tid, sid, attrs);
fail:
    Py_DECREF(tid);
    Py_DECREF(sid);
    Py_XDECREF(attrs);
    return NULL;
}

static PyObject *span_event(Reader r) {
    PyObject *name = Py_NewRef(empty_text), *attrs = PyDict_New();
    uint64_t time = 0;
    Field f;
    int rc;
    if (attrs == NULL)
        goto fail;
    while ((rc = next_field(&r, &f)) > 0) {
        int ok = 1;
        switch (f.field) {
        case 1:
            ok = f.wire == I64;
            time = f.num;
            break;
        case 2:
            ok = f.wire == LEN && replace(&name, text(&f));
            break;
        case 3:
            ok = f.wire == LEN && key_value(sub(&f), attrs, 0);
            break;
        case 4:
            ok = f.wire == VARINT;
            break;
        }
        if (!ok)
            goto fail;
    }
    if (rc < 0)
        goto fail;
    return Py_BuildValue("(NKN)", name, (unsigned long long)time, attrs);
fail:
    Py_DECREF(name);
    Py_XDECREF(attrs);
    return NULL;
}

static int append_new(PyObject *list, PyObject *item) {
    if (item == NULL)
        return 0;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc == 0;
}

enum { S_TID, S_SID, S_PID, S_NAME, S_KIND, S_START, S_END, S_CODE, S_MESSAGE, S_ATTRS, S_EVENTS, S_LINKS,
       S_SIZE };

/* A Span's parts, in `otlp._trace_parts`'s order after the resource and scope indexes. */
static PyObject *span(Reader r, PyObject *ri, PyObject *si) {
    PyObject *v[S_SIZE] = {NULL};
    uint64_t start = 0, end = 0;
    int32_t kind = 0, code = 0;
    int seen_status = 0, rc;
    Field f;
    v[S_TID] = Py_NewRef(empty_bytes);
    v[S_SID] = Py_NewRef(empty_bytes);
    v[S_PID] = Py_NewRef(empty_bytes);
    v[S_NAME] = Py_NewRef(empty_text);
    v[S_MESSAGE] = Py_NewRef(empty_text);
    if ((v[S_ATTRS] = PyDict_New()) == NULL || (v[S_EVENTS] = PyList_New(0)) == NULL ||
        (v[S_LINKS] = PyList_New(0)) == NULL)
        goto fail;
    while ((rc = next_field(&r, &f)) > 0) {
        int ok = 1;
        switch (f.field) {
        case 1:
        case 2:
        case 4:
            ok = f.wire == LEN && replace(&v[f.field == 1 ? S_TID : f.field == 2 ? S_SID : S_PID],
                                          PyBytes_FromStringAndSize((const char *)f.at, f.len));
            break;
        case 3:
            ok = f.wire == LEN && valid_text(&f);
            break;
        case 5:
            ok = f.wire == LEN && replace(&v[S_NAME], text(&f));
            break;
        case 6:
            ok = f.wire == VARINT;
            kind = (int32_t)f.num;
            break;
        case 7:
        case 8:
            ok = f.wire == I64;
            *(f.field == 7 ? &start : &end) = f.num;
            break;
        case 9:
            ok = f.wire == LEN && key_value(sub(&f), v[S_ATTRS], 0);
            break;
        case 10:
        case 12:
        case 14:
            ok = f.wire == VARINT;
            break;
        case 11:
            ok = f.wire == LEN && append_new(v[S_EVENTS], span_event(sub(&f)));
            break;
        case 13:
            ok = f.wire == LEN && append_new(v[S_LINKS], span_link(sub(&f)));
            break;
        case 15: {
            ok = f.wire == LEN && !seen_status;
            seen_status = 1;
            Reader status = sub(&f);
            Field s;
            int src = 0;
            while (ok && (src = next_field(&status, &s)) > 0) {
                if (s.field == 2)
                    ok = s.wire == LEN && replace(&v[S_MESSAGE], text(&s));
                else if (s.field == 3) {
                    ok = s.wire == VARINT;
                    code = (int32_t)s.num;
                }
            }
            ok = ok && src == 0;
            break;
        }
        case 16:
            ok = f.wire == I32;
            break;
        }
        if (!ok)
            goto fail;
    }
    if (rc < 0)
        goto fail;
    if ((v[S_KIND] = PyLong_FromLong(kind)) == NULL || (v[S_START] = PyLong_FromUnsignedLongLong(start)) == NULL ||
        (v[S_END] = PyLong_FromUnsignedLongLong(end)) == NULL || (v[S_CODE] = PyLong_FromLong(code)) == NULL)
        goto fail;
    PyObject *out = PyTuple_New(2 + S_SIZE);
    if (out == NULL)
        goto fail;
    PyTuple_SET_ITEM(out, 0, Py_NewRef(ri));
    PyTuple_SET_ITEM(out, 1, Py_NewRef(si));
    for (int i = 0; i < S_SIZE; i++)
        PyTuple_SET_ITEM(out, 2 + i, v[i]);
    return out;
fail:
    for (int i = 0; i < S_SIZE; i++)
        Py_XDECREF(v[i]);
    return NULL;
}

/* The scope's dict as `otlp._scope` makes it. */
static PyObject *scope(Reader r) {
    PyObject *name = Py_NewRef(empty_text), *version = Py_NewRef(empty_text), *attrs = PyDict_New();
    int any_attrs = 0, rc;
    Field f;
    if (attrs == NULL)
        goto fail;
    while ((rc = next_field(&r, &f)) > 0) {
        int ok = 1;
        switch (f.field) {
        case 1:
        case 2:
            ok = f.wire == LEN && replace(f.field == 1 ? &name : &version, text(&f));
            break;
        case 3:
            any_attrs = 1;
            ok = f.wire == LEN && key_value(sub(&f), attrs, 0);
            break;
        case 4:
            ok = f.wire == VARINT;
            break;
        }
        if (!ok)
            goto fail;
    }
    if (rc < 0)
        goto fail;
    if (any_attrs)
        return Py_BuildValue("{sNsNsN}", "name", name, "version", version, "attributes", attrs);
    Py_DECREF(attrs);
    return Py_BuildValue("{sNsN}", "name", name, "version", version);
fail:
    Py_DECREF(name);
    Py_DECREF(version);
    Py_XDECREF(attrs);
    return NULL;
}

/* ScopeSpans: its scope into `scopes`, its spans into `spans`. */
static int scope_spans(Reader r, PyObject *ri, PyObject *scopes, PyObject *spans) {
    Py_ssize_t at = PyList_GET_SIZE(scopes);
    PyObject *si = PyLong_FromSsize_t(at);
    int seen_scope = 0, rc;
    Field f;
    if (si == NULL)
        return 0;
    if (!append_new(scopes, scope((Reader){NULL, NULL})))
        goto fail;
    while ((rc = next_field(&r, &f)) > 0) {
        int ok = 1;
        switch (f.field) {
        case 1:
            ok = f.wire == LEN && !seen_scope;
            seen_scope = 1;
            if (ok) {
                PyObject *s = scope(sub(&f));
                ok = s != NULL && PyList_SetItem(scopes, at, s) == 0;
            }
            break;
        case 2:
            ok = f.wire == LEN && append_new(spans, span(sub(&f), ri, si));
            break;
        case 3:
            ok = f.wire == LEN && valid_text(&f);
            break;
        }
        if (!ok)
            goto fail;
    }
    Py_DECREF(si);
    return rc == 0;
fail:
    Py_DECREF(si);
    return 0;
}

/* A Resource's attributes into `dict`. Its entity_refs hold text this reader does not check, so a
 * resource with them is left to protobuf. */
static int resource(Reader r, PyObject *dict) {
    Field f;
    int rc;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.field == 3 || (f.field == 1 && (f.wire != LEN || !key_value(sub(&f), dict, 0))))
            return 0;
    }
    return rc == 0;
}

static int resource_spans(Reader r, PyObject *resources, PyObject *scopes, PyObject *spans) {
    Py_ssize_t at = PyList_GET_SIZE(resources);
    PyObject *ri = PyLong_FromSsize_t(at);
    int seen_resource = 0, rc;
    Field f;
    if (ri == NULL)
        return 0;
    if (!append_new(resources, PyDict_New()))
        goto fail;
    while ((rc = next_field(&r, &f)) > 0) {
        int ok = 1;
        switch (f.field) {
        case 1:
            ok = f.wire == LEN && !seen_resource && resource(sub(&f), PyList_GET_ITEM(resources, at));
            seen_resource = 1;
            break;
        case 2:
            ok = f.wire == LEN && scope_spans(sub(&f), ri, scopes, spans);
            break;
        case 3:
            ok = f.wire == LEN && valid_text(&f);
            break;
        }
        if (!ok)
            goto fail;
    }
    Py_DECREF(ri);
    return rc == 0;
fail:
    Py_DECREF(ri);
    return 0;
}

static PyObject *trace_parts(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_buffer body;
    if (PyObject_GetBuffer(arg, &body, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *resources = PyList_New(0), *scopes = PyList_New(0), *spans = PyList_New(0), *out = NULL;
    if (resources != NULL && scopes != NULL && spans != NULL) {
        Reader r = {body.buf, (const uint8_t *)body.buf + body.len};
        Field f;
        int rc, ok = 1;
        while (ok && (rc = next_field(&r, &f)) > 0) {
            if (f.field == 1)
                ok = f.wire == LEN && resource_spans(sub(&f), resources, scopes, spans);
        }
        if (ok && rc == 0)
            out = PyTuple_Pack(3, resources, scopes, spans);
        else if (!PyErr_Occurred())
            out = Py_NewRef(Py_None);
    }
    Py_XDECREF(resources);
    Py_XDECREF(scopes);
    Py_XDECREF(spans);
    PyBuffer_Release(&body);
    return out;
}

static PyMethodDef methods[] = {
    {"trace_parts", trace_parts, METH_O,
     "trace_parts(body) -> (resources, scopes, spans) of an ExportTraceServiceRequest, or None when\n"
     "the body must be parsed by protobuf (see otlp._trace_parts for the parts)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_otlpwire", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__otlpwire(void) {
    PyObject *binascii = PyImport_ImportModule("binascii");
    if (binascii == NULL)
        return NULL;
    b2a_base64 = PyObject_GetAttrString(binascii, "b2a_base64");
    Py_DECREF(binascii);
    empty_bytes = PyBytes_FromStringAndSize("", 0);
    empty_text = PyUnicode_FromStringAndSize("", 0);
    if (b2a_base64 == NULL || empty_bytes == NULL || empty_text == NULL)
        return NULL;
    return PyModule_Create(&module);
}
