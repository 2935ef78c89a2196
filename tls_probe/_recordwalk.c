/* The probe's hot path in C: count the records of a chunk that is whole records.
 *
 * A server hands out ciphertext one flush at a time, and after the handshake every flush
 * is a run of whole TLS records. Walking their 5-byte headers is a few instructions per
 * record; doing it in Python costs more than OpenSSL takes to encrypt 16 KiB when the
 * server flushes after every SSL_write (split, writev, cork, chain). `RecordTally.feed`
 * does that walk and tallies records by (content type, wire size). It accepts a chunk
 * only when it is exactly a run of valid records and the tally is armed; otherwise it
 * changes nothing and returns False, and tls_probe.records.RecordCounter (the reference
 * implementation, in Python) parses the chunk itself: a record split across chunks, an
 * invalid header, the handshake phase. RecordCounter folds the tally into its totals
 * whenever they are read (`drain`).
 *
 * CountingWrite and CountingTake put the counting of tls_probe.bio.InstrumentedTLS on the
 * C side of its SSL_write and of its read of the outgoing BIO: one C call each, no
 * Python bytecode and no int objects per call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define HEADER_BYTES 5
#define MAX_PAYLOAD_BYTES (16384 + 2048) /* as tls_probe.records.MAX_PAYLOAD_BYTES */
#define MIN_CONTENT_TYPE 20
#define MAX_CONTENT_TYPE 24
#define MAX_RUNS 512 /* run-length entries one chunk may carry; more: the Python path */
#define MAX_KEPT_KEYS 1024 /* distinct (type, size) keys kept across drains */

typedef struct {
    uint32_t key;   /* content type << 16 | wire bytes; 0 = empty slot */
    uint64_t count;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t capacity; /* a power of two */
    Py_ssize_t used;
    uint64_t bytes;  /* wire bytes of the chunks accepted since the last drain */
    uint64_t chunks; /* chunks accepted since the last drain */
    int armed;       /* set by RecordCounter when the stream is between records, after the boundary */
} RecordTally;

typedef struct {
    uint32_t key;
    uint64_t count;
} Run;

/* Fibonacci hashing, folded so that the content type (the key's high bits) counts too. */
static size_t
slot_of(uint32_t key, Py_ssize_t capacity)
{
    uint32_t h = key * 2654435761u;
    return (size_t)(h ^ (h >> 16)) & (size_t)(capacity - 1);
}

static int
tally_grow(RecordTally *self)
{
    Py_ssize_t new_capacity = self->capacity ? self->capacity * 2 : 16;
    Slot *fresh = PyMem_Calloc((size_t)new_capacity, sizeof(Slot));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        Slot s = self->slots[i];
        if (s.key == 0)
            continue;
        size_t j = slot_of(s.key, new_capacity);
        while (fresh[j].key != 0)
            j = (j + 1) & (size_t)(new_capacity - 1);
        fresh[j] = s;
    }
    PyMem_Free(self->slots);
    self->slots = fresh;
    self->capacity = new_capacity;
    return 0;
}

static void
tally_add(RecordTally *self, uint32_t key, uint64_t count)
{
    /* The caller made room: the table is at most half full after this add. */
    size_t mask = (size_t)(self->capacity - 1);
    size_t j = slot_of(key, self->capacity);
    while (self->slots[j].key != 0 && self->slots[j].key != key)
        j = (j + 1) & mask;
    if (self->slots[j].key == 0) {
        self->slots[j].key = key;
        self->used++;
    }
    self->slots[j].count += count;
}

