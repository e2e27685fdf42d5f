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

/* The shape of trace_parts' answer: otlp.PARTS_VERSION, which does not use a build made for another. */
#define PARTS_VERSION 2

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
static PyObject *empty_bytes, *empty_text; /* what protobuf gives for a field not sent */

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
    if (key == NULL)
        key = Py_NewRef(empty_text);
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

static int append_new(PyObject *list, PyObject *item) {
    if (item == NULL)
        return 0;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc == 0;
}

/* How a field of a message is read. The messages below are tables of their fields; a field a
 * table does not name is skipped, as protobuf skips unknown fields. */
typedef enum {
    BYTES,     /* bytes, into obj[slot] */
    TEXT,      /* str, into obj[slot] */
    CHECKED,   /* text not kept, which must still be UTF-8, as protobuf checks */
    NUMBER,    /* into num[slot] */
    SKIPPED,   /* a count or flags, not kept */
    ATTRIBUTE, /* a KeyValue, into the dict obj[slot] */
    EVENT,     /* an Event, appended to the list obj[slot] */
    LINK,      /* a Link, likewise */
    STATUS,    /* the Status, at most once: STATUS_FIELDS, into the same slots */
    REFUSED,   /* left to protobuf */
} Kind;

typedef struct {
    uint32_t number;
    int wire;
    Kind kind;
    int slot;
} Spec;

#define END_OF_FIELDS {0, 0, 0, 0}

enum { EV_NAME, EV_ATTRS, EV_OBJ };
enum { EV_TIME, EV_NUM };
static const Spec EVENT_FIELDS[] = {
    {1, I64, NUMBER, EV_TIME}, {2, LEN, TEXT, EV_NAME}, {3, LEN, ATTRIBUTE, EV_ATTRS},
    {4, VARINT, SKIPPED, 0}, END_OF_FIELDS,
};

enum { LK_TID, LK_SID, LK_ATTRS, LK_OBJ };
static const Spec LINK_FIELDS[] = {
    {1, LEN, BYTES, LK_TID}, {2, LEN, BYTES, LK_SID}, {3, LEN, CHECKED, 0}, {4, LEN, ATTRIBUTE, LK_ATTRS},
    {5, VARINT, SKIPPED, 0}, {6, I32, SKIPPED, 0}, END_OF_FIELDS,
};

/* A Span: its text and Python values in obj, its numbers in num. */
enum { SP_TID, SP_SID, SP_PID, SP_NAME, SP_MESSAGE, SP_ATTRS, SP_EVENTS, SP_LINKS, SP_OBJ };
enum { SP_KIND, SP_START, SP_END, SP_CODE, SP_FLAGS, SP_NUM };
static const Spec STATUS_FIELDS[] = {
    {2, LEN, TEXT, SP_MESSAGE}, {3, VARINT, NUMBER, SP_CODE}, END_OF_FIELDS,
};
static const Spec SPAN_FIELDS[] = {
    {1, LEN, BYTES, SP_TID}, {2, LEN, BYTES, SP_SID}, {3, LEN, CHECKED, 0}, {4, LEN, BYTES, SP_PID},
    {5, LEN, TEXT, SP_NAME}, {6, VARINT, NUMBER, SP_KIND}, {7, I64, NUMBER, SP_START},
    {8, I64, NUMBER, SP_END}, {9, LEN, ATTRIBUTE, SP_ATTRS}, {10, VARINT, SKIPPED, 0},
    {11, LEN, EVENT, SP_EVENTS}, {12, VARINT, SKIPPED, 0}, {13, LEN, LINK, SP_LINKS},
    {14, VARINT, SKIPPED, 0}, {15, LEN, STATUS, 0}, {16, I32, NUMBER, SP_FLAGS}, END_OF_FIELDS,
};

enum { SC_NAME, SC_VERSION, SC_ATTRS, SC_OBJ };
static const Spec SCOPE_FIELDS[] = {
    {1, LEN, TEXT, SC_NAME}, {2, LEN, TEXT, SC_VERSION}, {3, LEN, ATTRIBUTE, SC_ATTRS},
    {4, VARINT, SKIPPED, 0}, END_OF_FIELDS,
};

/* entity_refs hold text this reader does not check. */
enum { RS_ATTRS, RS_OBJ };
static const Spec RESOURCE_FIELDS[] = {
    {1, LEN, ATTRIBUTE, RS_ATTRS}, {2, VARINT, SKIPPED, 0}, {3, LEN, REFUSED, 0}, END_OF_FIELDS,
};