/* 1: counted; 0: refused (nothing changed); -1: error (memory). */
static int
tally_feed(RecordTally *self, PyObject *chunk)
{
    Py_buffer view;
    if (!self->armed)
        return 0;
    if (PyObject_GetBuffer(chunk, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* not a contiguous buffer: the Python path decides what it is */
        return 0;
    }
    const unsigned char *p = view.buf;
    Py_ssize_t n = view.len, pos = 0;
    Run runs[MAX_RUNS];
    int nruns = 0, accepted = 0;
    if (n == 0) { /* nothing to count; RecordCounter ignores empty chunks too */
        PyBuffer_Release(&view);
        return 1;
    }
    /* First pass: validate and run-length encode; nothing is counted unless all is whole. */
    while (n - pos >= HEADER_BYTES) {
        unsigned ctype = p[pos];
        unsigned length = (unsigned)p[pos + 3] << 8 | p[pos + 4];
        if (ctype < MIN_CONTENT_TYPE || ctype > MAX_CONTENT_TYPE || p[pos + 1] != 3 ||
            length > MAX_PAYLOAD_BYTES)
            goto done;
        uint32_t key = (uint32_t)ctype << 16 | (length + HEADER_BYTES);
        if (nruns && runs[nruns - 1].key == key) {
            runs[nruns - 1].count++;
        } else {
            if (nruns == MAX_RUNS)
                goto done;
            runs[nruns].key = key;
            runs[nruns].count = 1;
            nruns++;
        }
        pos += length + HEADER_BYTES;
    }
    if (pos != n)
        goto done; /* ends inside a record */
    /* Second pass: commit, with room made first so that no add can fail half-way. */
    while ((self->used + nruns) * 2 > self->capacity) {
        if (tally_grow(self) < 0) {
            PyBuffer_Release(&view);
            return -1;
        }
    }
    for (int i = 0; i < nruns; i++)
        tally_add(self, runs[i].key, runs[i].count);
    self->bytes += (uint64_t)n;
    self->chunks++;
    accepted = 1;
done:
    PyBuffer_Release(&view);
    return accepted;
}

static PyObject *
RecordTally_feed(RecordTally *self, PyObject *chunk)
{
    int accepted = tally_feed(self, chunk);
    return accepted < 0 ? NULL : PyBool_FromLong(accepted);
}

static PyObject *
RecordTally_drain(RecordTally *self, PyObject *Py_UNUSED(ignored))
{
    /* (wire bytes, chunks, [(content type, wire bytes, records), ...]) since the last drain */
    /* Everything is built before anything is reset: a failure loses no count. */
    PyObject *tally = PyList_New(0);
    if (tally == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        Slot *s = &self->slots[i];
        if (s->key == 0 || s->count == 0)
            continue;
        PyObject *item = Py_BuildValue("(IIK)", s->key >> 16, s->key & 0xFFFF,
                                       (unsigned long long)s->count);
        if (item == NULL || PyList_Append(tally, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(tally);
            return NULL;
        }
        Py_DECREF(item);
    }
    PyObject *out = Py_BuildValue("(KKN)", (unsigned long long)self->bytes,
                                  (unsigned long long)self->chunks, tally);
    if (out == NULL)
        return NULL;
    if (self->used > MAX_KEPT_KEYS) { /* a peer sending every size: start afresh */
        memset(self->slots, 0, (size_t)self->capacity * sizeof(Slot));
        self->used = 0;
    } else {
        for (Py_ssize_t i = 0; i < self->capacity; i++)
            self->slots[i].count = 0; /* keep the keys: the same sizes come back */
    }
    self->bytes = 0;
    self->chunks = 0;
    return out;
}

static PyObject *
RecordTally_get_pending(RecordTally *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->chunks != 0);
}

static PyObject *
RecordTally_get_armed(RecordTally *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->armed);
}

static int
RecordTally_set_armed(RecordTally *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "armed cannot be deleted");
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0)
        return -1;
    self->armed = truth;
    return 0;
}