/* What a message is read into: its Python values in obj and its numbers in num, at the slots its
 * table names. Every message has both, as large as a Span's (the largest), and a slot past them
 * refuses the body (`fits`): a new field in any table cannot write out of bounds. */
enum { MAX_OBJ = SP_OBJ, MAX_NUM = SP_NUM };
typedef struct {
    PyObject *obj[MAX_OBJ];
    uint64_t num[MAX_NUM];
} Slots;

static PyObject *span_event(Reader r);
static PyObject *span_link(Reader r);

/* Whether a table's field fits the slots: init_slots checks every field of a table (and of
 * STATUS_FIELDS within it) before read_fields writes any. */
static int fits(const Spec *s) {
    return s->slot >= 0 && s->slot < (s->kind == NUMBER ? MAX_NUM : MAX_OBJ);
}

/* The empty values of a table's slots: what protobuf gives for a field not sent. */
static int init_slots(const Spec *fields, Slots *slots) {
    for (const Spec *s = fields; s->number; s++) {
        if (!fits(s))
            return 0;
        PyObject **slot = &slots->obj[s->slot];
        switch (s->kind) {
        case BYTES:
        case TEXT:
            if (*slot == NULL)
                *slot = Py_NewRef(s->kind == BYTES ? empty_bytes : empty_text);
            break;
        case ATTRIBUTE:
            if (*slot == NULL && (*slot = PyDict_New()) == NULL)
                return 0;
            break;
        case EVENT:
        case LINK:
            if (*slot == NULL && (*slot = PyList_New(0)) == NULL)
                return 0;
            break;
        case STATUS:
            if (!init_slots(STATUS_FIELDS, slots))
                return 0;
            break;
        default:
            break;
        }
    }
    return 1;
}

static int read_fields(Reader r, const Spec *fields, Slots *slots) {
    PyObject **obj = slots->obj;
    int status_read = 0, rc;
    Field f;
    while ((rc = next_field(&r, &f)) > 0) {
        const Spec *s = fields;
        while (s->number && s->number != f.field)
            s++;
        if (!s->number)
            continue;
        if (f.wire != s->wire)
            return 0;
        int ok = 1;
        switch (s->kind) {
        case BYTES:
            ok = replace(&obj[s->slot], PyBytes_FromStringAndSize((const char *)f.at, f.len));
            break;
        case TEXT:
            ok = replace(&obj[s->slot], text(&f));
            break;
        case CHECKED:
            ok = valid_text(&f);
            break;
        case NUMBER:
            slots->num[s->slot] = f.num;
            break;
        case SKIPPED:
            break;
        case ATTRIBUTE:
            ok = key_value(sub(&f), obj[s->slot], 0);
            break;
        case EVENT:
            ok = append_new(obj[s->slot], span_event(sub(&f)));
            break;
        case LINK:
            ok = append_new(obj[s->slot], span_link(sub(&f)));
            break;
        case STATUS:
            ok = !status_read && read_fields(sub(&f), STATUS_FIELDS, slots);
            status_read = 1;
            break;
        case REFUSED:
            ok = 0;
            break;
        }
        if (!ok)
            return 0;
    }
    return rc == 0;
}

/* A message's fields into `slots` (empty at the call); on failure they are emptied again. */
static int read_message(Reader r, const Spec *fields, Slots *slots) {
    if (init_slots(fields, slots) && read_fields(r, fields, slots))
        return 1;
    for (int i = 0; i < MAX_OBJ; i++)
        Py_CLEAR(slots->obj[i]);
    return 0;
}

/* (name, time, attributes) */
static PyObject *span_event(Reader r) {
    Slots m = {{NULL}, {0}};
    if (!read_message(r, EVENT_FIELDS, &m))
        return NULL;
    return Py_BuildValue("(NKN)", m.obj[EV_NAME], (unsigned long long)m.num[EV_TIME], m.obj[EV_ATTRS]);
}

/* (trace id, span id, attributes) */
static PyObject *span_link(Reader r) {
    Slots m = {{NULL}, {0}};
    if (!read_message(r, LINK_FIELDS, &m))
        return NULL;
    return Py_BuildValue("(NNN)", m.obj[LK_TID], m.obj[LK_SID], m.obj[LK_ATTRS]);
}

/* A Span's parts, in `otlp._trace_parts`'s order, after its resource's and scope's indexes. Kind
 * and status code are int32, as protobuf reads them; flags a fixed32. */