static void
RecordTally_dealloc(RecordTally *self)
{
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef RecordTally_methods[] = {
    {"feed", (PyCFunction)RecordTally_feed, METH_O,
     "feed(chunk) -> bool: count the chunk if it is exactly a run of valid records and the "
     "tally is armed; otherwise change nothing and return False."},
    {"drain", (PyCFunction)RecordTally_drain, METH_NOARGS,
     "drain() -> (wire_bytes, chunks, [(content_type, wire_bytes, records)]): what was "
     "counted since the last drain, and reset it."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef RecordTally_getset[] = {
    {"armed", (getter)RecordTally_get_armed, (setter)RecordTally_set_armed,
     "Whether feed may count (the stream is between records, in the application phase).",
     NULL},
    {"pending", (getter)RecordTally_get_pending, NULL,
     "Whether chunks were counted since the last drain.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecordTallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tls_probe._recordwalk.RecordTally",
    .tp_doc = "Counts chunks that are whole runs of TLS records (see tls_probe.records).",
    .tp_basicsize = sizeof(RecordTally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)RecordTally_dealloc,
    .tp_methods = RecordTally_methods,
    .tp_getset = RecordTally_getset,
};

/* CountingWrite(write): calls write(buf) and counts the calls and the ints they return
 * (SSL_writes and plaintext bytes), at the cost of one C call. */
typedef struct {
    PyObject_HEAD
    PyObject *write;
    vectorcallfunc vectorcall;
    unsigned long long calls;
    unsigned long long total;
} CountingWrite;

static PyObject *
CountingWrite_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CountingWrite *self = (CountingWrite *)callable;
    PyObject *result = PyObject_Vectorcall(self->write, args, nargsf, kwnames);
    if (result == NULL)
        return NULL; /* a failed SSL_write wrote nothing: not counted */
    long long n = PyLong_AsLongLong(result);
    if (n == -1 && PyErr_Occurred()) {
        Py_DECREF(result);
        return NULL;
    }
    self->calls++;
    self->total += (unsigned long long)n;
    return result;
}

static PyObject *
CountingWrite_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *write;
    static char *kwlist[] = {"write", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:CountingWrite", kwlist, &write))
        return NULL;
    if (!PyCallable_Check(write)) {
        PyErr_SetString(PyExc_TypeError, "CountingWrite needs a callable");
        return NULL;
    }
    CountingWrite *self = (CountingWrite *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->write = Py_NewRef(write);
    self->vectorcall = CountingWrite_call;
    return (PyObject *)self;
}

static int
CountingWrite_traverse(CountingWrite *self, visitproc visit, void *arg)
{
    Py_VISIT(self->write);
    return 0;
}

static int
CountingWrite_clear(CountingWrite *self)
{
    Py_CLEAR(self->write);
    return 0;
}

static void
CountingWrite_dealloc(CountingWrite *self)
{
    PyObject_GC_UnTrack(self);
    CountingWrite_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef CountingWrite_members[] = {
    {"calls", T_ULONGLONG, offsetof(CountingWrite, calls), READONLY, "Calls that returned."},
    {"total", T_ULONGLONG, offsetof(CountingWrite, total), READONLY, "Sum of what they returned."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CountingWriteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tls_probe._recordwalk.CountingWrite",
    .tp_doc = "CountingWrite(write): write(buf), counting calls and the bytes they return.",
    .tp_basicsize = sizeof(CountingWrite),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = CountingWrite_new,
    .tp_dealloc = (destructor)CountingWrite_dealloc,
    .tp_traverse = (traverseproc)CountingWrite_traverse,
    .tp_clear = (inquiry)CountingWrite_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(CountingWrite, vectorcall),
    .tp_members = CountingWrite_members,
};

/* CountingTake(read, tally, fallback): data = read(); the tally counts it when it is a
 * run of whole records, fallback(data) otherwise; returns data. One C call per flush. */
typedef struct {
    PyObject_HEAD
    PyObject *read;
    RecordTally *tally;
    PyObject *fallback;
    vectorcallfunc vectorcall;
} CountingTake;

static PyObject *
CountingTake_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CountingTake *self = (CountingTake *)callable;
    if (PyVectorcall_NARGS(nargsf) != 0 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "CountingTake() takes no arguments");
        return NULL;
    }
    PyObject *data = PyObject_CallNoArgs(self->read);
    if (data == NULL)
        return NULL;
    int counted = tally_feed(self->tally, data);
    if (counted == 0) {
        PyObject *r = PyObject_CallOneArg(self->fallback, data);
        if (r == NULL)
            counted = -1;
        Py_XDECREF(r);
    }
    if (counted < 0) {
        Py_DECREF(data);
        return NULL;
    }
    return data;
}

static PyObject *
CountingTake_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *read, *tally, *fallback;
    static char *kwlist[] = {"read", "tally", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O:CountingTake", kwlist, &read,
                                     &RecordTallyType, &tally, &fallback))
        return NULL;
    if (!PyCallable_Check(read) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "CountingTake needs callables for read and fallback");
        return NULL;
    }
    CountingTake *self = (CountingTake *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->read = Py_NewRef(read);
    self->tally = (RecordTally *)Py_NewRef(tally);
    self->fallback = Py_NewRef(fallback);
    self->vectorcall = CountingTake_call;
    return (PyObject *)self;
}

static int
CountingTake_traverse(CountingTake *self, visitproc visit, void *arg)
{
    Py_VISIT(self->read);
    Py_VISIT(self->tally);
    Py_VISIT(self->fallback);
    return 0;
}

static int
CountingTake_clear(CountingTake *self)
{
    Py_CLEAR(self->read);
    Py_CLEAR(self->tally);
    Py_CLEAR(self->fallback);
    return 0;
}

static void
CountingTake_dealloc(CountingTake *self)
{
    PyObject_GC_UnTrack(self);
    CountingTake_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject CountingTakeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tls_probe._recordwalk.CountingTake",
    .tp_doc = "CountingTake(read, tally, fallback): read() counted by tally, else by fallback.",
    .tp_basicsize = sizeof(CountingTake),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = CountingTake_new,
    .tp_dealloc = (destructor)CountingTake_dealloc,
    .tp_traverse = (traverseproc)CountingTake_traverse,
    .tp_clear = (inquiry)CountingTake_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(CountingTake, vectorcall),
};

static struct PyModuleDef recordwalk_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tls_probe._recordwalk",
    .m_doc = "Native record tally for tls_probe (optional; tls_probe.records is the reference).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__recordwalk(void)
{
    if (PyType_Ready(&RecordTallyType) < 0 || PyType_Ready(&CountingWriteType) < 0 ||
        PyType_Ready(&CountingTakeType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&recordwalk_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &RecordTallyType) < 0 || PyModule_AddType(m, &CountingWriteType) < 0 ||
        PyModule_AddType(m, &CountingTakeType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