static PyObject *span(Reader r, PyObject *ri, PyObject *si) {
    Slots m = {{NULL}, {0}};
    if (!read_message(r, SPAN_FIELDS, &m))
        return NULL;
    PyObject **obj = m.obj;
    uint64_t *num = m.num;
    return Py_BuildValue("(OONNNNiKKiNNNNk)", ri, si, obj[SP_TID], obj[SP_SID], obj[SP_PID], obj[SP_NAME],
                         (int)(int32_t)num[SP_KIND], (unsigned long long)num[SP_START],
                         (unsigned long long)num[SP_END], (int)(int32_t)num[SP_CODE], obj[SP_MESSAGE],
                         obj[SP_ATTRS], obj[SP_EVENTS], obj[SP_LINKS], (unsigned long)(uint32_t)num[SP_FLAGS]);
}

/* The scope's dict as `otlp._scope` makes it: attributes only when it has some. */
static PyObject *scope(Reader r) {
    Slots m = {{NULL}, {0}};
    PyObject **obj = m.obj;
    if (!read_message(r, SCOPE_FIELDS, &m))
        return NULL;
    if (PyDict_GET_SIZE(obj[SC_ATTRS]))
        return Py_BuildValue("{sNsNsN}", "name", obj[SC_NAME], "version", obj[SC_VERSION], "attributes",
                             obj[SC_ATTRS]);
    Py_DECREF(obj[SC_ATTRS]);
    return Py_BuildValue("{sNsN}", "name", obj[SC_NAME], "version", obj[SC_VERSION]);
}

/* A Resource's attributes. */
static PyObject *resource(Reader r) {
    Slots m = {{NULL}, {0}};
    return read_message(r, RESOURCE_FIELDS, &m) ? m.obj[RS_ATTRS] : NULL;
}

typedef struct {
    PyObject *resources, *scopes, *spans;
    PyObject *ri; /* the index of the resource whose spans are being read */
} Parts;

/* ResourceSpans and ScopeSpans: a head (field 1, the resource or the scope, at most once; until
 * then the empty one) appended to `heads`, children (field 2) read by `child` with the head's
 * index, and a schema URL (field 3). */
static int group(Reader r, PyObject *heads, PyObject *(*head)(Reader),
                 int (*child)(Reader, Parts *, PyObject *), Parts *parts) {
    Py_ssize_t at = PyList_GET_SIZE(heads);
    PyObject *index = PyLong_FromSsize_t(at), *found;
    int seen = 0, ok = 1, rc = -1;
    Field f;
    if (index == NULL || !append_new(heads, head((Reader){NULL, NULL}))) {
        Py_XDECREF(index);
        return 0;
    }
    while (ok && (rc = next_field(&r, &f)) > 0) {
        if (f.field == 1) {
            ok = f.wire == LEN && !seen && (found = head(sub(&f))) != NULL && PyList_SetItem(heads, at, found) == 0;
            seen = 1;
        } else if (f.field == 2) {
            ok = f.wire == LEN && child(sub(&f), parts, index);
        } else if (f.field == 3) {
            ok = f.wire == LEN && valid_text(&f);
        }
    }
    Py_DECREF(index);
    return ok && rc == 0;
}

static int span_of_scope(Reader r, Parts *parts, PyObject *si) {
    return append_new(parts->spans, span(r, parts->ri, si));
}

static int scope_of_resource(Reader r, Parts *parts, PyObject *ri) {
    parts->ri = ri;
    return group(r, parts->scopes, scope, span_of_scope, parts);
}

static PyObject *trace_parts(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_buffer body;
    if (PyObject_GetBuffer(arg, &body, PyBUF_SIMPLE) < 0)
        return NULL;
    Parts parts = {PyList_New(0), PyList_New(0), PyList_New(0), NULL};
    PyObject *out = NULL;
    if (parts.resources != NULL && parts.scopes != NULL && parts.spans != NULL) {
        Reader r = {body.buf, (const uint8_t *)body.buf + body.len};
        Field f;
        int rc, ok = 1;
        while (ok && (rc = next_field(&r, &f)) > 0) {
            if (f.field == 1)
                ok = f.wire == LEN && group(sub(&f), parts.resources, resource, scope_of_resource, &parts);
        }
        if (ok && rc == 0)
            out = PyTuple_Pack(3, parts.resources, parts.scopes, parts.spans);
        else if (!PyErr_Occurred())
            out = Py_NewRef(Py_None);
    }
    Py_XDECREF(parts.resources);
    Py_XDECREF(parts.scopes);
    Py_XDECREF(parts.spans);
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
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "PARTS_VERSION", PARTS_VERSION) < 0)
        Py_CLEAR(m);
    return m;
}
